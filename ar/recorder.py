"""Writes rendered views to a video file on its own thread (OpenCV releases the GIL
while encoding, so encoding overlaps with rendering on another core). The queue is
bounded: a slow disk slows the producer instead of growing memory.

The video takes the first frame's size; a later frame of another size is resized to it
(OpenCV's writer would silently drop it). A frame that is not uint8 (H, W, 3) is refused
with an error naming the file."""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


class VideoWriteError(RuntimeError):
    pass


class VideoRecorder:
    def __init__(self, path: str | Path, fps: float, queue_frames: int = 8):
        self.path, self.fps = Path(path), float(fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.q: queue.Queue = queue.Queue(maxsize=queue_frames)
        self.error: Exception | None = None
        self.crc = 0  # CRC-32 chain over every frame written: equal runs, equal digests
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (width, height) of the video
        self._closed = False
        self.t = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self.t.start()

    @property
    def digest(self) -> str:
        return f"{self.crc:08x}"

    def _run(self) -> None:
        writer = None
        try:
            while True:
                img = self.q.get()
                if img is None:
                    break
                if writer is None:
                    writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                             self.fps, (img.shape[1], img.shape[0]))
                    if not writer.isOpened():
                        raise VideoWriteError(f"{self.path}: cannot open a video writer")
                writer.write(img)
        except Exception as exc:  # reported by close()
            self.error = exc
            log.error("%s: %s", self.path, exc)
            while self.q.get() is not None:  # keep draining so write() never blocks forever
                pass
        finally:
            if writer is not None:
                writer.release()

    def write(self, img: np.ndarray) -> None:
        if self._closed:
            raise VideoWriteError(f"{self.path}: recorder already closed")
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 \
                or img.shape[2] != 3 or not min(img.shape[:2]):
            raise ValueError(f"{self.path}: a video frame must be uint8 (H, W, 3), got "
                             f"{getattr(img, 'dtype', type(img).__name__)} "
                             f"{getattr(img, 'shape', '')}")
        img = np.ascontiguousarray(img)
        self.crc = zlib.crc32(img.data, self.crc)
        self.frames += 1
        if self._size is None:
            self._size = (img.shape[1], img.shape[0])
        elif (img.shape[1], img.shape[0]) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        self.q.put(img)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.q.put(None)
        self.t.join()
        if self.error:
            raise VideoWriteError(f"{self.path}: writing the video failed: {self.error}")
