"""Needle tip, entry and angle from a needle mask; a tracker that smooths them over frames.

The tip is the end of the needle mask farthest from where the shaft enters the image.
An in-plane needle goes deeper as it advances, so the entry is the shallower end of the
shaft (for a nearly horizontal shaft: the end nearer a side border).
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

import cv2
import numpy as np

from assistant.messages import needle_dict
from models.classes import CLASS_INDEX

log = logging.getLogger(__name__)

NEEDLE = CLASS_INDEX["needle"]
#: a blob within this many columns of a side border reaches it
BORDER_PX = 2


class NeedleShape(NamedTuple):
    """What a needle mask looks like: the tip and entry (pixels, x right, y down), the shaft
    angle (0..90 degrees from horizontal), and the length (pixels) and elongation (length of
    the long principal axis over the short one) of its largest blob, and whether that blob
    reaches the image's left or right border (within ``BORDER_PX`` columns): then part of the
    shaft lies outside the view and its length and elongation are cut short."""

    tip: tuple[float, float]
    entry: tuple[float, float]
    angle_deg: float
    length_px: float
    elongation: float
    at_border: bool = False  # the largest blob reaches a side border: the shaft goes on outside


def _axes(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre, long-axis direction, the projections on it, and the two axis variances."""
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    c = pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((pts - c).T))
    d = evecs[:, np.argmax(evals)]
    return c, d, (pts - c) @ d, np.sort(np.maximum(evals, 0.0))


def needle_shape(mask: np.ndarray, min_pixels: int = 15) -> NeedleShape | None:
    """The needle in a boolean mask (see :class:`NeedleShape`), or None when there are fewer
    than ``min_pixels`` needle pixels. Specks far smaller than the main shaft are ignored
    for the tip; length and elongation are those of the largest blob."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"needle mask must be 2-D, got shape {m.shape}")
    if int(m.sum()) < min_pixels:
        return None
    n, cc, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.nonzero(areas >= max(min_pixels, 0.2 * areas.max()))[0]
    ys, xs = np.nonzero(np.isin(cc, keep))
    if len(xs) < min_pixels:
        return None
    c, d, t, ev = _axes(xs, ys)
    a_end = c + d * t.min()
    b_end = c + d * t.max()
    h, w = m.shape
    dy = abs(b_end[1] - a_end[1])
    length = max(1e-6, float(np.hypot(*(b_end - a_end))))
    if dy > 0.1 * length:
        entry, tip = (a_end, b_end) if a_end[1] < b_end[1] else (b_end, a_end)
    else:  # nearly horizontal: it came in through the nearer side border
        side = lambda p: min(p[0], w - 1 - p[0])  # noqa: E731
        entry, tip = (a_end, b_end) if side(a_end) <= side(b_end) else (b_end, a_end)
    angle = math.degrees(math.atan2(abs(d[1]), abs(d[0])))
    bxs = xs
    if len(keep) > 1:  # length and elongation of the largest blob alone
        bys, bxs = np.nonzero(cc == 1 + int(np.argmax(areas)))
        _, _, t, ev = _axes(bxs, bys)
    b_len = float(t.max() - t.min()) + 1.0
    elong = float(np.sqrt(ev[1] / max(ev[0], 1.0 / 12.0)))  # a 1-px-wide line: var 1/12
    at_border = bool(bxs.min() < BORDER_PX or bxs.max() >= w - BORDER_PX)
    return NeedleShape((float(tip[0]), float(tip[1])), (float(entry[0]), float(entry[1])),
                       float(angle), b_len, elong, at_border)


def needle_tip_from_mask(mask: np.ndarray, min_pixels: int = 15
                         ) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """(tip_xy, entry_xy, angle_deg) of the needle in a boolean mask, or None when there
    are fewer than ``min_pixels`` needle pixels (:func:`needle_shape`)."""
    s = needle_shape(mask, min_pixels)
    return None if s is None else (s.tip, s.entry, s.angle_deg)


def lowpass_gain(cutoff_hz: float, dt: float) -> float:
    """The gain of a first-order low-pass with cut-off ``cutoff_hz`` over a step of ``dt`` s."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff_hz * dt))


class NeedleTracker:
    """Smooths the needle tip over frames and coasts (keeps predicting) for up to
    ``max_missing`` frames without a needle, reporting ``frames_missing``. ``update``
    returns :func:`assistant.messages.needle_dict`.

    **The filter** (``filter``): ``alpha_beta`` (default) has fixed per-frame gains
    ``alpha`` and ``beta`` and predicts a constant velocity, so it follows a needle advancing
    at constant speed without lag. ``one_euro`` (opt-in) is a low-pass whose cut-off rises
    with the tip's speed (Casiez et al., the One Euro filter): ``cutoff_hz`` for a still tip,
    plus ``cutoff_per_mm_s`` Hz per mm/s of the tip's smoothed speed (itself low-passed at
    ``SPEED_CUTOFF_HZ``), set in time, not frames. On simulated injections its tip is
    steadier under a still needle and nearer the true tip while advancing, but as a
    low-pass it lags a steady advance a little, and some alerts come a frame later
    (docs/ASSISTANT.md, rule N).

    A needle is reported only once it is **confirmed**: ``confirm_frames`` consecutive
    frames whose needle looks like a shaft (largest blob at least ``min_length_mm`` long and
    ``min_elongation`` times longer than wide, needle confidence at least
    ``min_confidence`` when one is given) near one another. On real scans with no needle
    the segmentation paints small bright specks as needle in about half the frames; each of
    them near a vessel would say "stop". Once confirmed, any needle mask near the predicted
    tip keeps the track (a real shaft fades as the beam misses it)."""

    #: the elongation a shaft cut by a side border needs
    BORDER_ELONGATION = 2.0
    FILTERS = ("alpha_beta", "one_euro")
    #: one_euro: the cut-off (Hz) of the low-pass on the tip's speed
    SPEED_CUTOFF_HZ = 1.0

    @classmethod
    def from_settings(cls, seg) -> "NeedleTracker":
        """The tracker the segmentation process runs: its shaft gate from ``seg``
        (``SegmentationSettings``, config section ``segmentation``)."""
        return cls(min_length_mm=seg.needle_min_length_mm, min_elongation=seg.needle_min_elongation,
                   min_confidence=seg.needle_min_confidence, confirm_frames=seg.needle_confirm_frames,
                   filter=seg.needle_filter, cutoff_hz=seg.needle_cutoff_hz,
                   cutoff_per_mm_s=seg.needle_cutoff_per_mm_s)

    def __init__(self, max_missing: int = 5, alpha: float = 0.6, beta: float = 0.2,
                 min_pixels: int = 15, gate_px: float = 80.0, min_length_mm: float = 3.0,
                 min_elongation: float = 3.0, min_confidence: float = 0.85,
                 confirm_frames: int = 3, filter: str = "alpha_beta", cutoff_hz: float = 1.0,
                 cutoff_per_mm_s: float = 0.4):
        if filter not in self.FILTERS:
            raise ValueError(f"filter must be one of {', '.join(self.FILTERS)}, got {filter!r}")
        if not 0 < alpha <= 1 or not 0 <= beta <= 1:
            raise ValueError(f"alpha must be in (0, 1] and beta in [0, 1], got {alpha}, {beta}")
        if not cutoff_hz > 0 or not cutoff_per_mm_s >= 0:
            raise ValueError(f"cutoff_hz must be > 0 and cutoff_per_mm_s >= 0, got {cutoff_hz}, "
                             f"{cutoff_per_mm_s}")
        if min_length_mm < 0 or min_elongation < 1 or not 0 <= min_confidence <= 1:
            raise ValueError("min_length_mm must be >= 0, min_elongation >= 1 and "
                             f"min_confidence in [0, 1], got {min_length_mm}, {min_elongation}, "
                             f"{min_confidence}")
        if int(confirm_frames) != confirm_frames or confirm_frames < 1:
            raise ValueError(f"confirm_frames must be an integer >= 1, got {confirm_frames!r}")
        self.max_missing = int(max_missing)
        self.filter = filter
        self.alpha, self.beta = float(alpha), float(beta)
        self.cutoff_hz, self.cutoff_per_mm_s = float(cutoff_hz), float(cutoff_per_mm_s)
        self.min_pixels = int(min_pixels)
        self.gate_px = float(gate_px)
        self.min_length_mm = float(min_length_mm)
        self.min_elongation = float(min_elongation)
        self.min_confidence = float(min_confidence)
        self.confirm_frames = int(confirm_frames)
        self.reset()

    def reset(self) -> None:
        self._pos: np.ndarray | None = None  # tip (x, y) px
        self._vel = np.zeros(2)  # px per second
        self._entry: np.ndarray | None = None
        self._angle: float | None = None
        self._t: float | None = None
        self._missing = 0
        self._conf = 0.0
        self._frames = 0
        self._seen = 0  # consecutive shaft-like frames of the track (confirmed at confirm_frames)

    @property
    def confirmed(self) -> bool:
        return self._pos is not None and self._seen >= self.confirm_frames

    def looks_like_a_shaft(self, shape: NeedleShape, spacing_mm: float,
                           confidence: float | None) -> bool:
        """Pure test of one frame's needle: long, thin and (when given) confident enough.
        A blob cut by a side border (a needle entering the view from the side) needs half
        the length and an elongation of ``BORDER_ELONGATION`` (at most the usual one)."""
        length, elong = self.min_length_mm, self.min_elongation
        if shape.at_border:
            length, elong = 0.5 * length, min(elong, self.BORDER_ELONGATION)
        return (shape.length_px * spacing_mm >= length and shape.elongation >= elong
                and (confidence is None or confidence >= self.min_confidence))

    def update(self, labels: np.ndarray, spacing_mm: float, t: float | None = None,
               confidence: float | None = None) -> dict:
        """One frame's labels (uint8, needle = class 'needle') -> needle dict.
        ``t`` is the frame time in seconds (frame count when None); ``confidence``: the
        segmentation's confidence in the needle class (None: not gated on it, e.g. for
        ground-truth labels)."""
        if not isinstance(labels, np.ndarray) or labels.ndim != 2:
            raise ValueError(f"labels must be a 2-D array, got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        if not spacing_mm or spacing_mm <= 0:
            raise ValueError(f"spacing_mm must be > 0, got {spacing_mm!r}")
        self._frames += 1
        t = float(self._frames if t is None else t)
        dt = 1.0 if self._t is None else max(1e-3, t - self._t)
        self._t = t
        shape = needle_shape(labels == NEEDLE, self.min_pixels)
        shaft = shape is not None and self.looks_like_a_shaft(shape, spacing_mm, confidence)
        near = (shape is not None and self._pos is not None
                and np.hypot(*(np.array(shape.tip) - (self._pos + self._vel * dt))) <= self.gate_px)
        conf = 1.0 if confidence is None else float(confidence)
        if self.confirmed and near:
            self._follow(shape, dt, conf, spacing_mm)
            self._seen += 1
            return self._dict(True, spacing_mm)
        if shaft and not self.confirmed:
            if near:
                self._follow(shape, dt, conf, spacing_mm)
                self._seen += 1
            else:  # a new candidate: start again from here
                self._start(shape, conf)
            if self.confirmed:
                return self._dict(True, spacing_mm)
            return needle_dict(False)
        if not self.confirmed:
            # a candidate needs consecutive shaft-like frames; anything else ends it
            if self._pos is not None:
                self._forget()
            return needle_dict(False)
        if shaft:  # confirmed, but a shaft far from the track: a new needle or a jump
            self._start(shape, conf)
            return self._dict(True, spacing_mm) if self.confirmed else needle_dict(False)
        self._missing += 1
        if self._missing > self.max_missing:
            self._forget()
            return needle_dict(False)
        # coast: keep the last motion, trust it less each frame
        self._pos = self._pos + self._vel * dt
        self._conf *= 0.6
        return self._dict(False, spacing_mm)

    def _forget(self) -> None:
        """Drop the track (or candidate) but keep the clock."""
        t, frames = self._t, self._frames
        self.reset()
        self._t, self._frames = t, frames

    def _start(self, shape: NeedleShape, conf: float) -> None:
        self._forget()
        self._pos, self._vel = np.array(shape.tip), np.zeros(2)
        self._entry, self._angle = np.array(shape.entry), shape.angle_deg
        self._conf, self._seen = conf, 1

    def _follow(self, shape: NeedleShape, dt: float, conf: float, spacing_mm: float) -> None:
        z = np.array(shape.tip)
        if self.filter == "alpha_beta":
            pred = self._pos + self._vel * dt
            r = z - pred
            self._pos = pred + self.alpha * r
            self._vel = self._vel + (self.beta / dt) * r
        else:  # one_euro: the speed (px/s) low-passed, then the tip at a cut-off that rises with it
            self._vel = self._vel + lowpass_gain(self.SPEED_CUTOFF_HZ, dt) * (
                (z - self._pos) / dt - self._vel)
            cutoff = self.cutoff_hz + self.cutoff_per_mm_s * float(np.hypot(*self._vel)) * spacing_mm
            self._pos = self._pos + lowpass_gain(cutoff, dt) * (z - self._pos)
        self._entry = 0.5 * self._entry + 0.5 * np.array(shape.entry)
        self._angle = 0.5 * self._angle + 0.5 * shape.angle_deg
        self._missing = 0
        self._conf = conf

    def _dict(self, visible: bool, sp: float) -> dict:
        x, y = float(self._pos[0]), float(self._pos[1])
        return needle_dict(
            visible, tip_px=[x, y], tip_mm=[(x + 0.5) * sp, (y + 0.5) * sp],
            angle_deg=float(self._angle), depth_mm=max(0.0, (y + 0.5) * sp),
            confidence=self._conf,
            entry_px=[float(self._entry[0]), float(self._entry[1])],
            frames_missing=self._missing)
