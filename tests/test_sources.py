"""Frame sources: video files and image folders, with clear errors for bad input."""
import logging

import cv2
import numpy as np
import pytest

from assistant.config import SourceSettings
from assistant.sources import SourceError, iter_images, iter_video, open_path, probe_video


def make_video(path, n=12, size=(96, 80), fps=20):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        img = np.full((size[1], size[0], 3), (10 * i) % 250, np.uint8)
        cv2.putText(img, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        w.write(img)
    w.release()
    return path


def test_video_every_frame_grey_and_geometry(tmp_path):
    p = make_video(tmp_path / "clip.mp4")
    (tmp_path / "clip.mp4.json").write_text('{"depth_mm": 48}')
    frames = list(iter_video(p, SourceSettings()))
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (80, 96)  # grey video arrives as one channel
    assert frames[3].media_time_s == pytest.approx(3 / 20)
    assert frames[0].depth_mm == 48 and frames[0].spacing_mm == pytest.approx(48 / 80)
    s = SourceSettings(spacing_mm=0.2)
    f = next(iter_video(p, s))
    assert f.spacing_mm == 0.2


def test_missing_and_corrupt_video(tmp_path):
    with pytest.raises(SourceError, match=r"nope.mp4: video file not found"):
        probe_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(SourceError, match=r"bad.mp4: (cannot open|no readable frame)"):
        list(iter_video(bad, SourceSettings()))


def test_truncated_video_names_file_and_frame(tmp_path):
    p = make_video(tmp_path / "long.mp4", n=60, size=(160, 120))
    data = p.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    got = []
    with pytest.raises(SourceError, match=r"cut.mp4: .*(truncated|corrupt|no readable frame|cannot open)"):
        for f in iter_video(cut, SourceSettings()):
            got.append(f.index)


def test_image_folder_skips_bad_image(tmp_path, caplog):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((30, 40), i * 50, np.uint8))
    (tmp_path / "002.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        frames = list(iter_images(tmp_path, SourceSettings()))
    assert [f.index for f in frames] == [0, 1, 3]
    assert "002.png" in caplog.text and "skipped" in caplog.text


def test_open_path_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not a video"):
        open_path(tmp_path / "notes.txt", SourceSettings())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        list(open_path(empty, SourceSettings()))


def _avi(path, n=60):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (160, 120))
    for i in range(n):
        w.write(np.full((120, 160, 3), i * 4, np.uint8))
    w.release()
    return path.read_bytes()


def test_truncated_avi_says_how_far_it_got(tmp_path):
    data = _avi(tmp_path / "long.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    got = []
    with pytest.raises(SourceError, match=r"cut.avi: truncated or corrupt: only \d+ of 60 announced frames"):
        for f in iter_video(cut, SourceSettings()):
            got.append(f.index)
    assert 10 < len(got) < 40  # the readable first half was delivered before the error


def test_bad_frame_mid_stream_is_skipped_and_logged(tmp_path, caplog):
    data = bytearray(_avi(tmp_path / "long.avi"))
    start = len(data) // 3
    data[start:start + 3000] = bytes(3000)  # damage a few frames in the middle
    mid = tmp_path / "mid.avi"
    mid.write_bytes(bytes(data))
    got = []
    with caplog.at_level(logging.WARNING):
        try:
            for f in iter_video(mid, SourceSettings()):
                got.append(f.index)
        except SourceError as exc:  # the demuxer may lose the tail after damage: said clearly
            assert "mid.avi" in str(exc) and "of 60 announced frames" in str(exc)
    assert 9 in range(60) and len(got) >= 40 and got[-1] >= 45  # the run went on past the damage
    assert "could not be decoded; skipped" in caplog.text and "mid.avi" in caplog.text
