"""Outputs: the video file is written and reads back; no window without a display."""
from __future__ import annotations

import dataclasses
import socket
import urllib.request

import cv2
import numpy as np
import pytest

from ar.outputs import Outputs, VideoOut, display_available
from ar.overlay import render_monitor
from ar.settings import RenderSettings
from ar.testframes import synthetic_scene
from conftest import video_frames


def test_display_detection():
    assert not display_available({})
    assert display_available({"DISPLAY": ":0"})
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"})


def test_video_file_round_trip(tmp_path):
    frames = []
    for k in range(5):
        f, s, st = synthetic_scene(frame_id=k + 1, needle_t=0.2 + 0.15 * k)
        frames.append(render_monitor(f, s, st, 100.05, RenderSettings()))
    out = VideoOut(tmp_path / "monitor.mp4", fps=20)
    for fr in frames:
        out.write(fr)
    out.write(cv2.resize(frames[0], (640, 360)))  # another size is resized, not dropped
    out.close()
    got = video_frames(tmp_path / "monitor.mp4")
    assert len(got) == 6 and got[0].shape == (720, 1280, 3)
    for a, b in zip(got[:5], frames):
        assert np.abs(a.astype(int) - b).mean() < 6  # lossy, but the same pictures, in order
    assert np.abs(got[1].astype(int) - frames[1]).mean() < np.abs(got[1].astype(int) - frames[4]).mean()


def test_bad_video_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        VideoOut(tmp_path / "no" / "such" / "x.mp4")
    with pytest.raises(ValueError, match="uint8"):
        VideoOut(tmp_path / "x.mp4").write(np.zeros((4, 4), np.uint8))


def test_outputs_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with socket.socket() as sock:  # a free port for the browser view
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = dataclasses.replace(RenderSettings(), window=True, video_path=str(tmp_path / "v.mp4"), web_port=port)
    outs = Outputs(s)
    try:
        assert not outs.window  # asked for, but there is no display
        f, seg, st = synthetic_scene()
        img = render_monitor(f, seg, st, 100.05, s)
        outs.show(img, {"frame_id": 1})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
            assert b'"frame_id": 1' in r.read()
    finally:
        outs.close()
    assert (tmp_path / "v.mp4").stat().st_size > 1000
