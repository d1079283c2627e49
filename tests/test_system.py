"""Real processes over real ipc:// sockets: the launcher, restarts, clean stops."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from assistant import messages as m
from assistant.bus import BusClient
from assistant.config import load_settings
from assistant.launcher import Launcher
from conftest import ROOT, wait_for
from test_sources import make_video


def write_config(tmp_path: Path, nodes=("source",), extra: str = "") -> Path:
    video = make_video(tmp_path / "clip.mp4", n=40, size=(160, 120))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
bus:
  pub_endpoint: ipc://{tmp_path}/bus-pub
  sub_endpoint: ipc://{tmp_path}/bus-sub
  heartbeat_ms: 100
source:
  kind: video
  path: {video}
  fps: 40
launcher:
  nodes: [{", ".join(nodes)}]
  restart_backoff_ms: 100
{extra}""")
    return cfg


def children_of_run(tmp_path: Path) -> list[int]:
    """Pids of node processes started for this run (their command line names its sockets)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "assistant.node_main" in cmd and str(tmp_path) in cmd:
            pids.append(int(d.name))
    return pids


def start_run(cfg: Path, *args: str) -> subprocess.Popen:
    """`assistant run` as a user starts it; returns once it says every node is ready. Its
    log is read on from then by a thread (the last 200 lines in ``proc.log_tail``): a pipe
    nobody reads fills, and the run then blocks on its next log line."""
    import collections
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "--config", str(cfg), "run",
                             *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    proc.log_tail = collections.deque(maxlen=200)
    for line in proc.stderr:
        proc.log_tail.append(line)
        if "all nodes ready" in line:
            break
    threading.Thread(target=lambda: proc.log_tail.extend(proc.stderr), daemon=True).start()
    return proc


def test_sigkill_node_is_restarted_and_announced(tmp_path):
    cfg = write_config(tmp_path)
    settings = load_settings(cfg)
    events = tmp_path / "events.jsonl"
    with Launcher(settings, str(cfg), events_path=str(events), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(60)
        c = BusClient(la.endpoints, "test", ("frame", "node_status"), ctx=la.ctx)
        frames = []

        def pump():
            for h, msg in c.drain():
                frames.append((h, msg))
            return frames
        wait_for(lambda: any(isinstance(x[1], m.Frame) for x in pump()), 20, what="first frame")
        old_pid = la.kill_node("source", signal.SIGKILL)
        frames.clear()
        wait_for(lambda: any(isinstance(x[1], m.NodeStatus) and x[1].state == "online"
                             for x in pump()), 30, what="source back online")
        states = [x[1].state for x in frames if isinstance(x[1], m.NodeStatus)]
        assert states[:3] == ["offline", "restarted", "online"]
        info = la.node_info("source")
        assert info.pid != old_pid and info.restarts == 1
        n0 = len(frames)
        wait_for(lambda: len([x for x in pump() if isinstance(x[1], m.Frame)]) > 3, 20,
                 what="frames flowing again")
        c.close()

        def node_texts():
            # the launcher writes each Event when it comes back to it over the bus, a moment
            # after the NodeStatus this client saw: wait for it before closing the launcher
            lines = events.read_text().split("\n")[:-1]  # whole lines only
            return [x["text"] for x in map(json.loads, lines) if x["kind"] == "node"]
        wait_for(lambda: "source online" in node_texts(), 20, what="'source online' logged")
    assert node_texts()[:3] == ["source offline", "source restarted", "source online"]
    assert not children_of_run(tmp_path)


def test_segmentation_process_says_which_confidences_are_calibrated(tmp_path):
    # the real model in its own process, over the bus: the SegResult names the classes whose
    # confidence was calibrated on real scans, so the renderer can mark the rest unverified
    cfg = write_config(tmp_path, nodes=("source", "segmentation"))
    settings = load_settings(cfg)
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(60)
        c = BusClient(la.endpoints, "test", ("seg",), ctx=la.ctx)
        got = []
        wait_for(lambda: got.extend(x for _, x in c.drain() if isinstance(x, m.SegResult)) or got,
                 30, what="a SegResult")
        c.close()
    seg = got[0]
    assert seg.calibrated == ["nerve", "vessel", "fascia"]
    assert set(seg.calibrated) < set(seg.classes) and seg.model.startswith("pecs_seg:")


def test_ctrl_c_stops_everything_within_two_seconds(tmp_path):
    cfg = write_config(tmp_path)
    proc = start_run(cfg)
    try:
        assert children_of_run(tmp_path), "no node process started"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(5)
        elapsed = time.monotonic() - t0
        wait_for(lambda: not children_of_run(tmp_path), 1, what="no node left")
        assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_on_launcher_stops_nodes(tmp_path):
    cfg = write_config(tmp_path)
    proc = start_run(cfg)
    try:
        pids = children_of_run(tmp_path)
        assert pids
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        wait_for(lambda: not children_of_run(tmp_path), 2, what="nodes gone after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_killed_launcher_leaves_no_orphan(tmp_path):
    """Even a SIGKILLed launcher leaves nothing: nodes die with their parent."""
    cfg = write_config(tmp_path)
    proc = start_run(cfg)
    assert children_of_run(tmp_path)
    proc.kill()
    proc.wait(5)
    wait_for(lambda: not children_of_run(tmp_path), 5, what="orphans to exit")


def test_bad_config_stops_with_one_clear_error(tmp_path):
    cfg = write_config(tmp_path, extra="render:\n  widht_px: 3\n")
    r = subprocess.run([sys.executable, "-m", "assistant.cli", "--config", str(cfg), "run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{cfg}:" in r.stderr and "render.widht_px: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_dead_node_is_said_aloud_and_others_keep_running(tmp_path):
    """SIGKILL one node while the others run: the assistant says it is offline, then back;
    the renderer keeps drawing frames throughout."""
    cfg = write_config(tmp_path, nodes=("source", "speech", "assistant", "renderer"),
                       extra="speech:\n  input: none\ntts:\n  output: none\n")
    settings = load_settings(cfg)
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(60)
        c = BusClient(la.endpoints, "test", ("event", "rendered"), ctx=la.ctx)
        seen = []

        def pump():
            seen.extend(c.drain())
            return seen
        wait_for(lambda: any(isinstance(x[1], m.Rendered) for x in pump()), 30, what="rendering")
        renderer_pid = la.node_info("renderer").pid
        la.kill_node("speech", signal.SIGKILL)

        def said(text):
            return any(isinstance(x[1], m.Event) and x[1].kind == "speech" and x[1].text == text
                       for x in pump())
        wait_for(lambda: said("speech offline"), 20, what="'speech offline' said")
        wait_for(lambda: said("speech back"), 30, what="'speech back' said")
        n = len([x for x in seen if isinstance(x[1], m.Rendered)])
        wait_for(lambda: len([x for x in pump() if isinstance(x[1], m.Rendered)]) > n + 5, 20,
                 what="renderer still drawing")
        assert la.node_info("renderer").pid == renderer_pid  # never restarted
        assert la.node_info("speech").restarts == 1
        c.close()


class FakeRecognizer:
    """Sends commands the way the speech node does (reliable, acknowledged) and collects
    the Events that come back."""

    def __init__(self, la, retries: int = 10):
        from assistant.bus import ReliableSender
        self.c = BusClient(la.endpoints, "speech", ("event", "ack", "hb"), ctx=la.ctx)
        self.rel = ReliableSender(self.c, timeout_ms=200, retries=retries)
        self.events = []
        self.heard_bus = False
        # A SUB socket joins the proxy asynchronously: an Event published before it has
        # joined is lost (the ack of a retried command is not, the event it caused may
        # be). Anything received proves the join, so wait for a heartbeat before sending.
        wait_for(lambda: self.pump() is not None and self.heard_bus, 10,
                 what="a heartbeat on the test's own subscription")

    def pump(self):
        for h, msg in self.c.drain():
            if isinstance(msg, m.Ack):
                self.rel.on_ack(h, msg)
            elif isinstance(msg, m.Event):
                self.events.append(msg)
            elif isinstance(msg, m.Heartbeat):
                self.heard_bus = True
        self.rel.tick()
        return self.events

    def say(self, command, timeout_s: float = 10):
        self.rel.send(m.SpeechCommand(command=command, heard=command, confidence=0.9,
                                      start_s=0.0, end_s=0.5))
        wait_for(lambda: self.pump() is not None and not self.rel.pending, timeout_s,
                 what=f"ack of {command}")

    def event(self, text):
        return next((e for e in self.pump() if e.text == text), None)

    def close(self):
        self.c.close()


def test_voice_commands_over_the_bus_record_the_monitor_view(tmp_path):
    """Commands sent as the recognizer sends them (reliable, acknowledged) start and stop a
    recording of the monitor view; stopping waits for "yes"."""
    rec_dir = tmp_path / "rec"
    cfg = write_config(tmp_path, nodes=("source", "assistant", "renderer"),
                       extra=f"render:\n  recording_dir: {rec_dir}\n")
    settings = load_settings(cfg)
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(60)
        sp = FakeRecognizer(la)
        sp.say("record_start")
        wait_for(lambda: sp.event("recording to file"), 10, what="recording started")
        sp.say("record_stop")  # needs confirmation
        wait_for(lambda: any(e.kind == "speech" and "yes" in e.text.lower() for e in sp.pump()), 10,
                 what="confirmation question")
        assert sp.event("recording saved") is None
        sp.say("yes")
        saved = wait_for(lambda: sp.event("recording saved"), 10, what="recording saved")
        assert saved.data["frames"] > 0
        cap = cv2.VideoCapture(saved.data["path"])
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == saved.data["frames"]
        sp.close()

def test_missing_microphone_disables_voice_only(tmp_path):
    """No sound card here: `speech.input: mic` gives one clear alert, the speech node keeps
    its heartbeat, and frames keep being drawn."""
    cfg = write_config(tmp_path, nodes=("source", "speech", "renderer"),
                       extra="speech:\n  input: mic\n")
    settings = load_settings(cfg)
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        c = BusClient(la.endpoints, "test", ("event", "rendered", "hb"), ctx=la.ctx)
        got = []
        la.wait_ready(60)

        def pump():
            got.extend(c.drain())
            return got
        wait_for(lambda: len([x for x in pump() if isinstance(x[1], m.Rendered)]) > 5, 30,
                 what="frames drawn")
        wait_for(lambda: any(isinstance(x[1], m.Heartbeat) and x[1].node == "speech"
                             and x[1].stats.get("voice") is False for x in pump()), 10,
                 what="speech heartbeat saying voice is off")
        assert la.node_info("speech").restarts == 0
        log = (tmp_path / "logs" / "speech.log").read_text()
        assert "no microphone" in log and "voice control disabled" in log
        c.close()


def test_session_record_survives_assistant_crash(tmp_path):
    """SIGKILL the assistant mid-session: what it recorded stays, the restarted process
    resumes the same session and goes on recording into it."""
    from assistant.records import SessionStore

    db = tmp_path / "sessions.sqlite"
    cfg = write_config(tmp_path, nodes=("source", "assistant"),
                       extra=f"assistant:\n  session_db: {db}\n  operator: Dr Test\n")
    settings = load_settings(cfg)
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(60)
        sp = FakeRecognizer(la, retries=20)

        def say(command):
            sp.say(command, timeout_s=20)
            wait_for(lambda: any(e.kind == "command_heard" for e in sp.pump()), 10,
                     what="command logged")
            sp.events.clear()

        say("injection_start")
        say("hide.fascia")
        say("record_start")
        say("record_stop")  # asks "stop recording? say yes or no": left open by the crash

        def question_saved():
            with SessionStore(db, create=False) as store:
                sid = store.sessions()[0]["id"]
                return (store.load_choices(sid) or {}).get("pending_prompt")
        wait_for(question_saved, 10, what="open question in the record")
        la.kill_node("assistant", signal.SIGKILL)
        wait_for(lambda: la.node_info("assistant").online and la.node_info("assistant").restarts == 1,
                 30, what="assistant back")
        # the restarted assistant carries on with what the operator had chosen
        back = wait_for(lambda: next((e for e in sp.pump() if e.kind == "info"
                                      and "choices restored" in e.text), None),
                        10, what="choices restored")
        assert back.data["injecting"] is True and back.data["layers"]["fascia"] is False
        assert back.data["layers"]["nerve"] is True and back.data["recording"] is True
        # the open question is cancelled aloud, not carried over: "yes" now does nothing
        wait_for(lambda: any(e.kind == "speech" and "stop recording cancelled" in e.text
                             for e in sp.pump()), 10, what="question cancelled aloud")
        say("injection_stop")
        run_id = la.run_id
        sp.close()
    with SessionStore(db, create=False) as store:
        sessions = store.sessions()
        assert len(sessions) == 1 and sessions[0]["uid"] == run_id
        sid = sessions[0]["id"]
        heard = [e["data"]["command"] for e in store.events(sid, kind="command_heard")]
        assert heard == ["injection_start", "hide.fascia", "record_start", "record_stop",
                         "injection_stop"]
        assert [e["text"] for e in store.events(sid, kind="action")
                if "restart" in e["text"]] == ["cancelled (restart): stop recording"]
        marks = store.events(sid, kind="injection")
        # the stop closes the injection started before the crash: its duration is measured
        assert [e["text"] for e in marks] == ["injection start", "injection stop"]
        assert marks[1]["data"]["duration_s"] > 0


def status_if(read, ok):
    """One reading of ``read()`` (a status dict or None), returned when ``ok`` holds for it,
    else None: for wait_for, so what is asserted on is the reading that matched."""
    st = read()
    return st if st and ok(st) else None


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_status(port: int) -> dict | None:
    """The browser view's /status.json, or None while it does not answer."""
    import urllib.request

    import http.client

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, http.client.HTTPException):  # not up yet, or going down mid-answer
        return None


def test_live_run_serves_the_monitor_view_to_a_browser(tmp_path):
    """`assistant run` with a video source: the renderer's live view is served on
    127.0.0.1 and shows new frames."""
    import urllib.request

    import numpy as np

    port = free_port()
    cfg = write_config(tmp_path, nodes=("source", "assistant", "renderer"))
    proc = start_run(cfg, "--web-port", str(port))
    try:

        def status():
            return web_status(port)
        first = wait_for(lambda: status_if(status, lambda st: st.get("frames", 0) > 0), 30,
                         what="first frame served")
        wait_for(lambda: (status() or {}).get("frames", 0) > first["frames"] + 5, 30,
                 what="frames advancing")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg", timeout=5) as r:
            jpeg = r.read()
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (720, 1280, 3)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_head_mounted_view_says_which_outlines_are_unverified(tmp_path):
    """`assistant run` with the real segmentation and the head-mounted view on: the panel
    served to the headset's browser carries the legend's doubts (it has no legend)."""
    import urllib.request

    import numpy as np

    from models.simulator import simulate_frame

    us = cv2.VideoWriter(str(tmp_path / "pecs.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for i in range(6):  # simulated PECS II frames: muscles, pleura, bone
        us.write(cv2.cvtColor(cv2.resize(simulate_frame(i).image, (256, 256)), cv2.COLOR_GRAY2BGR))
    us.release()
    room = cv2.VideoWriter(str(tmp_path / "room.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(5):
        room.write(np.full((240, 320, 3), 90, np.uint8))
    room.release()
    port = free_port()
    cfg = write_config(tmp_path, nodes=("source", "segmentation", "assistant", "renderer"),
                       extra=f"hmd:\n  enabled: true\n  scene: {tmp_path / 'room.mp4'}\n")
    # the shipped heartbeat (500 ms), not the restart tests' 100: with 100 ms (killed after
    # 0.3 s of silence) the launcher killed the renderer with the head-mounted view again and
    # again on this 2-core host (its first frame imported open3d, about 1 s; HmdView.prepare
    # now does that before "ready"), and the test timed out waiting for a frame
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "clip.mp4"), str(tmp_path / "pecs.mp4"))
                   .replace("fps: 40", "fps: 10")
                   .replace("heartbeat_ms: 100", "heartbeat_ms: 500"))
    assert "heartbeat_ms: 500" in cfg.read_text()
    proc = start_run(cfg, "--web-port", str(port))
    try:
        def status():
            return web_status(port + 1)
        # one reading per poll: the doubts asserted on are those of the frame that matched
        # (read twice, the second could be a later frame's, with no doubt)
        st = wait_for(lambda: status_if(status, lambda s: "unverified" in (s.get("doubts") or "")),
                      60, what="a head-mounted frame whose footer names unverified classes")
        assert "muscles" in st["doubts"] and "nerve" not in st["doubts"].split("unverified:")[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/frame.jpg", timeout=5) as r:
            view = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert view.shape[0] == 720 and view.shape[1] in (1280, 2560)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_stop_removes_the_run_folder_it_made(tmp_path):
    # default 'auto' endpoints: the bus sockets live in a run folder the launcher makes; a
    # stopped run must leave nothing behind in /tmp (373 such folders had built up here),
    # except node logs a user was told are there
    cfg = write_config(tmp_path)
    text = cfg.read_text()
    cfg.write_text("\n".join(line for line in text.splitlines() if "_endpoint:" not in line))
    settings = load_settings(cfg)
    assert settings.bus.pub_endpoint == "auto"
    with Launcher(settings, str(cfg), log_dir=str(tmp_path / "logs")) as la:
        la.wait_ready(30)
        run_dir = Path(la.run_dir)
        assert (run_dir / "bus-pub").exists() and (run_dir / "bus-sub").exists()
    assert not run_dir.exists()
    assert (tmp_path / "logs" / "source.log").exists()

    # logs in the run folder (as `assistant run` does): the sockets go, the logs stay
    with Launcher(settings, str(cfg)) as la:
        la.wait_ready(30)
        run_dir = Path(la.run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["source.log"]
    shutil.rmtree(run_dir)
    # a folder the caller chose is the caller's: untouched
    mine = tmp_path / "mine"
    with Launcher(settings, str(cfg), run_dir=str(mine), log_dir=str(tmp_path / "logs2")) as la:
        la.wait_ready(30)
    assert (mine / "bus-pub").exists()
