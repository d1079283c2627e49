import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def wait_for(cond, timeout_s: float = 10.0, interval_s: float = 0.01, what: str = "condition"):
    """Poll ``cond`` until it is truthy or the timeout passes (then fail the test)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval_s)
    v = cond()
    if not v:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
    return v


def video_frames(path) -> list:
    """Every frame OpenCV can decode from the video file ``path`` (BGR arrays)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


@pytest.fixture
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _private_data_home(tmp_path, monkeypatch):
    """Session records of tests go to a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
