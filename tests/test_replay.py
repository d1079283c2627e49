"""Lab replay through the real processes: every frame, same frame count and rate,
voice commands aligned in time, deterministic output, clear errors for bad files."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from assistant.config import load_settings
from assistant.demo import make_voice_track
from assistant.replay import replay
from conftest import ROOT, video_frames, write_media

NODES = ("segmentation", "speech", "assistant", "renderer")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    from models.simulator import render_clip
    video = d / "sim.mp4"
    render_clip(str(video), n_frames=50, fps=20, seed=3)
    audio = d / "voice.wav"
    make_voice_track(audio, seconds=2.5, script=((0.1, "assistant, hide overlay"),))
    return video, audio


def run_replay(tmp_path, clip, name):
    video, audio = clip
    settings = load_settings()
    return replay(settings, None, video, tmp_path / name, audio=audio, progress=False, nodes=NODES)


def test_replay_every_frame_deterministic_with_voice(tmp_path, clip):
    a = run_replay(tmp_path, clip, "a")
    b = run_replay(tmp_path, clip, "b")
    assert a.frames == b.frames == 50
    cap = cv2.VideoCapture(a.annotated)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 50
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20.0)
    assert a.digest == b.digest, "two runs of the same input gave different annotations"
    events = [json.loads(x) for x in open(a.events)]
    heard = [e for e in events if e["kind"] == "command_heard"]
    assert [e["data"]["command"] for e in heard] == ["hide.all"]
    # applied at the frame where the utterance ended, by media time, not wall time
    assert 1.2 < heard[0]["media_time_s"] < 2.5
    assert any(e["kind"] == "action" and "hide" in e["text"] for e in events)


def test_replay_asks_again_for_a_command_it_did_not_understand(tmp_path, clip):
    # the wake phrase, then words that are no command: the real recognizer, assistant and
    # renderer processes answer "say again" at the frame where the speech ended
    video, _ = clip
    audio = tmp_path / "unclear.wav"
    make_voice_track(audio, seconds=2.5, script=((0.1, "assistant, purple elephant"),))
    res = replay(load_settings(), None, video, tmp_path / "o", audio=audio, progress=False,
                 nodes=NODES)
    events = [json.loads(x) for x in open(res.events)]
    assert not [e for e in events if e["kind"] in ("command_heard", "action")]
    (u,) = [e for e in events if e["kind"] == "command_unclear"]
    assert u["data"]["heard"] == "assistant" and 1.2 < u["media_time_s"] < 2.5
    said = [e for e in events if e["kind"] == "speech"]
    assert [e["text"] for e in said] == ["say again"]
    assert said[0]["media_time_s"] == u["media_time_s"]
    # and the monitor shows it: a light box at the foot of the side panel from that frame
    frames = video_frames(res.annotated)
    after = frames[min(len(frames) - 1, int(u["media_time_s"] * 20) + 2)]
    h, w = after.shape[:2]
    box = (slice(h - 120, h - 56), slice(w - 290, w - 10))

    def light(img):
        return int((img[box] >= 200).all(axis=2).sum())

    assert light(after) > 4000 and light(frames[5]) < 1000


def test_replay_a_bare_yes_answers_the_opposite_offered(tmp_path):
    # "freeze" heard while frozen (as "unfreeze" can be misheard): the assistant offers
    # "unfreeze", and its question, not the command file, opens the speech process's
    # window for a bare "yes", which the real recognizer then hears and the image goes live
    from models.simulator import render_clip
    video, audio = tmp_path / "sim.mp4", tmp_path / "voice.wav"
    render_clip(str(video), n_frames=150, fps=20, seed=3)
    make_voice_track(audio, seconds=7.5, script=((0.1, "assistant, freeze"),
                                                 (2.6, "assistant, freeze"), (5.6, "yes")))
    res = replay(load_settings(), None, video, tmp_path / "o", audio=audio, progress=False,
                 nodes=NODES)
    events = [json.loads(x) for x in open(res.events)]
    heard = [e["data"]["command"] for e in events if e["kind"] == "command_heard"]
    assert heard == ["freeze", "freeze", "yes"]
    acts = [e["text"] for e in events if e["kind"] == "action"]
    assert acts[0] == "freeze" and acts[1].startswith("offered: unfreeze")
    assert acts[2:] == ["confirmed: unfreeze", "unfreeze"]
    said = [e["text"] for e in events if e["kind"] == "speech"]
    assert said == ["frozen", "already frozen. unfreeze? say yes or no", "live"]


def test_replay_uses_the_recordings_own_audio_track(tmp_path, clip):
    # a lab recording with the room's sound in the same file: no --audio needed
    video, _ = clip
    voice = tmp_path / "voice.wav"
    make_voice_track(voice, seconds=2.5, script=((0.1, "assistant, hide overlay"),))
    from speech.audio import read_wav
    rec = tmp_path / "rec.mp4"
    write_media(rec, video_frames(video), 20, read_wav(voice)[0])
    res = replay(load_settings(), None, rec, tmp_path / "o", progress=False, nodes=NODES)
    events = [json.loads(x) for x in open(res.events)]
    (h,) = [e for e in events if e["kind"] == "command_heard"]
    assert h["data"]["command"] == "hide.all" and 1.2 < h["media_time_s"] < 2.5
    # --no-audio: the track is ignored
    res = replay(load_settings(), None, rec, tmp_path / "o2", progress=False, nodes=NODES,
                 video_audio=False)
    assert not [e for e in map(json.loads, open(res.events)) if e["kind"] == "command_heard"]


def test_replay_cli_corrupt_video_names_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 5000)
    r = subprocess.run([sys.executable, "-m", "assistant.cli", "replay", str(bad), "--out",
                        str(tmp_path / "o"), "--no-progress"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "replay failed" in r.stderr and "broken.mp4" in r.stderr
    assert not (tmp_path / "o").exists()  # nothing made for input that cannot be read
    assert "Traceback" not in r.stderr


def test_replay_truncated_video_keeps_what_was_read(tmp_path):
    w = cv2.VideoWriter(str(tmp_path / "long.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 20, (160, 120))
    for i in range(60):
        w.write(np.full((120, 160, 3), i * 4, np.uint8))
    w.release()
    data = (tmp_path / "long.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    r = subprocess.run([sys.executable, "-m", "assistant.cli", "replay", str(tmp_path / "cut.avi"),
                        "--out", str(tmp_path / "o"), "--no-progress", "--nodes", "renderer"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cut.avi: truncated" in r.stderr
    cap = cv2.VideoCapture(str(tmp_path / "o" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 10  # the frames read were rendered, not lost


def test_replay_survives_a_node_killed_mid_way(tmp_path, clip):
    """SIGKILL the recognizer at frame 10: every frame is still rendered, promptly (nobody
    waits for the dead producer), and the event log says what happened."""
    import signal
    import time

    video, audio = clip

    def drill(i, launcher):
        if i == 10:
            launcher.kill_node("speech", signal.SIGKILL)

    t0 = time.monotonic()
    s = replay(load_settings(), None, video, tmp_path / "k", audio=audio, progress=False,
               nodes=("speech", "assistant", "renderer"), drill=drill)
    assert s.frames == 50
    assert time.monotonic() - t0 < 60
    lines = [json.loads(x) for x in open(s.events)]
    texts = [x["text"] for x in lines]
    assert "speech offline" in texts
    node = [x["text"] for x in lines if x["kind"] == "node"]
    assert node.count("speech offline") == 1, node  # once, from the launcher


def test_replay_needs_the_renderer(tmp_path, clip):
    from assistant.replay import ReplayError
    with pytest.raises(ReplayError, match="needs the renderer"):
        replay(load_settings(), None, clip[0], tmp_path / "n", progress=False, nodes=("assistant",))
