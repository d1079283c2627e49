"""Settings of the renderer (config.yaml sections ``render`` and ``hmd``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderSettings:
    width_px: int = 1280
    height_px: int = 720
    stale_ms: int = 500  # a segmentation older than this is not drawn
    fill_alpha: float = 0.35
    window: bool = False  # a window when a display exists
    video_path: str = ""  # write the monitor view to this file ("" = no file)
    web_port: int = 0  # live browser view on 127.0.0.1:PORT (0 = off)


@dataclass(frozen=True)
class HmdSettings:
    enabled: bool = False
    scene: str = ""  # camera index ("0") or a video file of the head-mounted/room camera
    stereo: bool = True
    width_px: int = 1280
    height_px: int = 720
