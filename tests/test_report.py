"""HTML report: content, de-identification, CLI errors, and rendering in Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from assistant import report
from assistant.records import SessionStore, pseudonym

CHROMIUM = "/usr/bin/chromium"


def _session(st: SessionStore, operator: str, wall: float, shift_s: float) -> int:
    sid = st.start_session(operator, "pecs2", start_s=0.0, started_wall=wall,
                           notes="patient was anxious", source="scan_0042_roe.mp4")
    for i in range(120):
        t = i * 0.1
        st.add_quality(sid, t, min(95.0, 20.0 + 8.0 * max(0.0, t - shift_s)), "serratus not seen")
        st.add_needle(sid, t, i > 30, depth_mm=i * 0.15 if i > 30 else None)
    st.add_event(sid, 2.0, "command_heard", "Dr Jane Roe said: show fascia",
                 {"role": "operator", "heard": "show fascia", "command": "show.fascia"})
    st.add_event(sid, 3.0, "command_heard", "supervisor: down",
                 {"role": "supervisor", "heard": "down", "command": "down"})
    st.add_event(sid, 3.5, "command_heard", "operator: assistant freeze -> freeze",
                 {"role": "operator", "heard": "assistant freeze", "command": "freeze",
                  "via": "second opinion"})
    st.add_event(sid, 4.0, "command_unclear", "not understood: assistant ...",
                 {"heard": "assistant", "guess": "show.nerve"})
    st.add_event(sid, 8.0, "injection", "injection start", {"mark": "start"})
    st.add_event(sid, 10.0, "injection", "injection stop", {"mark": "stop"})
    st.add_event(sid, 9.0, "alert", "stop, pleura four millimetres", {"key": "pleura"})
    st.end_session(sid, 12.0)
    return sid


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "sessions.sqlite"
    with SessionStore(path) as st:
        for k, shift in enumerate((5.0, 3.0, 1.0)):
            _session(st, "Dr Jane Roe", 1000.0 + k, shift)
    return path


def test_session_report_has_figures_plots_and_no_external_resources(db, tmp_path):
    out = tmp_path / "r.html"
    assert report.main(["3", "--db", str(db), "--out", str(out)]) == 0
    html = out.read_text()
    for plot_id in ("quality-plot", "needle-plot", "learning-curve", "learning-curve-time"):
        assert f'id="{plot_id}"' in html
    assert "not for clinical use" in html
    assert "Dr Jane Roe" in html and "patient was anxious" in html
    assert "share of time with an adequate view" in html
    assert re.search(r"not understood[^<]*</th><td>1</td>", html)
    assert re.search(r"second opinion[^<]*</th><td>1</td>", html)
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)  # nothing fetched
    assert "<script" not in html


def test_deidentified_report_drops_names_and_free_text(db, tmp_path):
    out = tmp_path / "d.html"
    assert report.main(["1", "--db", str(db), "--out", str(out), "--deidentify"]) == 0
    html = out.read_text()
    assert "Jane" not in html and "Roe" not in html
    assert "anxious" not in html and "scan_0042" not in html
    assert "show fascia" not in html  # heard words are free text
    assert pseudonym("Dr Jane Roe") in html
    assert "supervisor: down" in html  # the supervisor prompt stays, as a command id


def test_operator_report_and_usage_errors(db, tmp_path, capsys):
    out = tmp_path / "op.html"
    assert report.main(["--operator", "Dr Jane Roe", "--db", str(db), "--out", str(out)]) == 0
    html = out.read_text()
    assert 'id="learning-curve"' in html and html.count("<tr><td>") == 3
    assert report.main(["--db", str(db)]) == 2
    assert report.main(["1", "--operator", "x", "--db", str(db)]) == 2
    assert report.main(["99", "--db", str(db), "--out", str(out)]) == 2
    assert "no session '99'" in capsys.readouterr().err
    assert report.main(["--operator", "Nobody", "--db", str(db), "--out", str(out)]) == 2
    assert "no sessions of operator 'Nobody'" in capsys.readouterr().err
    assert report.main(["1", "--db", str(tmp_path / "none.sqlite")]) == 2


def test_a_file_that_is_not_a_session_database_is_named_and_left_as_it_was(db, tmp_path, capsys):
    import sqlite3
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE x (a INTEGER)")
    before = other.read_bytes()
    for path, words in ((text, "is not an SQLite session database"),
                        (other, "is not a session database (no 'sessions' table)"),
                        (tmp_path, "is a folder")):
        assert report.main(["1", "--db", str(path)]) == 2
        assert words in capsys.readouterr().err
    assert other.read_bytes() == before  # a reader wrote nothing into it
    with sqlite3.connect(other) as c:
        assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["x"]
    for out, words in ((tmp_path, "a folder; give a file name"),
                       (tmp_path / "no" / "r.html", "no folder")):
        assert report.main(["1", "--db", str(db), "--out", str(out)]) == 2
        assert words in capsys.readouterr().err


def test_plot_breaks_the_line_where_the_needle_is_not_seen():
    svg = report.svg_line_plot("p", "t", [("d", [0, 1, 2, 3, 4], [1.0, 2.0, None, 3.0, 4.0])],
                               "x", "y")
    assert svg.count("<polyline") == 2


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"chromium not found at {CHROMIUM}")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_opens_in_headless_chromium_with_its_plots(db, tmp_path):
    out = tmp_path / "r.html"
    assert report.main(["2", "--db", str(db), "--out", str(out)]) == 0
    res = _chromium(["--dump-dom", out.as_uri()], tmp_path)
    dom = res.stdout
    assert res.returncode == 0, res.stderr[-2000:]
    # the DOM Chromium built (not our file text): svg elements with drawn lines
    for plot_id in ("quality-plot", "needle-plot", "learning-curve"):
        m = re.search(rf'<svg[^>]*id="{plot_id}".*?</svg>', dom, re.S)
        assert m, f"{plot_id} not in the DOM"
        assert re.search(r'<polyline[^>]*points="[\d., -]+"', m.group(0)), plot_id
    png = tmp_path / "shot.png"
    res = _chromium(["--screenshot=" + str(png), "--window-size=900,1600", out.as_uri()],
                    tmp_path)
    assert png.exists() and png.stat().st_size > 10_000, res.stderr[-2000:]


def test_logic_to_records_to_report_end_to_end(tmp_path):
    """A scripted session through reduce(), written as the node writes it, reported."""
    import numpy as np

    from assistant.logic import initial_state, reduce
    from assistant.logic_settings import AssistantSettings
    from assistant.messages import Frame, SegResult, SpeechCommand, needle_dict
    from assistant.records import session_figures
    from models.classes import CLASS_INDEX, CLASSES

    lab = np.zeros((220, 200), np.uint8)
    lab[30:60] = CLASS_INDEX["pec_major"]
    lab[60:100] = CLASS_INDEX["pec_minor"]
    lab[100:140] = CLASS_INDEX["serratus"]
    lab[180:186] = CLASS_INDEX["pleura"]
    rng = np.random.default_rng(0)
    img = rng.rayleigh(45, lab.shape).clip(0, 255).astype(np.uint8)
    state = initial_state(AssistantSettings(operator="Dr Jane Roe", block="pecs2"))
    db = tmp_path / "s.sqlite"
    with SessionStore(db) as st:
        sid = st.start_session("Dr Jane Roe", "pecs2", start_s=0.0)

        def feed(msg, t):
            nonlocal state
            state, acts = reduce(state, msg, None, t)
            for a in acts:
                st.record_action(sid, a, t)

        def say(command, t, role="operator"):
            feed(SpeechCommand(command=command, heard=command, confidence=0.9, start_s=t,
                               end_s=t, role=role), t)

        for k in range(100):  # 10 s at 10 Hz
            t = k * 0.1
            view = lab if k >= 20 else np.zeros_like(lab)  # adequate view from 2 s
            tip_y = 40 + k  # the needle goes down 0.1 mm per frame...
            nd = needle_dict(True, [100, tip_y], None, 45, tip_y * 0.1) if k >= 30 \
                else needle_dict(False)
            feed(Frame(frame_id=k, media_time_s=t, image=img, spacing_mm=0.1,
                       depth_mm=22.0), t)
            feed(SegResult(frame_id=k, media_time_s=t, frame_t_mono=0.0, labels=view,
                           classes=list(CLASSES), confidence=[1.0] * 10,
                           present=[True] * 10, needle=nd,
                           calibrated=["nerve", "vessel", "fascia"]), t)
            if k == 50:
                say("injection_start", t)
            if k == 70:
                say("injection_stop", t)
            if k == 60:
                say("down", t, role="supervisor")
        st.end_session(sid, 10.0)
        f = session_figures(st, sid)
        caveats = [e for e in st.events(sid) if e["kind"] == "caveat"]
    assert f["time_to_adequate_s"] == pytest.approx(2.0)
    assert f["adequate_share"] == pytest.approx(0.8)
    assert f["needle_visible_s"] == pytest.approx(7.0)
    assert f["injection_s"] == pytest.approx(2.0)
    assert f["alerts_by_key"] == {"pleura": 1}  # tip y 130 at k=90: 5 mm from y 180
    assert f["supervisor_commands"] == 1
    out = tmp_path / "r.html"
    assert report.main([str(sid), "--db", str(db), "--out", str(out)]) == 0
    html = out.read_text()
    assert "stop, possible pleura five millimetres" in html and "supervisor" in html
    # the figures rest on classes the model never had checked on real scans: said once, kept
    assert len(caveats) == 1
    assert f["unverified"] == ["pec_major", "pec_minor", "serratus", "needle", "pleura"]
    assert "rests on outlines never checked on real scans" in html
    assert "muscles, needle and pleura" in html
    out_d = tmp_path / "d.html"
    assert report.main([str(sid), "--db", str(db), "--out", str(out_d), "--deidentify"]) == 0
    assert "muscles, needle and pleura" in out_d.read_text()  # not free text: kept


def test_json_export_deidentified(db, tmp_path):
    import json

    out = tmp_path / "s.json"
    assert report.main(["1", "--db", str(db), "--json", "--deidentify", "--salt", "k",
                        "--out", str(out)]) == 0
    text = out.read_text()
    assert "Jane" not in text and "Roe" not in text and "anxious" not in text
    assert "show fascia" not in text and "scan_0042" not in text
    data = json.loads(text)
    assert data["session"]["operator"] == pseudonym("Dr Jane Roe", "k")
    assert len(data["quality"]) == 120 and data["figures"]["injection_s"] == pytest.approx(2.0)
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("command_heard") == 3
    assert {e["data"].get("command") for e in data["events"]} >= {"show.fascia", "down"}
    plain = tmp_path / "p.json"
    assert report.main(["1", "--db", str(db), "--json", "--out", str(plain)]) == 0
    assert "Dr Jane Roe" in plain.read_text() and "show fascia" in plain.read_text()
    assert report.main(["--operator", "Dr Jane Roe", "--json", "--db", str(db)]) == 2
