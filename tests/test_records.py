"""Session records: SQLite store, crash safety, teaching figures, learning curve."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.logic import LogEvent, PublishState, RecordSample, Speak
from assistant.records import (SCHEMA_VERSION, SessionStore, default_db_path,
                               learning_curve, operator_id, pseudonym, session_figures)

ROOT = Path(__file__).resolve().parent.parent


def test_default_path_is_resolved_from_the_environment_when_called(tmp_path):
    assert default_db_path({"XDG_DATA_HOME": str(tmp_path)}) == \
        tmp_path / "usra-assistant" / "sessions.sqlite"
    home = Path.home() / ".local" / "share" / "usra-assistant" / "sessions.sqlite"
    assert default_db_path({}) == home
    assert default_db_path({"XDG_DATA_HOME": "relative/dir"}) == home  # spec: absolute only


def test_schema_is_versioned_and_wal(tmp_path):
    db = tmp_path / "s.sqlite"
    SessionStore(db).close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] \
        == str(SCHEMA_VERSION)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        SessionStore(db)


def test_bad_inputs_are_clear_errors(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as st:
        with pytest.raises(ValueError, match="operator"):
            st.start_session("", "pecs2")
        sid = st.start_session("Dr A", "pecs2")
        with pytest.raises(ValueError, match="event kind 'gossip'"):
            st.add_event(sid, 0.0, "gossip", "x")
        with pytest.raises(ValueError, match="0..100"):
            st.add_quality(sid, 0.0, 140.0)
        with pytest.raises(KeyError, match="no session 'nope'"):
            st.session("nope")
    with pytest.raises(FileNotFoundError):
        SessionStore(tmp_path / "missing.sqlite", create=False)


def test_logic_actions_are_written_and_others_ignored(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as st:
        sid = st.start_session("Dr A", "pecs2", start_s=0.0)
        assert st.record_action(sid, LogEvent("alert", "stop, pleura", {"key": "pleura"}), 1.0)
        assert st.record_action(sid, RecordSample("quality", 1.5, {"score": 70.0,
                                                                   "reason": "good view"}), 1.5)
        assert st.record_action(sid, RecordSample("needle", 1.5, {
            "visible": True, "depth_mm": 12.0, "to_target_mm": 3.0, "tip_px": [10, 20],
            "nearest_danger": {"name": "pleura", "distance_mm": 4.0}}), 1.5)
        assert not st.record_action(sid, Speak("hi", "ack"), 2.0)
        assert not st.record_action(sid, PublishState(), 2.0)
        assert st.events(sid)[0]["data"] == {"key": "pleura"}
        assert st.quality(sid) == [(1.5, 70.0, "good view")]
        n = st.needle(sid)[0]
        assert (n["depth_mm"], n["danger_name"], n["danger_mm"], n["tip_y"]) == \
            (12.0, "pleura", 4.0, 20.0)


def _fill(st: SessionStore, operator: str, wall: float, adequate_from_s: float) -> int:
    """A 10 s session at 10 Hz: quality crosses 60 at ``adequate_from_s``, needle seen
    from 2 s, injection 5..7 s, one pleura alert."""
    sid = st.start_session(operator, "pecs2", start_s=100.0, started_wall=wall)
    for i in range(100):
        t = 100.0 + i * 0.1
        st.add_quality(sid, t, 80.0 if i * 0.1 >= adequate_from_s - 1e-9 else 30.0, "")
        st.add_needle(sid, t, i >= 20, depth_mm=i * 0.2)
    st.add_event(sid, 105.0, "injection", "injection start", {"mark": "start"})
    st.add_event(sid, 107.0, "injection", "injection stop", {"mark": "stop"})
    st.add_event(sid, 106.0, "alert", "stop, pleura four millimetres", {"key": "pleura"})
    st.add_event(sid, 103.0, "command_heard", "supervisor: down", {"role": "supervisor"})
    st.add_event(sid, 103.5, "command_heard", "operator: assistant freeze -> freeze",
                 {"role": "operator", "via": "second opinion"})
    st.add_event(sid, 103.7, "command_heard", "operator: assistant show fascia -> show.fascia",
                 {"role": "operator", "via": "whisper"})
    st.add_event(sid, 104.0, "command_unclear", "not understood: assistant ...",
                 {"heard": "assistant", "guess": None})
    st.end_session(sid, 110.0)
    return sid


def test_session_figures(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as st:
        sid = _fill(st, "Dr A", 1000.0, adequate_from_s=4.0)
        f = session_figures(st, sid, adequate=60.0)
    assert f["duration_s"] == pytest.approx(10.0)
    assert f["time_to_adequate_s"] == pytest.approx(4.0)
    assert f["adequate_share"] == pytest.approx(0.6)
    assert f["needle_visible_s"] == pytest.approx(8.0)
    assert f["injection_s"] == pytest.approx(2.0)
    assert f["alerts"] == 1 and f["alerts_by_key"] == {"pleura": 1}
    assert f["supervisor_commands"] == 1
    assert f["commands"] == 3 and f["commands_unclear"] == 1  # asked again, not a command
    assert f["commands_second_opinion"] == 1 and f["commands_whisper"] == 1
    assert f["max_depth_mm"] == pytest.approx(19.8)


def test_gaps_do_not_count_as_viewing_time(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as st:
        sid = st.start_session("Dr A", "pecs2", start_s=0.0)
        st.add_quality(sid, 0.0, 90.0)
        st.add_quality(sid, 30.0, 10.0)  # segmentation was away for 30 s
        st.add_quality(sid, 30.5, 10.0)
        st.end_session(sid, 31.0)
        f = session_figures(st, sid)
    # 1 s (capped gap) adequate out of 2 s scored
    assert f["adequate_share"] == pytest.approx(0.5)


def test_learning_curve_orders_an_operators_sessions(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as st:
        for k, t_adequate in enumerate((6.0, 4.0, 2.0)):
            _fill(st, "Dr A", 2000.0 + k, t_adequate)
        _fill(st, "Dr B", 1500.0, 1.0)
        curve = learning_curve(st, "Dr A")
    assert [c["n"] for c in curve] == [1, 2, 3]
    assert [c["time_to_adequate_s"] for c in curve] == pytest.approx([6.0, 4.0, 2.0])
    assert [round(c["adequate_share"], 2) for c in curve] == [0.4, 0.6, 0.8]
    assert all(c["operator"] == "Dr A" for c in curve)


def test_pseudonyms_and_log_ids_are_stable_and_do_not_reveal_the_name(caplog, tmp_path):
    assert pseudonym("Dr Jane Roe") == pseudonym("Dr Jane Roe") != pseudonym("Dr John Roe")
    assert pseudonym("Dr Jane Roe", "s1") != pseudonym("Dr Jane Roe", "s2")
    assert "Jane" not in pseudonym("Dr Jane Roe") and "Jane" not in operator_id("Dr Jane Roe")
    with caplog.at_level("DEBUG"):
        with SessionStore(tmp_path / "s.sqlite") as st:
            st.start_session("Dr Jane Roe", "pecs2")
    assert "Jane" not in caplog.text and operator_id("Dr Jane Roe") in caplog.text


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from assistant.records import SessionStore
    st = SessionStore({db!r})
    sid = st.start_session("Dr Crash", "pecs2", start_s=0.0)
    i = 0
    while True:  # until killed
        st.add_quality(sid, i * 0.1, float(i % 100), "r")
        st.add_event(sid, i * 0.1, "info", f"row {{i}}", {{"i": i}})
        print(i, flush=True)  # both rows are committed when this line is printed
        i += 1
""")


def test_a_session_survives_kill_9_of_the_writer(tmp_path):
    db = tmp_path / "crash.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(root=str(ROOT), db=str(db))],
                            stdout=subprocess.PIPE, text=True)
    try:
        last = -1
        for line in proc.stdout:  # blocks on the pipe, no sleeping
            last = int(line)
            if last >= 200:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert last >= 200
    with SessionStore(db) as st:
        (s,) = st.sessions()
        assert s["operator"] == "Dr Crash" and s["end_s"] is None
        q = st.quality(s["id"])
        ev = st.events(s["id"], "info")
        # every row confirmed before the kill is there (maybe one more, written after)
        assert len(q) >= last + 1 and len(ev) >= last + 1
        assert [e["data"]["i"] for e in ev[: last + 1]] == list(range(last + 1))
        f = session_figures(st, s["id"])  # an unfinished session still has figures
        assert f["duration_s"] > 0


def test_choices_are_saved_replaced_and_read_back(tmp_path):
    with SessionStore(tmp_path / "s.sqlite") as store:
        sid = store.start_session("Dr A", "pecs2")
        assert store.load_choices(sid) is None
        store.save_choices(sid, 1.0, {"overlay_on": False})
        store.save_choices(sid, 2.0, {"overlay_on": True, "layers": {"nerve": False}})
        assert store.load_choices(sid) == {"overlay_on": True, "layers": {"nerve": False}}
        store._db.execute("UPDATE choices SET data = '[1' WHERE session_id = ?", (sid,))
        with pytest.raises(ValueError, match=f"session {sid}: saved choices are not JSON"):
            store.load_choices(sid)


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    """Databases written before the choices table (schema 1) open, keep their sessions
    and gain the table."""
    db = tmp_path / "old.sqlite"
    with SessionStore(db) as store:
        sid = store.start_session("Dr A", "pecs2")
        store.add_event(sid, 1.0, "info", "kept")
    con = sqlite3.connect(db)
    con.execute("DROP TABLE choices")
    con.execute("PRAGMA user_version = 1")
    con.close()
    with SessionStore(db) as store:
        assert [e["text"] for e in store.events(sid)] == ["kept"]
        store.save_choices(sid, 2.0, {"muted": True})
        assert store.load_choices(sid) == {"muted": True}
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
