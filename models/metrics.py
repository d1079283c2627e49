"""Segmentation metrics on boolean masks (pure numpy/OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """2|P&G| / (|P|+|G|); 1.0 when both are empty."""
    p, g = pred.astype(bool), gt.astype(bool)
    s = int(p.sum()) + int(g.sum())
    if s == 0:
        return 1.0
    return 2.0 * int((p & g).sum()) / s


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P&G| / |P|G|; 1.0 when both are empty."""
    p, g = pred.astype(bool), gt.astype(bool)
    u = int((p | g).sum())
    if u == 0:
        return 1.0
    return int((p & g).sum()) / u


def _boundary(m: np.ndarray) -> np.ndarray:
    m8 = m.astype(np.uint8)
    er = cv2.erode(m8, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m8 > 0) & (er == 0)


def hd95(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance (px) between the mask boundaries;
    None when either mask is empty (undefined)."""
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() or not g.any():
        return None
    bp, bg = _boundary(p), _boundary(g)
    # distance of every pixel to the nearest boundary pixel of the other mask
    dt_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dt_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d = np.concatenate([dt_g[bp], dt_p[bg]])
    return float(np.percentile(d, 95))
