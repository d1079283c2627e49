"""Needle guidance: geometry, spoken sentences, and danger alerts over sequences."""
from __future__ import annotations

import math

import numpy as np
import pytest

from assistant.blocks import default_presets, find_preset
from assistant.guidance import (compute_guidance, depth_sentence, number_words,
                                plane_polyline, target_sentence)
from assistant.logic import Speak, initial_state, reduce
from assistant.logic_settings import AssistantSettings
from assistant.messages import Frame, SegResult, needle_dict
from models.classes import CLASS_INDEX, CLASSES

PRESETS = default_presets()
PECS2 = find_preset(PRESETS, "pecs2")
AXILLARY = find_preset(PRESETS, "axillary")


def pecs_labels(h=200, w=200, pleura_row=170) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[30:60] = CLASS_INDEX["pec_major"]
    lab[60:100] = CLASS_INDEX["pec_minor"]
    lab[100:140] = CLASS_INDEX["serratus"]
    lab[pleura_row:pleura_row + 6] = CLASS_INDEX["pleura"]
    return lab


@pytest.mark.parametrize("n,words", [(0, "zero"), (7, "seven"), (13, "thirteen"),
                                     (18, "eighteen"), (20, "twenty"), (42, "forty two"),
                                     (99, "ninety nine"), (100, "one hundred"),
                                     (105, "one hundred and five"), (2.6, "three"),
                                     (-3, "minus three")])
def test_number_words(n, words):
    assert number_words(n) == words


def test_plane_polyline_follows_a_sloping_boundary():
    lab = np.zeros((100, 120), np.uint8)
    for x in range(120):
        b = 40 + x // 4  # boundary slopes down to the right
        lab[10:b, x] = CLASS_INDEX["pec_minor"]
        lab[b:90, x] = CLASS_INDEX["serratus"]
    pts = plane_polyline(lab, CLASS_INDEX["pec_minor"], CLASS_INDEX["serratus"])
    assert len(pts) == 15
    for x, y in pts:
        assert abs(y - (40 + x // 4 - 0.5)) <= 1


def test_plane_polyline_ignores_classes_far_apart_or_in_the_wrong_order():
    lab = np.zeros((100, 50), np.uint8)
    lab[60:80] = CLASS_INDEX["pec_minor"]  # upper class below the lower one
    lab[10:30] = CLASS_INDEX["serratus"]
    assert plane_polyline(lab, CLASS_INDEX["pec_minor"], CLASS_INDEX["serratus"]) == []
    lab = np.zeros((100, 50), np.uint8)
    lab[5:10] = CLASS_INDEX["pec_minor"]
    lab[80:90] = CLASS_INDEX["serratus"]  # 70 px apart: not one plane
    assert plane_polyline(lab, CLASS_INDEX["pec_minor"], CLASS_INDEX["serratus"]) == []


def test_guidance_plane_block_signs_and_danger():
    lab = pecs_labels()
    above = compute_guidance(needle_dict(True, [100, 80], None, 35, 8.0), lab, PECS2, 0.1)
    assert above["to_target_mm"] == pytest.approx(2.0, abs=0.1)  # plane at y = 99.5
    assert above["depth_mm"] == 8.0 and above["angle_deg"] == 35
    assert above["nearest_danger"] == {"name": "pleura", "distance_mm": pytest.approx(9.0)}
    below = compute_guidance(needle_dict(True, [100, 120], None, 35, 12.0), lab, PECS2, 0.1)
    assert below["to_target_mm"] == pytest.approx(-2.0, abs=0.1)
    assert depth_sentence(above, PECS2) == "depth eight millimetres, two above the plane"
    assert depth_sentence(below, PECS2) == "depth twelve millimetres, two below the plane"
    assert target_sentence(above, PECS2) == ("the plane between pec minor and serratus, "
                                             "ten millimetres deep, two below the tip")
    hidden = compute_guidance(needle_dict(False), lab, PECS2, 0.1)
    assert depth_sentence(hidden, PECS2) == "needle not seen"
    assert "to_target_mm" not in hidden and "target_plane_px" in hidden


def test_guidance_nerve_block_and_artery():
    lab = np.zeros((200, 200), np.uint8)
    yy, xx = np.mgrid[:200, :200]
    lab[(xx - 120) ** 2 + (yy - 100) ** 2 <= 15 ** 2] = CLASS_INDEX["nerve"]
    lab[(xx - 60) ** 2 + (yy - 100) ** 2 <= 20 ** 2] = CLASS_INDEX["vessel"]
    g = compute_guidance(needle_dict(True, [120, 60], None, 30, 6.0), lab, AXILLARY, 0.1)
    assert g["to_target_mm"] == pytest.approx(2.5, abs=0.15)  # 25 px above the nerve
    assert g["nearest_danger"]["name"] == "artery"
    d = math.hypot(60, 40) - 20
    assert g["nearest_danger"]["distance_mm"] == pytest.approx(d * 0.1, abs=0.15)
    inside = compute_guidance(needle_dict(True, [120, 100], None, 30, 10.0), lab, AXILLARY, 0.1)
    assert inside["to_target_mm"] == 0.0
    assert depth_sentence(inside, AXILLARY) == "depth ten millimetres, at the nerve"


def test_spacing_comes_from_the_tracker_when_no_frame_spacing():
    lab = pecs_labels()
    g = compute_guidance(needle_dict(True, [100, 80], [20.0, 16.0], 35, 16.0), lab, PECS2, None)
    assert g["spacing_mm"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="spacing_mm must be > 0"):
        compute_guidance(needle_dict(True, [100, 80]), lab, PECS2, 0.0)


def _first_alert(state, sequence):
    """Feed (now, SegResult) pairs; return (index, text) of the first pleura alert."""
    for i, (t, msg) in enumerate(sequence):
        state, acts = reduce(state, msg, None, t)
        for a in acts:
            if isinstance(a, Speak) and a.priority == "alert" and "pleura" in a.text:
                return i, a.text
    return None, None


def test_synthetic_needle_towards_pleura_alerts_before_reaching_it():
    """A tip moving 1 px (0.1 mm) per frame straight down towards a pleura band."""
    settings = AssistantSettings(pleura_alert_mm=5.0)
    lab = pecs_labels(h=220, pleura_row=180)
    seq = []
    tips = list(range(40, 180))
    for i, y in enumerate(tips):
        nd = needle_dict(True, [100, y], None, 60, y * 0.1)
        seq.append((i * 0.05, SegResult(frame_id=i, media_time_s=i * 0.05, frame_t_mono=0,
                                        labels=lab, classes=list(CLASSES),
                                        confidence=[1.0] * 10, present=[True] * 10,
                                        needle=nd)))
    state = initial_state(settings)
    state, _ = reduce(state, Frame(frame_id=0, media_time_s=0, image=np.zeros((220, 200),
                                                                              np.uint8),
                                   spacing_mm=0.1, depth_mm=22.0), None, 0)
    i, text = _first_alert(state, seq)
    assert i is not None, "no pleura alert"
    tip_y = tips[i]
    dist_mm = (180 - tip_y) * 0.1
    assert 4.5 < dist_mm <= 5.0  # raised as soon as within 5 mm, long before contact
    assert text == "stop, pleura five millimetres"


def test_alert_is_spoken_once_and_rearms_after_withdrawal():
    # the hysteresis alone (the repeat time has its own test in test_logic.py)
    settings = AssistantSettings(pleura_alert_mm=5.0, danger_rearm_factor=1.5,
                                 danger_repeat_s=0.0)
    lab = pecs_labels(h=220, pleura_row=180)
    state = initial_state(settings)
    said = []
    # in (3 mm), stay, out to 6 mm (not re-armed), out to 9 mm (re-armed), in again
    for i, y in enumerate([100, 150, 152, 151, 120, 90, 150]):
        nd = needle_dict(True, [100, y], None, 60, y * 0.1)
        msg = SegResult(frame_id=i, media_time_s=0, frame_t_mono=0, labels=lab,
                        classes=list(CLASSES), confidence=[1.0] * 10, present=[True] * 10,
                        needle=nd)
        state, acts = reduce(state, msg, None, i * 0.1)
        assert state.guidance["spacing_mm"] is None
        said.append([a.text for a in acts if isinstance(a, Speak) and a.priority == "alert"])
    # no spacing known at all (no Frame, no tip_mm): no distances in mm, so no alerts
    assert all(not s for s in said)
    state = initial_state(settings)
    said = []
    for i, y in enumerate([100, 150, 152, 151, 120, 90, 150]):
        nd = needle_dict(True, [100, y], [10.0, y * 0.1], 60, y * 0.1)
        msg = SegResult(frame_id=i, media_time_s=0, frame_t_mono=0, labels=lab,
                        classes=list(CLASSES), confidence=[1.0] * 10, present=[True] * 10,
                        needle=nd)
        state, acts = reduce(state, msg, None, i * 0.1)
        said.append(len([a for a in acts if isinstance(a, Speak) and a.priority == "alert"]))
    assert said == [0, 1, 0, 0, 0, 0, 1]


def _simulated_approach(size=(271, 281), depth_mm=40.0, seed=3):
    """A fixed simulated PECS II patient and an in-plane needle path that ends just
    above the pleura between two ribs, avoiding bone on the way."""
    from models.simulator import NeedleParams, SimParams, sample_anatomy, simulate_frame

    anatomy = sample_anatomy(np.random.default_rng(seed))
    base = simulate_frame(seed, SimParams(size=size, needle=None, anatomy=anatomy,
                                          probe_x_mm=0.0, depth_mm=depth_mm))
    lab, sp = base.labels, base.spacing_mm
    pleura, bone = CLASS_INDEX["pleura"], CLASS_INDEX["bone"]
    h, w = lab.shape
    for x in range(w // 10, w - w // 10, 4):
        col = lab[:, x]
        rows = np.flatnonzero(col == pleura)
        if not rows.size or (col[: rows[0]] == bone).any():
            continue
        goal = (x * sp, (rows[0] - 4) * sp)  # tip stops ~4 px above the pleura
        for angle in (45, 35, 55, 60):
            for direction in (1, -1):
                a = math.radians(angle)
                length = goal[1] / math.sin(a)
                entry = goal[0] - direction * length * math.cos(a)
                u = np.linspace(0.2, 1.0, 200)
                xs = ((entry + direction * u * length * math.cos(a)) / sp).astype(int)
                ys = ((u * length * math.sin(a)) / sp).astype(int)
                ok = (xs >= 0) & (xs < w) & (ys < h)
                if ok.sum() < 150 or (lab[ys[ok], xs[ok]] == bone).any():
                    continue
                return (anatomy, base, NeedleParams(entry_x_mm=entry, angle_deg=angle,
                                                    length_mm=length, direction=direction))
    pytest.skip("simulated patient has no bone-free path to the pleura")


def test_simulated_needle_approaching_pleura_alerts_before_reaching_it():
    """models.simulator frames (labels as the segmentation), the real NeedleTracker."""
    import dataclasses

    from models.needle import NeedleTracker
    from models.simulator import SimParams, simulate_frame

    anatomy, base, final = _simulated_approach()
    sp = base.spacing_mm
    pleura_px = np.argwhere(base.labels == CLASS_INDEX["pleura"])
    settings = AssistantSettings(pleura_alert_mm=5.0)
    state = initial_state(settings)
    tracker = NeedleTracker()
    n = 14
    alert_at = None
    true_dist = []
    for k in range(n):
        frac = 0.45 + 0.55 * k / (n - 1)
        needle = dataclasses.replace(final, length_mm=final.length_mm * frac)
        f = simulate_frame(100 + k, SimParams(size=base.labels.shape, needle=needle,
                                              anatomy=anatomy, probe_x_mm=0.0,
                                              depth_mm=base.depth_mm))
        tx, ty = needle.tip_mm()
        d = float(np.min(np.hypot(pleura_px[:, 1] * sp - tx, pleura_px[:, 0] * sp - ty)))
        true_dist.append(d)
        t = k * 0.1
        nd = tracker.update(f.labels, sp, t)
        state, _ = reduce(state, Frame(frame_id=k, media_time_s=t, image=f.image,
                                       spacing_mm=sp, depth_mm=f.depth_mm), None, t)
        state, acts = reduce(state, SegResult(
            frame_id=k, media_time_s=t, frame_t_mono=0.0, labels=f.labels,
            classes=list(CLASSES), confidence=[1.0] * len(CLASSES),
            present=[True] * len(CLASSES), needle=nd), None, t + 0.01)
        if alert_at is None and any(isinstance(a, Speak) and a.priority == "alert"
                                    and "pleura" in a.text for a in acts):
            alert_at = k
    assert true_dist[0] > 8.0, "the path should start well away from the pleura"
    assert alert_at is not None, f"no pleura alert; true distances {true_dist}"
    assert alert_at < n - 1, "the alert must come before the final (closest) frame"
    assert true_dist[alert_at] > 0.5, "raised before the tip reached the pleura"
    assert true_dist[alert_at] <= 5.0 + 2.0  # not a false alarm from far away


def test_distance_to_class_matches_brute_force():
    from assistant.guidance import distance_to_class_px

    rng = np.random.default_rng(5)
    for _ in range(30):
        lab = np.zeros((150, 170), np.uint8)
        for _ in range(rng.integers(1, 4)):
            x, y = rng.integers(0, 170), rng.integers(0, 150)
            lab[y: y + rng.integers(1, 20), x: x + rng.integers(1, 20)] = 8
        tip = (float(rng.uniform(-10, 180)), float(rng.uniform(-10, 160)))
        ys, xs = np.nonzero(lab == 8)
        brute = float(np.sqrt(np.min((xs - tip[0]) ** 2 + (ys - tip[1]) ** 2)))
        assert distance_to_class_px(lab, 8, tip, window_px=16) == pytest.approx(brute)
    assert distance_to_class_px(np.zeros((10, 10), np.uint8), 8, (5, 5)) is None
