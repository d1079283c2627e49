"""Calibrated segmentation confidence: the manifest's logistic map from the raw confidence
(mean winning probability) to the chance that the outline is good, and its use at run time."""
import json
import shutil

import numpy as np
import pytest

from models.classes import CLASS_INDEX, CLASSES
from models.segmenter import (DEFAULT_MODEL, Segmenter, calibrate_confidence, parse_calibration,
                              probs_to_output)
from models.settings import SegmentationSettings
from models.simulator import simulate_frame

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


@pytest.mark.parametrize("spec, message", [
    ([1, 2], "must be an object with a 'classes' object"),
    ({"classes": {"spleen": {"w": 1, "c": 0}}}, "unknown class 'spleen'"),
    ({"classes": {"nerve": {"w": 1}}}, "'nerve' needs numbers w and c"),
    ({"classes": {"nerve": {"w": "x", "c": 0}}}, "'nerve' needs numbers w and c"),
    ({"classes": {"nerve": {"w": -3, "c": 0}}}, "w must be a positive finite number"),
    ({"classes": {"nerve": {"w": float("nan"), "c": 0}}}, "w must be a positive finite number"),
])
def test_a_bad_calibration_is_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_calibration(spec)


def test_the_shipped_model_reports_calibrated_nerve_and_vessel_and_raw_fascia():
    seg = Segmenter(SegmentationSettings()).load()
    assert set(seg.calibration) == {"nerve", "vessel"}
    frame = simulate_frame(3).image
    probs = seg.predict(seg.pre_process(frame))
    raw = probs_to_output(probs, frame.shape, seg.classes, post=seg.post).confidence
    got = seg.segment(frame).confidence
    assert raw[VESSEL] > 0.5  # the simulator's vessel is found
    for i in (NERVE, VESSEL):
        w, c = seg.calibration[CLASSES[i]]
        want = 0.0 if raw[i] == 0 else 1 / (1 + np.exp(-(w * raw[i] + c)))
        assert got[i] == pytest.approx(want, abs=1e-6)
    assert got[FASCIA] == pytest.approx(raw[FASCIA], abs=1e-6)


def test_a_manifest_with_a_bad_calibration_does_not_load(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    manifest["confidence_calibration"]["classes"]["vessel"]["w"] = 0
    model.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'vessel': w must be a positive"):
        Segmenter(SegmentationSettings(model_path=str(model))).load()
