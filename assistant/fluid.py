"""New fluid at the needle tip: injectate is not an artery. Pure functions.

On a still frame, local anaesthetic opening a plane looks like a vessel: a dark,
rounded pocket with a bright rim. A model may label it "vessel", right at the tip, and
the artery alert would then say "stop" during every injection; users would learn to
ignore it. People tell the two apart by time: a vessel was there before the needle
came near; injectate appears where the tip stops.

The rule (``track_fluid``, called once per segmentation):

* **born at the tip**: a vessel blob that appears within ``birth_mm`` of the tip while
  the tip is still (moved at most ``still_mm`` over the last ``still_s``), on pixels that
  held no established vessel during the last ``memory_s``, is *new fluid*;
* it **stays fluid** while it overlaps the last frame's fluid and no remembered vessel;
* everything else is a vessel, and is remembered: a blob touching a remembered vessel is
  a vessel again (the alert's side: when in doubt, it is a vessel).

Fluid is not hidden: the caller keeps it out of the artery distance and shows it as
"injectate or vessel at the tip?" instead. A vessel the model misses for longer than
``memory_s`` and then finds right at a still tip would be called fluid too: that is
why the words say both.

The same memory works the other way (**a vessel does not leave a still view**): while the
tip is still, every vessel remembered from the last ``memory_s`` is ``held``, and the
caller counts it for the artery distance even where this frame's mask lost it (a needle
tip over an artery hides it under its reverberations), saying the outline is not seen now.
While the tip moves (**a vessel does not vanish under the needle**), only the vessels
remembered from the last ``hidden_s`` (seen on at least ``hidden_frames`` segmentations of
it) that lie within ``birth_mm`` of the tip are held: what lies right at a moving tip is
what its reverberations hide as it arrives over an artery. It can only prolong an alert
whose vessel was seen within ``hidden_s``; everything farther counts only as seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

#: the vessel memory is kept at 1/SCALE of the frame size (any vessel pixel in a cell)
SCALE = 4


@dataclass(frozen=True, eq=False)
class FluidTrack:
    """What ``track_fluid`` carries from one segmentation to the next."""

    memory: tuple = ()  # ((t_s, bool mask at 1/SCALE of established vessel), ...)
    fluid: np.ndarray | None = None  # full-size bool: the last frame's fluid blobs
    tips: tuple = ()  # ((t_s, x_px, y_px), ...) of the visible tip, last still_s


def _small(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    size = (max(1, math.ceil(w / SCALE)), max(1, math.ceil(h / SCALE)))
    # float: on uint8 0/1 the area average is rounded, and a cell under half covered is lost
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def _to_frame(small: np.ndarray, shape: tuple) -> np.ndarray:
    """A bool mask at 1/SCALE back to full size (each cell its SCALE x SCALE pixels)."""
    return cv2.resize(small.astype(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST) > 0


def _full(small: np.ndarray, shape: tuple) -> np.ndarray:
    grown = cv2.dilate(small.astype(np.uint8), np.ones((3, 3), np.uint8))  # one cell of slack
    return cv2.resize(grown, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


class FluidView(NamedTuple):
    """What one segmentation's vessel pixels are, for the danger check (full-size bool
    masks, or None when empty)."""

    fluid: np.ndarray | None  # new fluid at the tip: not a danger
    held: np.ndarray | None  # vessels remembered while the tip is still (may be hidden now)


def _disk(shape: tuple, x: float, y: float, r_px: float) -> np.ndarray:
    """Full-size bool: the pixels within r_px of (x, y) (worked out in its bounding box)."""
    out = np.zeros(shape, bool)
    x0, x1 = max(0, int(x - r_px)), min(shape[1], int(x + r_px) + 2)
    y0, y1 = max(0, int(y - r_px)), min(shape[0], int(y + r_px) + 2)
    if x0 < x1 and y0 < y1:
        ys, xs = np.ogrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = np.hypot(xs - x, ys - y) <= r_px
    return out


def _tip_still(tips: tuple, spacing_mm: float | None, still_s: float, still_mm: float) -> bool:
    if not spacing_mm or len(tips) < 2 or tips[-1][0] - tips[0][0] < 0.8 * still_s:
        return False
    xs = np.array([p[1] for p in tips])
    ys = np.array([p[2] for p in tips])
    return float(np.hypot(xs - xs[-1], ys - ys[-1]).max()) * spacing_mm <= still_mm


def track_fluid(track: FluidTrack | None, labels: np.ndarray, vessel_idx: int,
                tip_px, spacing_mm: float | None, now_s: float, *, birth_mm: float = 3.0,
                memory_s: float = 5.0, still_s: float = 0.5,
                still_mm: float = 1.0, hidden_s: float = 1.5,
                hidden_frames: int = 3) -> tuple[FluidTrack, FluidView]:
    """One segmentation's labels -> (the track to keep, what its vessel pixels are).

    ``tip_px``: the visible needle tip (x, y), or None. Without a tip or a pixel spacing
    nothing is called fluid and nothing is held (the memory still learns). ``hidden_s``:
    how long a vessel near a moving tip is held (0: not at all), if it was seen on at least
    ``hidden_frames`` of the segmentations of that time (a blob seen once is noise). Time
    going backwards (a replay restarted) starts a new track.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array of class indices, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    track = track or FluidTrack()
    last_t = max([t for t, _ in track.memory] + [t for t, *_ in track.tips], default=None)
    if last_t is not None and now_s < last_t:
        track = FluidTrack()
    small_shape = (math.ceil(labels.shape[0] / SCALE), math.ceil(labels.shape[1] / SCALE))
    memory = tuple(m for m in track.memory
                   if now_s - m[0] <= memory_s and m[1].shape == small_shape)
    prev = track.fluid if track.fluid is not None and track.fluid.shape == labels.shape else None

    tips: tuple = ()
    if tip_px is not None:
        tips = tuple(p for p in track.tips if now_s - p[0] <= still_s) \
            + ((float(now_s), float(tip_px[0]), float(tip_px[1])),)
    still = _tip_still(tips, spacing_mm, still_s, still_mm)
    remembered = np.logical_or.reduce([m for _, m in memory]) if memory else None
    vessel = labels == vessel_idx
    fluid = np.zeros_like(vessel)
    if vessel.any():
        n, comp = cv2.connectedComponents(vessel.astype(np.uint8), connectivity=8)
        known = (_full(remembered, labels.shape) if remembered is not None
                 else np.zeros_like(vessel))
        # births need a tip seen still for still_s and a memory at least twice that long
        span_ok = bool(memory) and now_s - memory[0][0] >= 2 * still_s
        for k in range(1, n):
            blob = comp == k
            if known[blob].any():
                continue  # a remembered vessel (or touching one)
            if prev is not None and prev[blob].any():
                fluid |= blob  # fluid seen on the last frame, still apart from vessels
                continue
            if still and span_ok:
                ys_b, xs_b = np.nonzero(blob)
                d_px = float(np.sqrt(np.min((xs_b - tips[-1][1]) ** 2
                                            + (ys_b - tips[-1][2]) ** 2)))
                if d_px * spacing_mm <= birth_mm:
                    fluid |= blob
    # a vessel does not leave a still view: what was seen stays a danger while the tip is
    # still, even where a needle's reverberations hide it now
    held = None
    if still and remembered is not None and remembered.any():
        held = _to_frame(remembered, labels.shape) & ~fluid
    elif tips and spacing_mm and hidden_s > 0:
        # ...and does not vanish under a moving tip: what was seen near it a moment ago
        recent = [m for t, m in memory if now_s - t <= hidden_s]
        seen = np.sum(recent, axis=0) >= hidden_frames if recent else None
        if seen is not None and seen.any():
            held = (_to_frame(seen, labels.shape) & ~fluid
                    & _disk(labels.shape, tips[-1][1], tips[-1][2], birth_mm / spacing_mm))
    established = vessel & ~fluid
    memory = memory + ((float(now_s), _small(established)),)
    new = FluidTrack(memory=memory, fluid=fluid if fluid.any() else None, tips=tips)
    return new, FluidView(fluid if fluid.any() else None,
                          held if held is not None and held.any() else None)
