"""Where rendered views go: a window (only when a display exists), a video file, the
browser view. The renderer node owns one :class:`Outputs` and calls :meth:`Outputs.show`
once per rendered frame; nothing here is needed for rendering itself.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ar.settings import RenderSettings
from ar.web import WebView

log = logging.getLogger(__name__)


def display_available(env: dict | None = None) -> bool:
    """A window can be opened: DISPLAY (X11) or WAYLAND_DISPLAY is set."""
    env = os.environ if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


class VideoOut:
    """cv2.VideoWriter opened on the first frame (its size is the video's size).

    A frame of another size is resized to the first one rather than silently dropped
    (VideoWriter writes nothing for a wrong-sized frame).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 20.0, fourcc: str = "mp4v"):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"video_path {str(self.path)!r}: folder {str(self.path.parent)!r} does not exist")
        self.fps, self.fourcc = float(fps), fourcc
        self._w: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"video frame must be uint8 (H, W, 3), got "
                             f"{getattr(bgr, 'dtype', type(bgr).__name__)} {getattr(bgr, 'shape', '')}")
        if self._w is None:
            self._size = (bgr.shape[1], bgr.shape[0])
            self._w = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size)
            if not self._w.isOpened():
                self._w = None
                raise ValueError(f"video_path {str(self.path)!r}: cannot open a {self.fourcc} writer")
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._w.write(bgr)
        self.frames += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None


class Outputs:
    """Window + video + browser view, each only if configured (and a display exists)."""

    WINDOW = "AR assistant (not for clinical use)"

    def __init__(self, settings: RenderSettings, fps: float = 20.0):
        self.settings = settings
        self.window = bool(settings.window) and display_available()
        if settings.window and not self.window:
            log.info("render.window is on but there is no display: no window")
        self.video = VideoOut(settings.video_path, fps) if settings.video_path else None
        self.web = WebView(settings.web_port, settings.web_jpeg_quality).start() if settings.web_port else None

    def show(self, bgr: np.ndarray, status: dict | None = None) -> None:
        if self.video is not None:
            self.video.write(bgr)
        if self.web is not None:
            self.web.publish(bgr, status)
        if self.window:
            cv2.imshow(self.WINDOW, bgr)
            cv2.waitKey(1)  # lets HighGUI paint; keys are not used (hands-free)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        if self.web is not None:
            self.web.stop()
        if self.window:
            cv2.destroyWindow(self.WINDOW)
