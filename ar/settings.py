"""Settings of the renderer (config.yaml sections ``render`` and ``hmd``).

Every field is a plain scalar (config.yaml is read strictly into these) and carries
its unit in its name. ``__post_init__`` rejects values the renderer cannot use, naming
the field, so a bad config fails at start-up rather than mid-procedure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields


def _check_range(obj, name: str, lo: float, hi: float) -> None:
    value = getattr(obj, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"{type(obj).__name__}.{name} must be a number in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class RenderSettings:
    width_px: int = 1280
    height_px: int = 720
    stale_ms: int = 500  # a segmentation older than this is not drawn
    fill_alpha: float = 0.35  # quantised to 1/256 when blending (exact, testable)
    min_confidence: float = 0.5  # a class below this is drawn hatched/dashed and labelled "unsure"
    outline_px: int = 2  # outline thickness of a structure on screen
    hatch_period_px: int = 8  # diagonal hatch period of an unsure structure
    hatch_width_px: int = 3  # width of each hatch stripe (the filled part)
    label_font_scale: float = 0.5
    ruler_minor_mm: float = 5.0  # depth ruler: a tick every ... mm, a number every 2 ticks
    window: bool = False  # a window when a display exists
    video_path: str = ""  # write the monitor view to this file ("" = no file)
    recording_dir: str = ""  # "start recording" writes here ("" = the user's data folder)
    web_port: int = 0  # live browser view on 127.0.0.1:PORT (0 = off)
    web_jpeg_quality: int = 80  # JPEG quality of the browser view's MJPEG stream
    monitor_cue3d: bool = False  # the 3D depth cue in the side panel (about 10 ms when it changes)
    monitor_cue_size_px: int = 150

    def __post_init__(self) -> None:
        _check_range(self, "width_px", 640, 7680)
        _check_range(self, "height_px", 360, 4320)
        _check_range(self, "stale_ms", 1, 60_000)
        _check_range(self, "fill_alpha", 0.0, 1.0)
        _check_range(self, "min_confidence", 0.0, 1.0)
        _check_range(self, "outline_px", 1, 10)
        _check_range(self, "hatch_period_px", 2, 64)
        _check_range(self, "hatch_width_px", 1, 63)
        _check_range(self, "label_font_scale", 0.2, 3.0)
        _check_range(self, "ruler_minor_mm", 0.5, 50.0)
        _check_range(self, "web_port", 0, 65535)
        _check_range(self, "web_jpeg_quality", 10, 100)
        _check_range(self, "monitor_cue_size_px", 64, 200)
        if self.hatch_width_px >= self.hatch_period_px:
            raise ValueError("RenderSettings.hatch_width_px must be smaller than hatch_period_px, "
                             f"got {self.hatch_width_px} >= {self.hatch_period_px}")
        for f in fields(self):
            if f.type in ("int", int) and not isinstance(getattr(self, f.name), int):
                raise ValueError(f"RenderSettings.{f.name} must be an integer, got {getattr(self, f.name)!r}")


@dataclass(frozen=True)
class HmdSettings:
    enabled: bool = False
    scene: str = ""  # camera index ("0") or a video file of the head-mounted/room camera
    stereo: bool = True
    width_px: int = 1280  # of one eye; the stereo output is 2x this wide
    height_px: int = 720
    panel_width_px: int = 480  # the ultrasound panel drawn in the scene (height keeps the aspect)
    probe_hand: str = "any"  # "left" | "right" | "any": which hand holds the probe
    panel_gap_px: int = 24  # between the hand's bounding box and the panel
    smoothing_tau_s: float = 0.15  # exponential smoothing time constant of the panel anchor
    dead_zone_px: float = 12.0  # hand moves smaller than this do not move the panel (no jitter)
    hand_timeout_s: float = 0.7  # no hand for this long: the panel goes to the fixed corner
    stereo_disparity_px: int = 12  # horizontal shift of the panel between the eyes
    cue_size_px: int = 160  # the 3D needle-depth cue (square) drawn in the views
    min_detection_confidence: float = 0.5  # mediapipe hands
    max_hands: int = 2
    # hand tracking costs ~30 ms a frame on a 2-core machine: track every Nth scene frame
    # (the panel's smoothing hides the steps); 1 = every frame
    track_every_frames: int = 2
    # track on a thread of its own (the newest result is used), so the monitor view is not
    # held up by the ~30-50 ms of hand tracking
    track_in_background: bool = True

    def __post_init__(self) -> None:
        _check_range(self, "width_px", 320, 7680)
        _check_range(self, "height_px", 240, 4320)
        _check_range(self, "panel_width_px", 64, 4096)
        _check_range(self, "panel_gap_px", 0, 1000)
        _check_range(self, "smoothing_tau_s", 0.0, 10.0)
        _check_range(self, "dead_zone_px", 0.0, 1000.0)
        _check_range(self, "hand_timeout_s", 0.0, 60.0)
        _check_range(self, "stereo_disparity_px", 0, 200)
        _check_range(self, "cue_size_px", 32, 1024)
        _check_range(self, "min_detection_confidence", 0.0, 1.0)
        _check_range(self, "max_hands", 1, 4)
        _check_range(self, "track_every_frames", 1, 30)
        if self.probe_hand not in ("left", "right", "any"):
            raise ValueError(f"HmdSettings.probe_hand must be 'left', 'right' or 'any', got {self.probe_hand!r}")
