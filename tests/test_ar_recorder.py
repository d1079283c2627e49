"""The renderer's video file (ar/recorder.py): the frames read back in order, a frame of
another size is resized rather than dropped, bad input is named, equal runs give equal digests."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ar.overlay import render_monitor
from ar.recorder import VideoRecorder, VideoWriteError
from ar.settings import RenderSettings
from ar.testframes import synthetic_scene
from conftest import video_frames


def monitor_frames(n):
    out = []
    for k in range(n):
        f, s, st = synthetic_scene(frame_id=k + 1, needle_t=0.2 + 0.15 * k)
        out.append(render_monitor(f, s, st, 100.05, RenderSettings()))
    return out


def test_the_video_reads_back_in_order_and_a_resized_frame_is_kept(tmp_path):
    frames = monitor_frames(5)
    rec = VideoRecorder(tmp_path / "sub" / "monitor.mp4", fps=20)  # the folder is made
    for fr in frames:
        rec.write(fr)
    rec.write(cv2.resize(frames[0], (640, 360)))  # another size: resized, not dropped
    rec.close()
    got = video_frames(tmp_path / "sub" / "monitor.mp4")
    assert rec.frames == 6 and len(got) == 6 and got[0].shape == (720, 1280, 3)
    for a, b in zip(got[:5], frames):
        assert np.abs(a.astype(int) - b).mean() < 6  # lossy, but the same pictures, in order
    assert np.abs(got[1].astype(int) - frames[1]).mean() < np.abs(got[1].astype(int) - frames[4]).mean()
    assert np.abs(got[5].astype(int) - frames[0]).mean() < 8


def test_equal_runs_give_equal_digests_and_other_frames_another(tmp_path):
    frames = monitor_frames(3)
    digests = []
    for name, seq in (("a", frames), ("b", frames), ("c", frames[::-1])):
        rec = VideoRecorder(tmp_path / f"{name}.mp4", fps=20)
        for fr in seq:
            rec.write(fr)
        rec.close()
        digests.append(rec.digest)
    assert digests[0] == digests[1] != digests[2]


def test_bad_frames_and_a_closed_recorder_are_named(tmp_path):
    rec = VideoRecorder(tmp_path / "x.mp4", fps=20)
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                np.zeros((0, 4, 3), np.uint8), "frame"):
        with pytest.raises(ValueError, match=r"x\.mp4.*uint8 \(H, W, 3\)"):
            rec.write(bad)
    rec.write(np.zeros((8, 8, 3), np.uint8))
    rec.close()
    assert rec.frames == 1
    with pytest.raises(VideoWriteError, match="already closed"):
        rec.write(np.zeros((8, 8, 3), np.uint8))
