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


def _still_needle_x(filter_: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A needle held still whose mask's tip jitters +-5 px along the shaft frame to frame
    (as a model's does): the tracked and the measured tip x, after a settling half second."""
    rng = np.random.default_rng(seed)
    tr = NeedleTracker(filter=filter_)
    tracked, measured = [], []
    for k in range(40):
        j = int(rng.integers(-5, 6))
        tip = (120 + j, 70 + j // 2)
        nd = tr.update(_labels_with(shaft((200, 200), (0, 10), tip)), 0.1, k * 0.05, 0.95)
        if k >= 10:
            tracked.append(nd["tip_px"][0])
            measured.append(tip[0])
    return np.array(tracked), np.array(measured, float)


def _advance_lag_px(**kw) -> float:
    """The largest tracked-tip error (px) of a needle advancing at 11 mm/s (0.1 mm/px, 20 fps)
    once the track is half a second old."""
    tr = NeedleTracker(**kw)
    errs = []
    for k in range(30):
        tip = (40 + 5 * k, 30 + 2.5 * k)
        nd = tr.update(_labels_with(shaft((300, 300), (0, 10), tip)), 0.1, k * 0.05, 0.95)
        if k >= 10:
            errs.append(math.hypot(nd["tip_px"][0] - tip[0], nd["tip_px"][1] - tip[1]))
    return max(errs)


def test_one_euro_holds_a_still_tip_still_and_follows_an_advancing_one():
    """Rule N (opt-in filter): one_euro halves a still tip's jitter, where the default
    alpha-beta filter keeps about 70 % of it, and follows an advancing needle within 0.3 mm,
    where a fixed low-pass as calm (1 Hz) lags by well over a millimetre; alpha-beta, which
    predicts, follows it closer still."""
    one = np.concatenate([_still_needle_x("one_euro", s)[0] for s in range(3)])
    ab = np.concatenate([_still_needle_x("alpha_beta", s)[0] for s in range(3)])
    raw = np.concatenate([_still_needle_x("one_euro", s)[1] for s in range(3)])
    assert one.std() < 0.65 * raw.std()
    assert one.std() < 0.85 * ab.std()
    lag = _advance_lag_px(filter="one_euro")
    assert lag < 3.0  # 0.3 mm
    assert _advance_lag_px(filter="one_euro", cutoff_per_mm_s=0.0) > 10.0  # not speed-adaptive
    assert _advance_lag_px() < lag  # the default, alpha_beta


def test_tracker_rejects_bad_input():
    tr = NeedleTracker()
    with pytest.raises(ValueError, match="labels"):
        tr.update(np.zeros((3, 3, 3), np.uint8), 0.1)
    with pytest.raises(ValueError, match="spacing_mm"):
        tr.update(np.zeros((3, 3), np.uint8), 0.0)


def _labels_with(mask: np.ndarray, vessel_box=None) -> np.ndarray:
    lab = np.where(mask, NEEDLE, 0).astype(np.uint8)
    if vessel_box is not None:
        y0, y1, x0, x1 = vessel_box
        lab[y0:y1, x0:x1] = CLASS_INDEX["vessel"]
    return lab


def test_a_speck_is_never_reported_as_a_needle():
    """What the model paints on real scans without a needle: a small bright speck, frame
    after frame, next to a vessel. Before the shaft gate it was a needle at once."""
    tr = NeedleTracker()
    speck = np.zeros((200, 200), bool)
    speck[100:106, 100:108] = True  # 48 px, 0.8 mm at 0.1 mm/px, elongation ~1.3
    for k in range(20):
        nd = tr.update(_labels_with(speck, (108, 130, 95, 120)), 0.1, k * 0.05, confidence=0.95)
        assert not nd["visible"] and nd["tip_px"] is None
    ungated = NeedleTracker(min_length_mm=0, min_elongation=1, min_confidence=0, confirm_frames=1)
    assert ungated.update(_labels_with(speck), 0.1, 0.0, confidence=0.95)["visible"]


def test_a_shaft_is_confirmed_on_its_third_consecutive_frame():
    tr = NeedleTracker(confirm_frames=3)
    seen = []
    for k in range(5):
        lab = _labels_with(shaft((200, 200), (0, 10), (60 + 4 * k, 50 + 2 * k)))
        seen.append(tr.update(lab, 0.1, k * 0.05, confidence=0.93)["visible"])
    assert seen == [False, False, True, True, True]


def test_an_interrupted_or_unsure_candidate_starts_again():
    lab = _labels_with(shaft((200, 200), (0, 10), (80, 60)))
    empty = np.zeros((200, 200), np.uint8)
    tr = NeedleTracker(confirm_frames=3)
    seen = [tr.update(x, 0.1, k * 0.05, confidence=0.93)["visible"]
            for k, x in enumerate([lab, lab, empty, lab, lab, lab])]
    assert seen == [False, False, False, False, False, True]
    low = NeedleTracker(confirm_frames=3)  # the same shaft with a confidence under 0.85
    assert not any(low.update(lab, 0.1, k * 0.05, confidence=0.7)["visible"] for k in range(6))


def test_a_confirmed_needle_is_kept_when_only_a_short_piece_shows():
    tr = NeedleTracker(confirm_frames=3)
    for k in range(3):
        nd = tr.update(_labels_with(shaft((200, 200), (0, 10), (80, 60))), 0.1, k * 0.05, 0.93)
    assert nd["visible"]
    piece = np.zeros((200, 200), bool)
    piece[57:62, 74:82] = True  # the beam catches only the tip: 1 mm, not shaft-like
    nd = tr.update(_labels_with(piece), 0.1, 0.15, confidence=0.8)
    assert nd["visible"] and abs(nd["tip_px"][0] - 80) < 6


def test_bad_needle_gate_settings_are_refused_by_name():
    from models.settings import SegmentationSettings

    with pytest.raises(ValueError, match="confirm_frames must be an integer >= 1"):
        NeedleTracker(confirm_frames=0)
    with pytest.raises(ValueError, match="min_elongation >= 1"):
        NeedleTracker(min_elongation=0.5)
    with pytest.raises(ValueError, match="filter must be one of alpha_beta, one_euro"):
        NeedleTracker(filter="kalman")
    with pytest.raises(ValueError, match="cutoff_hz must be > 0"):
        NeedleTracker(cutoff_hz=0.0)
    with pytest.raises(ValueError, match="segmentation.needle_cutoff_hz must be a number"):
        SegmentationSettings(needle_cutoff_hz=-1.0)
    with pytest.raises(ValueError, match="segmentation.needle_confirm_frames must be an integer"):
        SegmentationSettings(needle_confirm_frames=2.5)
    with pytest.raises(ValueError, match="segmentation.needle_min_confidence must be a number"):
        SegmentationSettings(needle_min_confidence=1.5)


def test_the_shipped_model_needle_is_confirmed_only_after_three_frames():
    """The real model on a simulated frame with a needle, three times: shown on the third."""
    from models.segmenter import Segmenter
    from models.settings import SegmentationSettings
    from models.simulator import simulate_frame

    seg = Segmenter(SegmentationSettings()).load()
    f = next(f for f in (simulate_frame(s) for s in range(40))
             if f.needle["visible"] and f.needle["tip_px"] is not None)
    out = seg.segment(f.image)
    tr = NeedleTracker()
    seen = [tr.update(out.labels, f.spacing_mm, k * 0.05, out.confidence[NEEDLE]) for k in range(3)]
    assert [nd["visible"] for nd in seen] == [False, False, True]
    tip = seen[-1]["tip_px"]
    assert math.hypot(tip[0] - f.needle["tip_px"][0], tip[1] - f.needle["tip_px"][1]) * f.spacing_mm < 2.0


def test_a_needle_entering_through_a_side_border_needs_only_a_stub():
    """A needle that comes into view through the side of the image shows only a stub: the
    rest of its shaft is outside. A 2.2 mm stub (elongation about 2.4) reaching the border is
    shaft-like; the same stub inside the image, a speck, is not."""
    tr = NeedleTracker()
    stub = shaft((200, 200), (0, 40), (20, 50), width=8)  # 22 px at 0.1 mm/px
    from models.needle import needle_shape
    s = needle_shape(stub)
    assert s.at_border and 2.0 <= s.elongation < 3.0
    assert tr.looks_like_a_shaft(s, 0.1, 0.93)
    inside = np.roll(stub, 60, axis=1)
    s_in = needle_shape(inside)
    assert not s_in.at_border and not tr.looks_like_a_shaft(s_in, 0.1, 0.93)
    seen = [tr.update(_labels_with(shaft((200, 200), (0, 40), (20 + 3 * k, 50 + 2 * k), 8)),
                      0.1, k * 0.05, confidence=0.93)["visible"] for k in range(4)]
    assert seen == [False, False, True, True]
    # a speck at the border is still no shaft: half the length is still needed
    speck = np.zeros((200, 200), bool)
    speck[100:104, 0:8] = True  # 0.8 mm
    assert not tr.looks_like_a_shaft(needle_shape(speck, min_pixels=10), 0.1, 0.93)
