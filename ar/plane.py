"""Target-plane geometry shared by the renderer and the assistant (pure numpy, cheap import).

A fascial-plane block injects between two muscles; the plane is the boundary between
the upper and the lower muscle's masks:

* PECS I: between pectoralis major and pectoralis minor;
* PECS II: between pectoralis minor and serratus anterior.

Polylines are float32 arrays of shape (N, 2) holding (x, y) image pixels, x increasing.
"""
from __future__ import annotations

import math

import numpy as np

from models.classes import CLASS_INDEX, CLASSES

#: block id -> (upper class, lower class) whose boundary is the target plane
BLOCK_PLANES: dict[str, tuple[str, str]] = {
    "pecs1": ("pec_major", "pec_minor"),
    "pecs2": ("pec_minor", "serratus"),
}

#: block id -> name on screen
BLOCK_NAMES: dict[str, str] = {
    "pecs1": "PECS I", "pecs2": "PECS II", "interscalene": "interscalene",
    "supraclavicular": "supraclavicular", "axillary": "axillary", "femoral": "femoral",
}


def _class_id(cls: int | str, what: str) -> int:
    if isinstance(cls, str):
        if cls not in CLASS_INDEX:
            raise ValueError(f"{what}: unknown class {cls!r}; known: {', '.join(CLASSES[1:])}")
        return CLASS_INDEX[cls]
    if isinstance(cls, (int, np.integer)) and 0 < int(cls) < 256:
        return int(cls)
    raise ValueError(f"{what}: a class name or index 1..255, got {cls!r}")


def target_plane_from_labels(labels: np.ndarray, upper_class: int | str, lower_class: int | str,
                             max_gap_px: int | None = None, step_px: int = 4) -> np.ndarray:
    """The boundary between ``upper_class`` (above) and ``lower_class`` (below), per column.

    In each column where both classes occur and the upper one's lowest pixel is above the
    lower one's highest pixel, the plane lies midway between them (a thin fascia or a
    gap of background between the muscles is allowed, up to ``max_gap_px`` if given).
    Columns are sampled every ``step_px``; a 5-sample running median removes single-
    column spikes from ragged mask edges.

    Returns float32 (N, 2) (x, y) in image pixels, empty (0, 2) when there is no boundary.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array of class indices, got "
                         f"{type(labels).__name__} {getattr(labels, 'shape', '')}")
    if step_px < 1:
        raise ValueError(f"step_px must be >= 1, got {step_px}")
    up = _class_id(upper_class, "upper_class")
    lo = _class_id(lower_class, "lower_class")
    if up == lo:
        raise ValueError(f"upper_class and lower_class are the same class ({up})")
    lab = labels[:, ::step_px]
    h = lab.shape[0]
    rows = np.arange(h, dtype=np.int32)[:, None]
    y_up = np.where(lab == up, rows, -1).max(axis=0)  # lowest pixel of the upper class
    y_lo = np.where(lab == lo, rows, h).min(axis=0)  # highest pixel of the lower class
    ok = (y_up >= 0) & (y_lo < h) & (y_up < y_lo)
    if max_gap_px is not None:
        ok &= (y_lo - y_up - 1) <= max_gap_px
    if not ok.any():
        return np.zeros((0, 2), np.float32)
    xs = (np.nonzero(ok)[0] * step_px).astype(np.float32)
    ys = ((y_up[ok] + y_lo[ok]) / 2.0).astype(np.float32)
    if len(ys) >= 5:
        pad = np.pad(ys, 2, mode="edge")
        ys = np.median(np.lib.stride_tricks.sliding_window_view(pad, 5), axis=1).astype(np.float32)
    return np.stack([xs, ys], axis=1)


def plane_y_at(plane_px: np.ndarray, x: float) -> float | None:
    """The plane's y at image column ``x`` (linear between vertices), None outside its span."""
    pts = np.asarray(plane_px, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return None
    order = np.argsort(pts[:, 0], kind="stable")
    xs, ys = pts[order, 0], pts[order, 1]
    if x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def tip_to_plane_mm(tip_px, plane_px: np.ndarray, spacing_mm: float) -> float | None:
    """Vertical distance (mm) from the needle tip down to the plane at the tip's column.

    Positive: the plane is still below the tip; negative: the tip is past it.
    None when the plane does not span the tip's column.
    """
    if tip_px is None:
        return None
    if not (isinstance(spacing_mm, (int, float)) and math.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"spacing_mm must be a positive number, got {spacing_mm!r}")
    x, y = float(tip_px[0]), float(tip_px[1])
    py = plane_y_at(plane_px, x)
    if py is None:
        return None
    return (py - y) * float(spacing_mm)
