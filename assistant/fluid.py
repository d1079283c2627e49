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
* **first seen at the tip, it waits** ``pending_frames`` **segmentations** (rules P, P2):
  any other blob within ``birth_mm`` of a visible tip (moving or not yet still) that
  touches no remembered vessel and nothing of the last segmentation is *pending*: drawn,
  but not yet a danger, and not remembered; a blob overlapping it waits on until it has
  waited ``pending_frames``, and is then a vessel. A speck the model draws at the tip for
  no longer (a still tip's tracked position jitters, so "still" can fail just as injectate
  appears; a needle just in can draw a false vessel beside it) neither says "stop" nor
  stays in the memory as a danger;
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
it) that lie within ``hidden_mm`` of the tip (the artery alert's limit) are held: what lies
right at a moving tip is what its reverberations hide as it arrives over an artery. It can
only prolong an alert whose vessel was seen within ``hidden_s``; everything farther counts
only as seen.

**The memory follows the probe** (given the frames): an operator repositioning slides the
probe, and every vessel moves across the image while a memory kept in image coordinates
would stay where it was (a stale outline held near the tip: a false "stop"). Each
segmentation's frame is registered to the last one's (phase correlation of the grey frame
at 1/``REG_SCALE`` size, a Hann window); the translations add up, and every remembered
mask is moved by how far the tissue moved since it was stored. A registration weaker than
``REG_MIN_RESPONSE`` (a frozen or changed view, a different probe position: where things
are is unknown) clears the memory. The needle is left out of it (given its entry): an
advancing shaft moves across a still view and would pull the registration after it, so
the tracked shaft, grown by ``NEEDLE_HOLE_MM`` for the reverberations under it, is filled
with each view's mean in both frames (the same hole in both, so its edges do not move).
While the tip is still the view counts as still: the registration runs (a response under
the floor still clears the memory) but its translation is not added. A still needle is
fixed in the tissue, so a probe that slid would have moved the tip across the image; what
moves under a still tip is tissue pushed aside by the injectate, and a translation fitted
to that deformation would move the remembered artery where it is not.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from assistant.messages import needle_point

#: the vessel memory is kept at 1/SCALE of the frame size (any vessel pixel in a cell)
SCALE = 4
#: frames are registered at 1/REG_SCALE of their size, on a centre crop of at most REG_CROP
#: cells a side (a fast DFT size); a response under REG_MIN_RESPONSE clears the memory
REG_SCALE = 4
REG_CROP = 128
REG_MIN_RESPONSE = 0.15
REG_MIN_SIDE = 8 * REG_SCALE  # a smaller frame is not registered (the memory stays put)
#: how far around the tracked shaft (entry to tip) the registration does not look
NEEDLE_HOLE_MM = 2.0


@dataclass(frozen=True, eq=False)
class FluidTrack:
    """What ``track_fluid`` carries from one segmentation to the next."""

    # ((t_s, bool mask at 1/SCALE of established vessel, (x, y) offset when stored), ...)
    memory: tuple = ()
    fluid: np.ndarray | None = None  # full-size bool: the last frame's fluid blobs
    tips: tuple = ()  # ((t_s, x_px, y_px), ...) of the visible tip, last still_s
    view: np.ndarray | None = None  # the last frame, as registered (``_reg_view``)
    offset: tuple = (0.0, 0.0)  # how far (px) the tissue has moved across the image
    hole: np.ndarray | None = None  # the last frame's needle cells in ``view`` (bool)
    # full-size uint8: the last frame's pending blobs, each pixel the number of
    # segmentations its blob has waited (0: not pending)
    pending: np.ndarray | None = None


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
    # first seen at the tip (rule P): drawn as the model drew it, a danger from the next
    # segmentation if it is still there
    pending: np.ndarray | None = None


def _reg_crop(frame_hw: tuple) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) in cells of the centre crop ``_reg_view`` registers."""
    sh, sw = frame_hw[0] // REG_SCALE, frame_hw[1] // REG_SCALE
    ch, cw = min(REG_CROP, sh), min(REG_CROP, sw)
    return (sw - cw) // 2, (sh - ch) // 2, cw, ch


def _reg_view(image: np.ndarray) -> np.ndarray:
    """A frame as registered: grey, 1/REG_SCALE size (area mean), float32, centre crop."""
    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = (g.shape[0] // REG_SCALE) * REG_SCALE, (g.shape[1] // REG_SCALE) * REG_SCALE
    if h < REG_MIN_SIDE or w < REG_MIN_SIDE:
        raise ValueError(f"a frame of {image.shape[:2]} is too small to register")
    small = cv2.resize(g[:h, :w], (w // REG_SCALE, h // REG_SCALE), interpolation=cv2.INTER_AREA)
    x0, y0, cw, ch = _reg_crop(g.shape[:2])
    return small[y0:y0 + ch, x0:x0 + cw].astype(np.float32)


def _needle_hole(frame_hw: tuple, entry_px, tip_px, grow_px: float) -> np.ndarray:
    """The cells of ``_reg_view``'s crop within ``grow_px`` (frame pixels) of the shaft
    from ``entry_px`` to ``tip_px`` (bool, the crop's shape)."""
    x0, y0, cw, ch = _reg_crop(frame_hw)
    hole = np.zeros((ch, cw), np.uint8)
    # cv2 draws a thick line with round ends: half its thickness around the segment
    lim = 4 * REG_CROP  # far outside the crop: where exactly does not change the hole
    pts = [(int(round(min(lim, max(-lim, p[0] / REG_SCALE - x0)))),
            int(round(min(lim, max(-lim, p[1] / REG_SCALE - y0))))) for p in (entry_px, tip_px)]
    cv2.line(hole, pts[0], pts[1], 1, thickness=max(1, int(round(2 * grow_px / REG_SCALE)) + 1))
    return hole > 0


def _filled(view: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``view`` with the ``hole`` cells set to the mean of the others."""
    if not hole.any() or hole.all():
        return view
    out = view.copy()
    out[hole] = view[~hole].mean()
    return out


@functools.lru_cache(maxsize=4)
def _hann(shape: tuple) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def probe_motion(before: np.ndarray | None, now: np.ndarray, hole: np.ndarray | None = None
                 ) -> tuple[tuple[float, float] | None, float]:
    """((dx, dy) px at full size that the tissue moved from ``before`` to ``now``, the
    registration's response 0..1); (None, 0) when there is nothing to compare. Both are
    ``_reg_view`` outputs; ``hole`` (bool, their shape): cells left out of both (filled
    with each view's mean of the others)."""
    if before is None or before.shape != now.shape:
        return None, 0.0
    if hole is not None and hole.shape == now.shape:
        before, now = _filled(before, hole), _filled(now, hole)
    (dx, dy), response = cv2.phaseCorrelate(before, now, _hann(now.shape))
    return (dx * REG_SCALE, dy * REG_SCALE), float(response)


def _shift(small: np.ndarray, cx: int, cy: int) -> np.ndarray:
    """A 1/SCALE array moved by (cx, cy) cells (zeros shifted in)."""
    if cx == 0 and cy == 0:
        return small
    h, w = small.shape
    out = np.zeros_like(small)
    if abs(cx) < w and abs(cy) < h:
        out[max(0, cy):h + min(0, cy), max(0, cx):w + min(0, cx)] = \
            small[max(0, -cy):h - max(0, cy), max(0, -cx):w - max(0, cx)]
    return out


def _where_now(entries, offset: tuple, combine) -> np.ndarray:
    """``combine(masks)`` of memory entries, each mask moved to where its tissue is now.
    Entries that moved by the same whole cells are combined first and moved once (a
    translation commutes with ``or`` and with a sum): after a slide, a few shifts instead of
    one per remembered frame."""
    groups: dict = {}
    for _, m, o in entries:
        key = (int(round((offset[0] - o[0]) / SCALE)), int(round((offset[1] - o[1]) / SCALE)))
        groups.setdefault(key, []).append(m)
    return combine([_shift(combine(ms), cx, cy) for (cx, cy), ms in groups.items()])


def _count(masks) -> np.ndarray:
    return np.sum(masks, axis=0)


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
                hidden_frames: int = 3, image: np.ndarray | None = None,
                follow_probe: bool = True,
                hidden_mm: float | None = None,
                entry_px=None, pending: bool = True,
                pending_frames: int = 1) -> tuple[FluidTrack, FluidView]:
    """One segmentation's labels -> (the track to keep, what its vessel pixels are).

    ``tip_px``: the visible needle tip (x, y), or None. Without a tip or a pixel spacing
    nothing is called fluid and nothing is held (the memory still learns). ``hidden_s``:
    how long a vessel near a moving tip is held (0: not at all), if it was seen on at least
    ``hidden_frames`` of the segmentations of that time (a blob seen once is noise). Time
    going backwards (a replay restarted) starts a new track. ``birth_mm``: how far from a
    still tip a new blob is fluid; ``hidden_mm`` (default ``birth_mm``): how far from a moving
    tip a remembered vessel is held. ``image``: the segmented frame
    (grey or BGR, the labels' size); with it and ``follow_probe`` the memory moves with the
    tissue (module docstring); without it the memory stays where it was seen.
    ``entry_px``: where the tracked shaft enters the image; with it and ``tip_px`` the
    shaft is left out of the registration.
    ``pending`` (rule P): a blob first seen within ``birth_mm`` of a visible tip, touching
    no remembered vessel and nothing of the last segmentation, waits ``pending_frames``
    segmentations: it is drawn as the model drew it but is not yet a danger
    (``FluidView.pending``) and is not remembered; a blob overlapping it waits on while it
    has waited fewer, and is then a vessel as usual. A speck at the tip that lasts no more
    than ``pending_frames`` segmentations never says "stop" nor enters the memory; a vessel
    never seen before that appears at the tip alerts ``pending_frames`` segmentations later.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array of class indices, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    if int(pending_frames) != pending_frames or pending_frames < 1:
        raise ValueError(f"pending_frames must be an integer >= 1, got {pending_frames!r}")
    if tip_px is not None:
        tip_px = needle_point(tip_px, "tip_px")
    if entry_px is not None:
        entry_px = needle_point(entry_px, "entry_px")
    track = track or FluidTrack()
    last_t = max([t for t, *_ in track.memory] + [t for t, *_ in track.tips], default=None)
    if last_t is not None and now_s < last_t:
        track = FluidTrack()
    small_shape = (math.ceil(labels.shape[0] / SCALE), math.ceil(labels.shape[1] / SCALE))
    memory = tuple(m for m in track.memory
                   if now_s - m[0] <= memory_s and m[1].shape == small_shape)
    tips: tuple = ()
    if tip_px is not None:
        tips = tuple(p for p in track.tips if now_s - p[0] <= still_s) \
            + ((float(now_s), float(tip_px[0]), float(tip_px[1])),)
    still = _tip_still(tips, spacing_mm, still_s, still_mm)
    view, offset, hole = track.view, track.offset, None
    if follow_probe and image is not None and min(labels.shape) >= REG_MIN_SIDE:
        if getattr(image, "shape", None) is None or image.shape[:2] != labels.shape:
            raise ValueError(f"image of shape {getattr(image, 'shape', None)} does not match "
                             f"labels of shape {labels.shape}")
        view = _reg_view(image)
        if tip_px is not None and entry_px is not None and spacing_mm:
            hole = _needle_hole(labels.shape, entry_px, tip_px, NEEDLE_HOLE_MM / spacing_mm)
        both = hole  # the last frame's hole is left out of both views too
        if track.hole is not None and track.hole.shape == view.shape:
            both = track.hole if hole is None else hole | track.hole
        moved, response = probe_motion(track.view, view, both)
        if moved is not None and response < REG_MIN_RESPONSE:
            memory, offset = (), (0.0, 0.0)  # lost track of where things are: forget
        elif moved is not None and not still:
            # a still tip is a still view (the needle is fixed in the tissue: had the probe
            # slid, the tip would have moved across the image); what moves then is tissue
            # pushed aside by the injectate, not the probe
            offset = (offset[0] + moved[0], offset[1] + moved[1])
    prev = track.fluid if track.fluid is not None and track.fluid.shape == labels.shape else None
    was_pending = (track.pending if track.pending is not None
                   and track.pending.shape == labels.shape else None)
    # every remembered vessel where its tissue is now
    remembered = _where_now(memory, offset, np.logical_or.reduce) if memory else None
    vessel = labels == vessel_idx
    fluid = np.zeros_like(vessel)
    # rule P: first seen at the tip, not yet a vessel; for how many segmentations (0: not)
    waited = np.zeros(vessel.shape, np.uint8)
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
            if was_pending is not None and was_pending[blob].any():
                age = int(was_pending[blob].max())
                if age < pending_frames:  # waited too few segmentations: waits on
                    waited[blob] = age + 1
                continue  # else seen pending_frames + 1 times now: a vessel
            near = False
            if tips and spacing_mm:
                ys_b, xs_b = np.nonzero(blob)
                d_px = float(np.sqrt(np.min((xs_b - tips[-1][1]) ** 2
                                            + (ys_b - tips[-1][2]) ** 2)))
                near = d_px * spacing_mm <= birth_mm
            if near and still and span_ok:
                fluid |= blob
            elif near and pending:
                waited[blob] = 1
    # a vessel does not leave a still view: what was seen stays a danger while the tip is
    # still, even where a needle's reverberations hide it now
    held = None
    if still and remembered is not None and remembered.any():
        held = _to_frame(remembered, labels.shape) & ~fluid
    elif tips and spacing_mm and hidden_s > 0:
        # ...and does not vanish under a moving tip: what was seen near it a moment ago
        recent = [e for e in memory if now_s - e[0] <= hidden_s]
        seen = _where_now(recent, offset, _count) >= hidden_frames if recent else None
        if seen is not None and seen.any():
            held = (_to_frame(seen, labels.shape) & ~fluid
                    & _disk(labels.shape, tips[-1][1], tips[-1][2],
                            (birth_mm if hidden_mm is None else hidden_mm) / spacing_mm))
    wait = waited > 0
    established = vessel & ~fluid & ~wait
    memory = memory + ((float(now_s), _small(established), offset),)
    new = FluidTrack(memory=memory, fluid=fluid if fluid.any() else None, tips=tips,
                     view=view, offset=offset, hole=hole, pending=waited if wait.any() else None)
    return new, FluidView(fluid if fluid.any() else None,
                          held if held is not None and held.any() else None,
                          wait if wait.any() else None)
