"""Needle guidance: depth, distance to the target, nearest danger. Pure functions.

Conventions (image pixels, x right, y down; mm = px * spacing_mm):

* ``depth_mm``: the needle tracker's depth of the tip below the skin line, else tip y
  times the spacing.
* ``to_target_mm``: signed distance from the tip to the target, **positive when the
  tip is above it** (still has to go deeper). For a plane block it is the vertical
  distance to the target plane at the tip's x; for a perineural block the distance to
  the nearest pixel of the target nerve (0 inside it).
* ``target_plane_px``: polyline ``[[x, y], ...]`` along the boundary between the two
  classes of ``preset.target_plane`` (upper class directly above the lower one).
* ``nearest_danger``: ``{"name": "pleura"|"artery", "distance_mm"}``, the distance from
  the tip to the nearest pixel of a class in ``preset.avoid`` (new fluid at the tip,
  ``assistant.fluid``, is not counted: its distance is ``fluid_mm``; a vessel remembered
  while the tip is still counts even when not seen now, and is then named in
  ``dangers_held``, its outlines near the tip in ``held_vessel_px``).
"""
from __future__ import annotations

import logging
from typing import Collection, Iterable, Sequence

import cv2
import numpy as np

from assistant.blocks import SPOKEN_CLASS, BlockPreset, danger_name
from models.classes import CLASSES

log = logging.getLogger(__name__)

#: a remembered vessel (``held``) counts only when nearer than the one seen now by this much
#: (the memory is kept at 1/4 of the frame size, so it is up to 3 px larger)
HELD_MARGIN_MM = 0.5

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: float) -> str:
    """A number rounded to an integer, in English words: 18 -> "eighteen"."""
    n = int(round(float(n)))
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        words = _ONES[hundreds] + " hundred"
        return words if rest == 0 else f"{words} and {number_words(rest)}"
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        words = number_words(thousands) + " thousand"
        return words if rest == 0 else f"{words} {number_words(rest)}"
    return str(n)


def plane_polyline(labels: np.ndarray, upper: int, lower: int, step_px: int = 8,
                   max_gap_frac: float = 0.12) -> list[list[int]]:
    """Points on the boundary where class ``upper`` lies directly above ``lower``.

    Per sampled column: the deepest ``upper`` pixel above the first ``lower`` pixel and
    that ``lower`` pixel, if no more than ``max_gap_frac`` of the image height apart
    (a fascia between the muscles is allowed); the point is their midpoint.
    """
    h, w = labels.shape
    max_gap = max(2, int(max_gap_frac * h))
    xs = np.arange(step_px // 2, w, step_px)
    cols = labels[:, xs]  # (h, n): all sampled columns at once
    low = cols == lower
    has_low = low.any(axis=0)
    lt = np.where(has_low, low.argmax(axis=0), h)  # first lower row per column
    rows = np.arange(h)[:, None]
    up = (cols == upper) & (rows < lt[None, :])
    has_up = up.any(axis=0)
    ub = h - 1 - up[::-1].argmax(axis=0)  # last upper row above it
    ok = has_low & has_up & (lt - ub <= max_gap)
    return [[int(x), int(round((u + t) / 2))] for x, u, t in zip(xs[ok], ub[ok], lt[ok])]


def _class_index(name: str, classes: Sequence[str]) -> int | None:
    try:
        return list(classes).index(name)
    except ValueError:
        return None


def distance_to_class_px(labels: np.ndarray, idx: int, tip_xy: Sequence[float],
                         window_px: int = 64) -> float | None:
    """Euclidean distance (px) from the tip to the nearest pixel of class ``idx``.

    Looks in a window around the tip first: a pixel found there at distance <= the
    window's half-size is the nearest overall (anything outside is farther), so the
    whole image is searched only when the class is not close.
    """
    h, w = labels.shape
    tx, ty = float(tip_xy[0]), float(tip_xy[1])
    x0, x1 = max(0, int(tx) - window_px), min(w, int(tx) + window_px + 1)
    y0, y1 = max(0, int(ty) - window_px), min(h, int(ty) + window_px + 1)
    if x0 < x1 and y0 < y1:
        ys, xs = np.nonzero(labels[y0:y1, x0:x1] == idx)
        if ys.size:
            d = float(np.sqrt(np.min((xs + x0 - tx) ** 2 + (ys + y0 - ty) ** 2)))
            if d <= window_px:
                return d
    ys, xs = np.nonzero(labels == idx)
    if ys.size == 0:
        return None
    return float(np.sqrt(np.min((xs - tx) ** 2 + (ys - ty) ** 2)))


def frame_spacing(spacing_mm: float | None, needle: dict) -> float | None:
    """mm per pixel: the frame's, else from the needle tracker's tip in mm and px."""
    if spacing_mm is not None:
        if not spacing_mm > 0:
            raise ValueError(f"spacing_mm must be > 0 mm per pixel, got {spacing_mm!r}")
        return float(spacing_mm)
    # no frame spacing yet: the tracker's tip in mm and px give it
    tip_px, tip_mm = needle.get("tip_px"), needle.get("tip_mm")
    if tip_px and tip_mm and tip_px[1]:
        return float(tip_mm[1]) / float(tip_px[1])
    return None


def compute_guidance(needle: dict | None, labels: np.ndarray, preset: BlockPreset,
                     spacing_mm: float | None, classes: Sequence[str] = CLASSES,
                     fluid: np.ndarray | None = None, held: np.ndarray | None = None,
                     pending: np.ndarray | None = None) -> dict:
    """Guidance for the renderer and the speech answers (keys: module docstring).

    The target is computed even without a needle (so "where is the target" works); the
    tip-relative keys are only there when the needle is visible. ``fluid``: a bool mask of
    pixels that are new fluid at the tip (``assistant.fluid``), not a danger; their
    distance from the tip is ``fluid_mm``. ``held``: a bool mask of remembered vessel
    pixels (``assistant.fluid``, the tip still): the artery distance is theirs when they are
    nearer by more than ``HELD_MARGIN_MM`` than the vessel seen now (or none is seen), and
    ``dangers_held`` then names it.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array of class indices, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    needle = needle or {}
    sp = frame_spacing(spacing_mm, needle)
    g: dict = {"visible": bool(needle.get("visible")), "spacing_mm": sp}
    h, _w = labels.shape

    # the target, independent of the needle
    plane: list[list[int]] = []
    target_idx = None
    if preset.target_plane:
        u, lo = (_class_index(c, classes) for c in preset.target_plane)
        if u is not None and lo is not None:
            plane = plane_polyline(labels, u, lo)
        if plane:
            g["target_plane_px"] = plane
            g["target_y_px"] = float(np.mean([p[1] for p in plane]))
    else:
        target_idx = _class_index(preset.target_class, classes)
        if target_idx is not None:
            ys, xs = np.nonzero(labels == target_idx)
            if ys.size:
                g["target_px"] = [float(xs.mean()), float(ys.mean())]
                g["target_y_px"] = float(ys.mean())
    if "target_y_px" in g and sp:
        g["target_depth_mm"] = g["target_y_px"] * sp

    tip = needle.get("tip_px")
    if not g["visible"] or not tip:
        return g
    tx, ty = float(tip[0]), float(tip[1])
    g["tip_px"] = [tx, ty]
    if needle.get("depth_mm") is not None:
        g["depth_mm"] = float(needle["depth_mm"])
    elif sp:
        g["depth_mm"] = ty * sp
    if needle.get("angle_deg") is not None:
        g["angle_deg"] = float(needle["angle_deg"])

    if sp:
        if plane:
            xs_p = np.array([p[0] for p in plane], dtype=float)
            ys_p = np.array([p[1] for p in plane], dtype=float)
            # beyond the ends the plane is held flat: the nearest end's depth
            plane_y = float(np.interp(tx, xs_p, ys_p))
            g["to_target_mm"] = (plane_y - ty) * sp
        elif target_idx is not None and "target_px" in g:
            inside = labels[int(min(max(ty, 0), h - 1)),
                            int(min(max(tx, 0), labels.shape[1] - 1))] == target_idx
            d = 0.0 if inside else distance_to_class_px(labels, target_idx, (tx, ty))
            sign = 1.0 if ty <= g["target_px"][1] else -1.0
            g["to_target_mm"] = sign * float(d) * sp
        dangers = {}
        danger_labels = labels
        if fluid is not None and fluid.shape == labels.shape and fluid.any():
            danger_labels = np.where(fluid, 0, labels)
            d = distance_to_class_px(fluid.astype(np.uint8), 1, (tx, ty))
            if d is not None:
                g["fluid_mm"] = d * sp
        if pending is not None and pending.shape == labels.shape and pending.any():
            danger_labels = np.where(pending, 0, danger_labels)
        for cls in preset.avoid:
            idx = _class_index(cls, classes)
            if idx is None:
                continue
            d = distance_to_class_px(danger_labels, idx, (tx, ty))
            if cls == "vessel" and held is not None and held.shape == labels.shape:
                d_held = distance_to_class_px(held.astype(np.uint8), 1, (tx, ty))
                if d_held is not None and (d is None or d_held * sp < d * sp - HELD_MARGIN_MM):
                    d = d_held
                    g.setdefault("dangers_held", []).append(danger_name(cls))
                    g["held_vessel_px"] = held_outlines(held, (tx, ty), 3 * d_held + 20)
            if d is not None:
                name = danger_name(cls)
                dangers[name] = min(d * sp, dangers.get(name, float("inf")))
        if dangers:
            g["dangers_mm"] = dangers
            name = min(dangers, key=dangers.get)
            g["nearest_danger"] = {"name": name, "distance_mm": dangers[name]}
    return g


def held_outlines(mask: np.ndarray, tip_xy: Sequence[float], within_px: float) -> list:
    """Outlines ``[[[x, y], ...], ...]`` (simplified to 2 px) of the blobs of ``mask`` that
    come within ``within_px`` of the tip: where a remembered vessel is, for the renderer."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    tx, ty = float(tip_xy[0]), float(tip_xy[1])
    out = []
    for c in contours:
        pts = cv2.approxPolyDP(c, 2.0, True).reshape(-1, 2)
        if len(pts) >= 3 and np.hypot(c[:, 0, 0] - tx, c[:, 0, 1] - ty).min() <= within_px:
            out.append(pts.astype(int).tolist())
    return out


def target_word(preset: BlockPreset) -> str:
    return "plane" if preset.target_plane else SPOKEN_CLASS.get(preset.target_class, "target")


MUSCLE_CLASSES = ("pec_major", "pec_minor", "serratus")


def group_muscles(names: Iterable[str]) -> list[str]:
    """The names once each, in order, with the three chest-wall muscles as one "muscles"
    when all three are there."""
    names = list(dict.fromkeys(names))
    if all(m in names for m in MUSCLE_CLASSES):
        names = ["muscles"] + [n for n in names if n not in MUSCLE_CLASSES]
    return names


def unverified_words(names: Iterable[str]) -> str:
    """Classes never checked on real scans, as few spoken words: the three chest-wall
    muscles together are "muscles"; ``""`` for none. ("pec_minor", "pleura") ->
    "pec minor and pleura"."""
    words = [SPOKEN_CLASS.get(n, n.replace("_", " ")) for n in group_muscles(names)]
    return words[0] if len(words) == 1 else (
        ", ".join(words[:-1]) + " and " + words[-1] if words else "")


def target_classes(preset: BlockPreset) -> tuple[str, ...]:
    """The class(es) that make the target: the plane's two, or the nerve."""
    return tuple(preset.target_plane) if preset.target_plane else (preset.target_class,)


def depth_sentence(g: dict | None, preset: BlockPreset,
                   unverified: Collection[str] = ()) -> str:
    """The answer to "needle depth": "depth eighteen millimetres, three above the plane".
    It ends "unverified" when the needle, or the target it is measured to, is one of the
    ``unverified`` classes (never checked on real scans)."""
    if not g or not g.get("visible") or g.get("depth_mm") is None:
        return "needle not seen"
    text = f"depth {number_words(g['depth_mm'])} millimetres"
    doubt = "needle" in unverified
    to_t = g.get("to_target_mm")
    if to_t is not None:
        word = target_word(preset)
        mm = abs(to_t)
        if mm < 0.5:
            text += f", at the {word}"
        else:
            text += f", {number_words(mm)} {'above' if to_t > 0 else 'below'} the {word}"
        doubt = doubt or any(c in unverified for c in target_classes(preset))
    return text + (", unverified" if doubt else "")


def target_sentence(g: dict | None, preset: BlockPreset,
                    unverified: Collection[str] = (), unsure: Collection[str] = ()) -> str:
    """The answer to "where is the target"; it ends "unsure" when the segmentation is
    unsure of the target (the nerve, or either class bounding the plane), else
    "unverified" when the target, or the needle it is measured from, is one of the
    ``unverified`` classes (the monitor legend's order: unsure before unverified)."""
    if not g or "target_y_px" not in g:
        return f"{preset.target_text} not seen"
    text = preset.target_text
    doubt = any(c in unverified for c in target_classes(preset))
    if g.get("target_depth_mm") is not None:
        text += f", {number_words(g['target_depth_mm'])} millimetres deep"
    to_t = g.get("to_target_mm")
    if g.get("visible") and to_t is not None and abs(to_t) >= 0.5:
        text += f", {number_words(abs(to_t))} {'below' if to_t > 0 else 'above'} the tip"
        doubt = doubt or "needle" in unverified
    if any(c in unsure for c in target_classes(preset)):
        return text + ", unsure"
    return text + (", unverified" if doubt else "")
