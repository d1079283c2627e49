"""Frame sources: video files (mp4, avi), image folders, a camera index, the simulator.

A source yields :class:`SourceFrame` items. Pixel spacing and imaging depth come from
config, else from a sidecar JSON beside the file (``clip.mp4.json``, ``clip.json`` or ``clip_meta.json``
with ``spacing_mm`` / ``depth_mm``), else depth / image height. A missing, corrupt or
truncated file raises :class:`SourceError` naming the file (and frame); a bad frame
mid-stream is logged and skipped, and the stream goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# A video whose frames keep failing is corrupt, not just noisy.
MAX_CONSECUTIVE_BAD = 10


class SourceError(RuntimeError):
    """A frame source that cannot be used: names the file or device and what went wrong."""


@dataclass
class SourceFrame:
    index: int  # position in the source (frames skipped as bad keep their index)
    media_time_s: float
    image: np.ndarray  # uint8 grey (H, W) or BGR (H, W, 3)
    spacing_mm: float
    depth_mm: float


def to_ultrasound_image(img: np.ndarray) -> np.ndarray:
    """B-mode video is grey: a colour frame whose channels agree becomes (H, W)."""
    if img.ndim == 3 and img.shape[2] == 3:
        # Decided on a 1-in-4 grid: a colour overlay (Doppler, annotations) covers far more
        # than 4 pixels, and this runs for every frame of a replay.
        sub = img[::4, ::4].astype(np.int16)
        if (np.abs(sub[..., 0] - sub[..., 1]).max() <= 8 and np.abs(sub[..., 1] - sub[..., 2]).max() <= 8):
            return np.ascontiguousarray(img[..., 1])
        return img
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _sidecar(path: Path) -> dict:
    # clip.mp4.json, clip.json, or the simulator's clip_meta.json
    for cand in (Path(str(path) + ".json"), path.with_suffix(".json"),
                 path.with_name(path.stem + "_meta.json")):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except ValueError as exc:
                raise SourceError(f"{cand}: sidecar is not valid JSON: {exc}") from None
            return data if isinstance(data, dict) else {}
    return {}


def _geometry(settings, height: int, sidecar: dict) -> tuple[float, float]:
    """(spacing_mm, depth_mm) from config first, then the file's sidecar, then derived."""
    depth = float(sidecar.get("depth_mm", settings.depth_mm))
    if settings.spacing_mm > 0:
        spacing = settings.spacing_mm
    elif "spacing_mm" in sidecar:
        spacing = float(sidecar["spacing_mm"])
    else:
        spacing = depth / height
    if "depth_mm" not in sidecar and settings.spacing_mm > 0:
        depth = spacing * height
    return spacing, depth


def read_video_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame OpenCV can decode from the video file ``path``, in order (BGR arrays):
    a short clip held in memory, for benchmarks and tests (the processes stream)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(img)
    finally:
        cap.release()
    return frames


def probe_video(path: str | Path) -> dict:
    """Open a video to check it: frame count, fps, size. Raises SourceError."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: video file not found")
    if not p.is_file():
        raise SourceError(f"{p}: not a file")
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise SourceError(f"{p}: cannot open as a video (corrupt or unsupported format)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise SourceError(f"{p}: no readable frame (corrupt or empty video)")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return {"fps": fps if 0 < fps < 1000 else 0.0, "frames": count,
                "width": frame.shape[1], "height": frame.shape[0]}
    finally:
        cap.release()


def iter_video(path: str | Path, settings, loop: bool = False) -> Iterator[SourceFrame]:
    """Every frame of a video file, in order; bad frames are logged and skipped."""
    p = Path(path)
    info = probe_video(p)
    fps = info["fps"] or settings.fps
    sidecar = _sidecar(p)
    spacing, depth = _geometry(settings, info["height"], sidecar)
    while True:
        cap = cv2.VideoCapture(str(p))
        index, bad_run, yielded = 0, 0, 0
        try:
            while True:
                ok = cap.grab()
                if not ok:
                    # Either the end, or a damaged frame: try further before deciding.
                    if info["frames"] and index < info["frames"] - 1 and bad_run < MAX_CONSECUTIVE_BAD:
                        index += 1
                        bad_run += 1
                        continue
                    break
                ok, frame = cap.retrieve()
                if not ok or frame is None or frame.size == 0:
                    index += 1
                    bad_run += 1
                    continue
                if bad_run:
                    log.warning("%s: frames %d-%d could not be decoded; skipped", p,
                                index - bad_run, index - 1)
                bad_run = 0
                yield SourceFrame(index, index / fps, to_ultrasound_image(frame), spacing, depth)
                yielded += 1
                index += 1
        finally:
            cap.release()
        if info["frames"] and yielded < info["frames"] * 0.9:
            raise SourceError(f"{p}: truncated or corrupt: only {yielded} of {info['frames']} "
                              f"announced frames could be read (stream ended at frame {index - bad_run})")
        if not loop:
            return


def list_images(folder: str | Path) -> list[Path]:
    d = Path(folder)
    if not d.exists():
        raise SourceError(f"{d}: image folder not found")
    if not d.is_dir():
        raise SourceError(f"{d}: not a folder")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    return files


def iter_images(folder: str | Path, settings, loop: bool = False) -> Iterator[SourceFrame]:
    files = list_images(folder)
    sidecar = _sidecar(Path(folder))
    while True:
        good = 0
        for i, f in enumerate(files):
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None or img.size == 0:
                log.warning("%s: image %d (%s) could not be read; skipped", folder, i, f.name)
                continue
            if img.dtype != np.uint8:
                img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
            img = to_ultrasound_image(img)
            spacing, depth = _geometry(settings, img.shape[0], sidecar)
            good += 1
            yield SourceFrame(i, i / settings.fps, img, spacing, depth)
        if good == 0:
            raise SourceError(f"{folder}: none of the {len(files)} images could be read")
        if not loop:
            return


def iter_camera(index: int, settings) -> Iterator[SourceFrame]:
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise SourceError(f"camera {index}: could not be opened (no such device?)")
    try:
        i, bad = 0, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                bad += 1
                if bad > MAX_CONSECUTIVE_BAD:
                    raise SourceError(f"camera {index}: stopped delivering frames")
                continue
            bad = 0
            img = to_ultrasound_image(frame)
            spacing, depth = _geometry(settings, img.shape[0], {})
            yield SourceFrame(i, i / settings.fps, img, spacing, depth)
            i += 1
    finally:
        cap.release()


def simulated_clip(settings, seconds: float = 15.0) -> Path:
    """The simulator's demo clip for ``settings.seed``, rendered once and cached in the
    user's cache folder ($XDG_CACHE_HOME/usra-assistant)."""
    import os

    from models.simulator import make_demo_clip  # imported only when used

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "usra-assistant" / f"simulated-seed{settings.seed}-{int(seconds)}s.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.mp4")
        log.info("rendering the simulated PECS II clip once into %s", path)
        make_demo_clip(str(tmp), seconds=seconds, fps=int(round(settings.fps)), seed=settings.seed)
        tmp.replace(path)
        for side in tmp.parent.glob(tmp.stem + "*"):
            side.rename(side.with_name(side.name.replace(".part", "")))
    return path


def iter_simulated(settings, loop: bool = True) -> Iterator[SourceFrame]:
    """The project's own simulated PECS II scan (no files or hardware needed), looped."""
    return iter_video(simulated_clip(settings), settings, loop=loop)


def open_source(settings, loop: bool | None = None) -> Iterator[SourceFrame]:
    """The frame iterator for ``settings`` (a SourceSettings)."""
    loop = settings.loop if loop is None else loop
    if settings.kind == "video":
        return iter_video(settings.path, settings, loop=loop)
    if settings.kind == "images":
        return iter_images(settings.path, settings, loop=loop)
    if settings.kind == "camera":
        return iter_camera(settings.camera_index, settings)
    return iter_simulated(settings, loop=loop)


def open_path(path: str | Path, settings) -> Iterator[SourceFrame]:
    """A replay input: a video file or an image folder, every frame once."""
    p = Path(path)
    if p.is_dir():
        return iter_images(p, settings, loop=False)
    if p.suffix.lower() not in VIDEO_SUFFIXES and p.exists():
        raise SourceError(f"{p}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or image folder")
    return iter_video(p, settings, loop=False)
