"""Calibrated segmentation confidence: the manifest's logistic map from the raw confidence
(mean winning probability) and/or the area of a class's outline to the chance that the
outline is good, and its use at run time."""

import numpy as np
import pytest

from models.classes import CLASS_INDEX, CLASSES
from models.segmenter import (Segmenter, calibrate_confidence, parse_calibration,
                              probs_to_output)
from models.settings import SegmentationSettings
from models.simulator import simulate_frame
from conftest import copy_shipped_model

NERVE, VESSEL, FASCIA = CLASS_INDEX["nerve"], CLASS_INDEX["vessel"], CLASS_INDEX["fascia"]
SPEC = {"classes": {"vessel": {"w": 40.0, "c": -36.0}}}  # 0.5 at raw 0.9


def test_the_map_keeps_order_halves_at_its_midpoint_and_leaves_the_rest_alone():
    cal = parse_calibration(SPEC)
    raw = [0.0] * len(CLASSES)
    raw[NERVE], raw[FASCIA] = 0.7, 0.8
    got = []
    for v in (0.6, 0.85, 0.9, 0.95):
        raw[VESSEL] = v
        out = calibrate_confidence(raw, CLASSES, cal)
        assert out[NERVE] == 0.7 and out[FASCIA] == 0.8  # not calibrated: as given
        got.append(out[VESSEL])
    assert got == sorted(got) and got[2] == pytest.approx(0.5)
    assert got[0] < 0.01 and got[3] > 0.85
    raw[VESSEL] = 0.0  # absent stays absent (0), not sigmoid(c)
    assert calibrate_confidence(raw, CLASSES, cal)[VESSEL] == 0.0


def test_an_area_map_grows_with_the_area_and_ignores_the_raw_confidence():
    # fascia: 0.5 at 1 % of the frame (log10 = -2), whatever its mean probability
    cal = parse_calibration({"classes": {"fascia": {"w_log_area": 8.0, "c": 16.0}}})
    raw = [0.0] * len(CLASSES)
    area = [0.0] * len(CLASSES)
    got = []
    for a in (0.001, 0.01, 0.05):
        area[FASCIA] = a
        for r in (0.45, 0.95):
            raw[FASCIA] = r
            got.append(calibrate_confidence(raw, CLASSES, cal, area)[FASCIA])
    assert got[0] == got[1] and got[2] == got[3] and got[4] == got[5]
    assert got[0] < 0.001 and got[2] == pytest.approx(0.5) and got[4] > 0.99
    with pytest.raises(ValueError, match="'fascia' needs the area fractions"):
        calibrate_confidence(raw, CLASSES, cal)


@pytest.mark.parametrize("spec, message", [
    ([1, 2], "must be an object with a 'classes' object"),
    ({"classes": {"spleen": {"w": 1, "c": 0}}}, "unknown class 'spleen'"),
    ({"classes": {"nerve": {"w": 1}}}, "'nerve' needs numbers c and w"),
    ({"classes": {"nerve": {"c": 1}}}, "'nerve' needs numbers c and w"),
    ({"classes": {"nerve": {"w": "x", "c": 0}}}, "'nerve' needs numbers c and w"),
    ({"classes": {"nerve": {"w": -3, "c": 0}}}, "must be finite, >= 0 and not both 0"),
    ({"classes": {"nerve": {"w": 1, "w_log_area": -1, "c": 0}}}, "must be finite, >= 0"),
    ({"classes": {"nerve": {"w": 0, "w_log_area": 0, "c": 0}}}, "not both 0"),
    ({"classes": {"nerve": {"w": float("nan"), "c": 0}}}, "must be finite"),
])
def test_a_bad_calibration_is_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_calibration(spec)


def test_the_shipped_model_calibrates_nerve_vessel_by_confidence_and_fascia_by_area():
    seg = Segmenter(SegmentationSettings()).load()
    assert set(seg.calibration) == {"nerve", "vessel", "fascia"}
    frame = simulate_frame(3).image
    probs = seg.predict(seg.pre_process(frame))
    ref = probs_to_output(probs, frame.shape, seg.classes, post=seg.post)
    raw = ref.confidence
    got = seg.segment(frame).confidence
    assert raw[VESSEL] > 0.5 and raw[FASCIA] > 0.4  # the simulator's vessel and fascia are found
    for i in (NERVE, VESSEL, FASCIA):
        w, a, c = seg.calibration[CLASSES[i]]
        area = (ref.labels == i).mean()
        assert ref.area_frac[i] == pytest.approx(area)
        z = w * raw[i] + a * np.log10(max(area, 1e-6)) + c
        want = 0.0 if raw[i] == 0 else 1 / (1 + np.exp(-z))
        assert got[i] == pytest.approx(want, abs=1e-6)
    assert seg.calibration["fascia"].w == 0 and seg.calibration["fascia"].w_log_area > 0
    # the simulated PECS II plane covers several per cent of the frame: a sure outline
    assert got[FASCIA] > 0.9
    # the output names the calibrated classes (the renderer marks the others unverified)
    assert seg.segment(frame).calibrated == ["nerve", "vessel", "fascia"]


def test_a_manifest_without_calibration_calibrates_nothing(tmp_path):
    model = copy_shipped_model(tmp_path, lambda m: m.pop("confidence_calibration"))
    seg = Segmenter(SegmentationSettings(model_path=str(model)))
    out = seg.segment(simulate_frame(3).image)
    assert out.calibrated == [] and seg.calibration == {}


def test_a_manifest_with_a_bad_calibration_does_not_load(tmp_path):
    def zero_w(manifest):
        manifest["confidence_calibration"]["classes"]["vessel"]["w"] = 0
    model = copy_shipped_model(tmp_path, zero_w)
    with pytest.raises(ValueError,
                       match="'vessel': w and w_log_area must be finite, >= 0 and not both 0"):
        Segmenter(SegmentationSettings(model_path=str(model))).load()
