"""Needle tip, entry and angle from a needle mask; a tracker that smooths them over frames.

The tip is the end of the needle mask farthest from where the shaft enters the image.
An in-plane needle goes deeper as it advances, so the entry is the shallower end of the
shaft (for a nearly horizontal shaft: the end nearer a side border).
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from assistant.messages import needle_dict
from models.classes import CLASS_INDEX

log = logging.getLogger(__name__)

NEEDLE = CLASS_INDEX["needle"]


def needle_tip_from_mask(mask: np.ndarray, min_pixels: int = 15
                         ) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """(tip_xy, entry_xy, angle_deg) of the needle in a boolean mask, or None when there
    are fewer than ``min_pixels`` needle pixels. Coordinates are pixels (x right, y
    down); the angle is 0..90 degrees from horizontal. Specks far smaller than the main
    shaft are ignored."""
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
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    c = pts.mean(axis=0)
    # principal axis of the pixels: the shaft direction
    cov = np.cov((pts - c).T)
    evals, evecs = np.linalg.eigh(cov)
    d = evecs[:, np.argmax(evals)]
    t = (pts - c) @ d
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
    return (float(tip[0]), float(tip[1])), (float(entry[0]), float(entry[1])), float(angle)


class NeedleTracker:
    """Smooths the needle tip over frames with an alpha-beta filter and coasts (keeps
    predicting) for up to ``max_missing`` frames without a needle, reporting
    ``frames_missing``. ``update`` returns :func:`assistant.messages.needle_dict`."""

    def __init__(self, max_missing: int = 5, alpha: float = 0.6, beta: float = 0.2,
                 min_pixels: int = 15, gate_px: float = 80.0):
        if not 0 < alpha <= 1 or not 0 <= beta <= 1:
            raise ValueError(f"alpha must be in (0, 1] and beta in [0, 1], got {alpha}, {beta}")
        self.max_missing = int(max_missing)
        self.alpha, self.beta = float(alpha), float(beta)
        self.min_pixels = int(min_pixels)
        self.gate_px = float(gate_px)
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

    def update(self, labels: np.ndarray, spacing_mm: float, t: float | None = None,
               confidence: float | None = None) -> dict:
        """One frame's labels (uint8, needle = class 'needle') -> needle dict.
        ``t`` is the frame time in seconds (frame count when None)."""
        if not isinstance(labels, np.ndarray) or labels.ndim != 2:
            raise ValueError(f"labels must be a 2-D array, got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        if not spacing_mm or spacing_mm <= 0:
            raise ValueError(f"spacing_mm must be > 0, got {spacing_mm!r}")
        self._frames += 1
        t = float(self._frames if t is None else t)
        dt = 1.0 if self._t is None else max(1e-3, t - self._t)
        self._t = t
        found = needle_tip_from_mask(labels == NEEDLE, self.min_pixels)
        if found is not None:
            tip, entry, angle = (np.array(found[0]), np.array(found[1]), found[2])
            conf = 1.0 if confidence is None else float(confidence)
            if self._pos is None or np.hypot(*(tip - (self._pos + self._vel * dt))) > self.gate_px:
                # a new needle, or a jump too large to be motion: start again from here
                self._pos, self._vel = tip, np.zeros(2)
                self._entry, self._angle = entry, angle
            else:
                pred = self._pos + self._vel * dt
                r = tip - pred
                self._pos = pred + self.alpha * r
                self._vel = self._vel + (self.beta / dt) * r
                self._entry = 0.5 * self._entry + 0.5 * entry
                self._angle = 0.5 * self._angle + 0.5 * angle
            self._missing = 0
            self._conf = conf
            return self._dict(True, spacing_mm)
        if self._pos is None:
            return needle_dict(False)
        self._missing += 1
        if self._missing > self.max_missing:
            self.reset()
            self._t = t
            return needle_dict(False)
        # coast: keep the last motion, trust it less each frame
        self._pos = self._pos + self._vel * dt
        self._conf *= 0.6
        return self._dict(False, spacing_mm)

    def _dict(self, visible: bool, sp: float) -> dict:
        x, y = float(self._pos[0]), float(self._pos[1])
        return needle_dict(
            visible, tip_px=[x, y], tip_mm=[(x + 0.5) * sp, (y + 0.5) * sp],
            angle_deg=float(self._angle), depth_mm=max(0.0, (y + 0.5) * sp),
            confidence=self._conf,
            entry_px=[float(self._entry[0]), float(self._entry[1])],
            frames_missing=self._missing)
