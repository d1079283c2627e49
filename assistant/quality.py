"""View quality score, 0 to 100, for the chosen block. Pure functions.

score = 100 * weighted mean of three parts (weights renormalised over the parts that
can be measured; see docs/ASSISTANT.md):

* **structures** (weight 0.55): mean over the block's key structures of
  ``present * (0.3 + 0.4 * confidence + 0.3 * location)``. ``present``: at least
  ``MIN_AREA_FRAC`` of the image labelled with the class; ``confidence``: the model's
  confidence for the class (1 when not given, e.g. ground-truth masks); ``location``:
  1 when the structure's centre lies inside the preset's expected depth band, falling
  linearly to 0 a quarter of the image height outside it; with the pixel spacing the
  target (the nerve, or the top of the plane's lower muscle) must also lie within the
  preset's ``target_depth_mm``, falling linearly to 0 at 10 mm outside.
* **image** (weight 0.30): half the mean, half the minimum (one bad factor
  spoils a view) of contrast (RMS contrast of the imaged area),
  speckle signal-to-noise (median local mean/std in tissue, relative to 1.91, the
  value for fully developed speckle), shadowing (1 - share of columns whose lower
  half is dark) and depth setting (image depth against the preset's range when the
  spacing is known, else whether the key structures sit in the useful middle).
* **steadiness** (weight 0.15): 1 - mean absolute frame-to-frame change of the
  8x8-block means / 0.04 of full scale (needs the previous image; left out of the mean
  when there is none).

The reason is the loss that costs the most points ("serratus not seen", "low
contrast", "probe moving"), or "good view".
"""
from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import numpy as np

from assistant.blocks import SPOKEN_CLASS, BlockPreset
from models.classes import CLASSES

log = logging.getLogger(__name__)

WEIGHTS = {"structures": 0.55, "image": 0.30, "steadiness": 0.15}
TARGET_DEPTH_SLACK_MM = 10.0  # target this far outside target_depth_mm: location 0
MIN_AREA_FRAC = 0.0005  # of the image; below this a class counts as not seen
RAYLEIGH_SNR = 1.91  # mean/std of fully developed speckle (Rayleigh amplitude)
CONTRAST_FULL = 0.18  # RMS contrast (std / 255) at which contrast scores 1
GOOD_VIEW = 90.0  # at or above this score the reason is "good view"
# mean |difference| of 8x8 block means / 255 at which steadiness scores 0; real
# supraclavicular scanning cine loops (regional_us_videos, 20 fps, probe sweeping) have a
# median of 0.013 and a 99th percentile of 0.042 between consecutive frames
MOTION_FULL = 0.04
MOTION_BLOCK_PX = 8


class Quality(NamedTuple):
    """Score 0..100, the main reason in words, and every part (0..1) for the gauge/log."""

    score: float
    reason: str
    parts: dict


def _check_image(name: str, img: np.ndarray | None, shape=None) -> np.ndarray | None:
    if img is None:
        return None
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 3:
        # BGR -> grey by the usual luma weights; the ultrasound image is grey anyway
        img = (img[..., 0] * 0.114 + img[..., 1] * 0.587 + img[..., 2] * 0.299)
    if img.ndim != 2:
        raise ValueError(f"{name} must be (H, W) grey or (H, W, 3) BGR, got shape {img.shape}")
    if shape is not None and img.shape != shape:
        raise ValueError(f"{name} has shape {img.shape}, expected {shape} (the labels' shape)")
    return img.astype(np.float32, copy=False)


def structure_part(labels: np.ndarray, confidence: Sequence[float] | None,
                   preset: BlockPreset, classes: Sequence[str] = CLASSES,
                   spacing_mm: float | None = None) -> tuple[float, dict]:
    """Structures part (0..1) and per-structure details {name: {present, conf, loc}}.

    With the spacing, the target's depth is also checked against the preset's
    ``target_depth_mm`` (the nerve's centre; for a plane block the top of the plane's
    lower muscle), falling to 0 at TARGET_DEPTH_SLACK_MM outside the range.
    """
    h, w = labels.shape
    target = preset.target_class or (preset.target_plane[1] if preset.target_plane else None)
    min_area = max(20, int(MIN_AREA_FRAC * h * w))
    lo, hi = preset.expected_depth_frac
    details = {}
    scores = []
    for name in preset.key_structures:
        idx = list(classes).index(name) if name in classes else None
        # per-row counts give area, centre row and percentiles without np.nonzero
        # (the slowest step at 20 fps on a busy machine)
        rows = (labels == idx).sum(axis=1) if idx is not None else np.zeros(h, np.int64)
        area = int(rows.sum())
        present = area >= min_area
        conf = 1.0
        if confidence is not None and idx is not None and idx < len(confidence):
            conf = float(np.clip(confidence[idx], 0.0, 1.0))
        loc = 0.0
        if present:
            row_idx = np.arange(h)
            mean_row = float((rows * row_idx).sum()) / area
            cy = mean_row / h
            outside = max(lo - cy, cy - hi, 0.0)
            loc = float(np.clip(1.0 - outside / 0.25, 0.0, 1.0))
            if spacing_mm and name == target:
                if preset.target_class:
                    row = mean_row
                else:  # the plane's lower muscle: its top, the 10th percentile row
                    row = float(np.searchsorted(np.cumsum(rows), 0.1 * area))
                depth = float(row) * spacing_mm
                t_lo, t_hi = preset.target_depth_mm
                miss = max(t_lo - depth, depth - t_hi, 0.0)
                loc = min(loc, float(np.clip(1.0 - miss / TARGET_DEPTH_SLACK_MM, 0.0, 1.0)))
        s = (0.3 + 0.4 * conf + 0.3 * loc) if present else 0.0
        details[name] = {"present": present, "area_px": area, "confidence": conf,
                         "location": loc, "score": s}
        scores.append(s)
    return float(np.mean(scores)), details


def image_part(image: np.ndarray, labels: np.ndarray | None, preset: BlockPreset,
               spacing_mm: float | None = None,
               classes: Sequence[str] = CLASSES) -> tuple[float, dict]:
    """Image part (0..1) and its factors: contrast, snr, shadow, depth (each 0..1)."""
    import cv2  # heavy import kept out of module import

    img = image
    h, w = img.shape
    imaged = img > 2  # the black frame around a sector/linear image is not tissue
    if np.count_nonzero(imaged) < 0.05 * h * w:
        return 0.0, {"contrast": 0.0, "snr": 0.0, "shadow": 0.0, "depth": 0.0,
                     "blank": True}
    vals = img[imaged]
    contrast = float(np.clip(vals.std() / 255.0 / CONTRAST_FULL, 0.0, 1.0))

    # speckle SNR: local mean / local std in 9x9 windows over tissue (not black, not
    # saturated), median over the image; low means noise dominates the echoes
    mean = cv2.blur(img, (9, 9))
    sq = cv2.blur(img * img, (9, 9))
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    tissue = imaged & (mean > 10) & (mean < 245) & (std > 0.5)
    if np.count_nonzero(tissue) > 100:
        snr_val = float(np.median(mean[tissue] / std[tissue]))
    else:
        snr_val = 0.0
    snr = float(np.clip(snr_val / RAYLEIGH_SNR, 0.0, 1.0))

    # shadowing: a column whose lower half is much darker than its upper half
    cols = imaged.any(axis=0)
    top = img[: h // 2].mean(axis=0)
    bottom = img[h // 2:].mean(axis=0)
    dark = (bottom < 0.25 * np.maximum(top, 1.0)) & (bottom < 12)
    shadow_frac = float(np.count_nonzero(dark & cols)) / max(1, int(np.count_nonzero(cols)))
    shadow = float(np.clip(1.0 - shadow_frac, 0.0, 1.0))

    depth_detail = ""
    if spacing_mm is not None and spacing_mm > 0:
        image_depth = h * spacing_mm
        lo, hi = preset.image_depth_mm
        miss = max(lo - image_depth, image_depth - hi, 0.0)
        depth = float(np.clip(1.0 - miss / max(lo * 0.5, 1e-6), 0.0, 1.0))
        depth_detail = "shallow" if image_depth < lo else ("deep" if image_depth > hi else "")
    elif labels is not None:
        # no spacing: the key structures should not hug the bottom or fill only the top
        key = np.isin(labels, [list(classes).index(c) for c in preset.key_structures
                               if c in classes])
        ys = np.nonzero(key)[0]
        if ys.size:
            deepest = float(np.percentile(ys, 95)) / h
            if deepest > 0.92:
                depth, depth_detail = float(np.clip(1 - (deepest - 0.92) / 0.08, 0, 1)), "shallow"
            elif deepest < 0.3:
                depth, depth_detail = float(np.clip(deepest / 0.3, 0, 1)), "deep"
            else:
                depth = 1.0
        else:
            depth = 1.0  # nothing to judge by; the structures part already pays
    else:
        depth = 1.0
    factors = {"contrast": contrast, "snr": snr, "shadow": shadow, "depth": depth,
               "snr_value": snr_val, "shadow_frac": shadow_frac, "depth_detail": depth_detail}
    vals4 = [contrast, snr, shadow, depth]
    return 0.5 * float(np.mean(vals4)) + 0.5 * float(min(vals4)), factors


def steadiness_part(image: np.ndarray, prev_image: np.ndarray) -> float:
    """1 for a still view, 0 when the mean change of the 8x8-block means reaches
    MOTION_FULL (of full scale)."""
    import cv2

    # block means: speckle and electronic noise change from frame to frame even with a
    # still probe; averaging 8x8 blocks leaves the anatomy's change, i.e. probe motion
    h, w = image.shape
    size = (max(1, w // MOTION_BLOCK_PX), max(1, h // MOTION_BLOCK_PX))
    a = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(prev_image, size, interpolation=cv2.INTER_AREA)
    diff = float(np.mean(np.abs(a - b))) / 255.0
    return float(np.clip(1.0 - diff / MOTION_FULL, 0.0, 1.0))


def quality_score(image: np.ndarray | None, labels: np.ndarray,
                  confidence: Sequence[float] | None, preset: BlockPreset,
                  prev_image: np.ndarray | None = None, spacing_mm: float | None = None,
                  classes: Sequence[str] = CLASSES) -> Quality:
    """Quality of the view for ``preset``: (score 0..100, reason, parts).

    ``image``: the grey (or BGR) frame the ``labels`` segment; ``None`` leaves the image
    and steadiness parts out. ``labels``: uint8 (H, W) class indices of ``classes``.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D numpy array of class indices, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    img = _check_image("image", image, labels.shape)
    prev = _check_image("prev_image", prev_image, labels.shape) if img is not None else None

    s_struct, details = structure_part(labels, confidence, preset, classes, spacing_mm)
    parts: dict = {"structures": s_struct, "structure_details": details}
    weighted = {"structures": s_struct}
    factors: dict = {}
    if img is not None:
        # half resolution for frames of 256 px and more: the statistics barely change
        # (speckle mean/std is scale-free) and the cost drops fourfold
        k = 2 if min(img.shape) >= 256 else 1
        s_img, factors = image_part(img[::k, ::k], labels[::k, ::k], preset,
                                    None if spacing_mm is None else spacing_mm * k, classes)
        parts["image"] = s_img
        parts["image_factors"] = factors
        weighted["image"] = s_img
        if prev is not None:
            s_steady = steadiness_part(img, prev)
            parts["steadiness"] = s_steady
            weighted["steadiness"] = s_steady
    wsum = sum(WEIGHTS[k] for k in weighted)
    score = 100.0 * sum(WEIGHTS[k] * v for k, v in weighted.items()) / wsum
    reason = _reason(details, factors, weighted, wsum, score)
    return Quality(round(score, 1), reason, parts)


def _reason(details: dict, factors: dict, weighted: dict, wsum: float, total: float) -> str:
    """The single loss that costs the most points, in words."""
    losses: list[tuple[float, str]] = []
    n = max(1, len(details))
    w_struct = 100 * WEIGHTS["structures"] / wsum
    for name, d in details.items():
        spoken = SPOKEN_CLASS.get(name, name)
        if not d["present"]:
            losses.append((w_struct / n, f"{spoken} not seen"))
        else:
            losses.append((w_struct / n * 0.4 * (1 - d["confidence"]), f"{spoken} unsure"))
            losses.append((w_struct / n * 0.3 * (1 - d["location"]), f"{spoken} out of place"))
    if "image" in weighted:
        w_img = 100 * WEIGHTS["image"] / wsum
        keys = ("contrast", "snr", "shadow", "depth")
        worst = min(keys, key=lambda k: factors.get(k, 1.0))
        depth_word = {"shallow": "increase depth", "deep": "decrease depth"}.get(
            factors.get("depth_detail", ""), "adjust depth")
        for key, text in (("contrast", "low contrast"), ("snr", "noisy image"),
                          ("shadow", "shadowing"), ("depth", depth_word)):
            miss = 1 - factors.get(key, 1.0)
            # its share of the mean, plus the minimum's half if it is the worst factor
            losses.append((w_img * (0.125 * miss + (0.5 * miss if key == worst else 0.0)),
                           text))
    if "steadiness" in weighted:
        losses.append((100 * WEIGHTS["steadiness"] / wsum * (1 - weighted["steadiness"]),
                       "probe moving"))
    loss, text = max(losses, key=lambda t: t[0]) if losses else (0.0, "")
    # a small loss is not worth a word: the operator needs the main problem or "good"
    return text if loss >= 3.0 and total < GOOD_VIEW else "good view"
