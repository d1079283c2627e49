"""Needle tip from a mask, and the tracker that smooths and coasts."""
import math

import cv2
import numpy as np
import pytest

from models.classes import CLASS_INDEX
from models.needle import NeedleTracker, needle_tip_from_mask

NEEDLE = CLASS_INDEX["needle"]


def shaft(shape, entry, tip, width=5):
    """A needle band from entry to tip with square ends."""
    m = np.zeros(shape, np.uint8)
    (ex, ey), (tx, ty) = entry, tip
    L = math.hypot(tx - ex, ty - ey)
    nx, ny = -(ty - ey) / L * width / 2, (tx - ex) / L * width / 2
    quad = np.array([[ex + nx, ey + ny], [tx + nx, ty + ny], [tx - nx, ty - ny], [ex - nx, ey - ny]])
    cv2.fillConvexPoly(m, np.round(quad * 16).astype(np.int32), 1, shift=4)
    return m.astype(bool)


@pytest.mark.parametrize("entry,tip", [((0, 10), (150, 100)), ((199, 0), (60, 120)),
                                       ((30, 0), (40, 150))])
def test_tip_entry_and_angle_from_a_mask(entry, tip):
    m = shaft((200, 200), entry, tip)
    t, e, angle = needle_tip_from_mask(m)
    assert math.hypot(t[0] - tip[0], t[1] - tip[1]) < 2.0
    assert math.hypot(e[0] - entry[0], e[1] - entry[1]) < 2.5
    expect = math.degrees(math.atan2(abs(tip[1] - entry[1]), abs(tip[0] - entry[0])))
    assert angle == pytest.approx(expect, abs=1.0)


def test_nearly_horizontal_needle_enters_from_the_nearer_side():
    m = shaft((200, 300), (299, 50), (120, 55))
    t, e, _ = needle_tip_from_mask(m)
    assert t[0] < 130 and e[0] > 290


def test_no_needle_and_specks_are_ignored():
    assert needle_tip_from_mask(np.zeros((50, 50), bool)) is None
    m = shaft((200, 200), (0, 10), (150, 100))
    m[190:193, 5:8] = True  # a speck far from the shaft must not become the tip
    t, _, _ = needle_tip_from_mask(m)
    assert math.hypot(t[0] - 150, t[1] - 100) < 2.0


def test_tracker_follows_then_coasts_over_missing_frames_then_gives_up():
    tr = NeedleTracker(max_missing=3)
    sp = 0.1
    out = None
    for k in range(6):  # the tip advances 4 px per frame
        lab = np.where(shaft((200, 200), (0, 10), (60 + 4 * k, 50 + 2 * k)), NEEDLE, 0).astype(np.uint8)
        out = tr.update(lab, sp, t=k * 0.05)
    assert out["visible"] and out["frames_missing"] == 0
    tx, ty = out["tip_px"]
    assert abs(tx - 80) < 3 and abs(ty - 60) < 2
    assert out["depth_mm"] == pytest.approx((ty + 0.5) * sp)
    assert out["angle_deg"] == pytest.approx(math.degrees(math.atan2(60 - 10, 80)), abs=3)
    empty = np.zeros((200, 200), np.uint8)
    coast = tr.update(empty, sp, t=0.30)
    assert not coast["visible"] and coast["frames_missing"] == 1
    # keeps predicting along the motion rather than freezing or vanishing
    assert coast["tip_px"][0] > tx
    assert coast["confidence"] < out["confidence"]
    tr.update(empty, sp, t=0.35)
    tr.update(empty, sp, t=0.40)
    gone = tr.update(empty, sp, t=0.45)
    assert gone["tip_px"] is None and gone["frames_missing"] == 0 and not gone["visible"]


def test_tracker_rejects_bad_input():
    tr = NeedleTracker()
    with pytest.raises(ValueError, match="labels"):
        tr.update(np.zeros((3, 3, 3), np.uint8), 0.1)
    with pytest.raises(ValueError, match="spacing_mm"):
        tr.update(np.zeros((3, 3), np.uint8), 0.0)
