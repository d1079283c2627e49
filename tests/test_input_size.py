"""models.input_size: the shipped weights re-written for another input size run, give the
same output where the size is unchanged, and load through the runtime's integrity check."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from models import input_size  # noqa: E402
from models.segmenter import Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402
from models.simulator import simulate_frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
U8 = ROOT / "models" / "pecs_seg_u8.onnx"


def _run(path: Path, side: int) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 1, side, side), np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_a_smaller_input_runs_and_the_same_size_gives_the_same_output(tmp_path):
    small = tmp_path / "s.onnx"
    assert input_size.set_input_size(U8, small, 176) == 4  # the decoder's four upsamplings
    assert _run(small, 176).shape == (1, 9, 176, 176)
    same = tmp_path / "same.onnx"
    input_size.set_input_size(U8, same, 192)
    np.testing.assert_array_equal(_run(same, 192), _run(U8, 192))


def test_a_size_the_encoder_cannot_halve_four_times_is_refused(tmp_path):
    with pytest.raises(ValueError, match="200 is not a positive multiple of 16"):
        input_size.set_input_size(U8, tmp_path / "x.onnx", 200)
    assert input_size.main([str(tmp_path / "missing.onnx"), "--size", "208",
                            "--out", str(tmp_path)]) == 2


def test_the_rewritten_model_and_its_manifest_load_and_segment_at_the_new_size(tmp_path):
    dst = input_size.resize_model(ROOT / "models" / "pecs_seg.onnx", tmp_path / "m", 208)
    manifest = json.loads(dst.with_suffix(".json").read_text())
    assert manifest["input"]["shape"] == [1, 1, 208, 208]
    assert manifest["input_size_change"]["from"] == 192
    frame = simulate_frame(7).image
    for weights in ("u8", "s8"):
        ref = Segmenter(SegmentationSettings(int8_weights=weights)).segment(frame).labels
        seg = Segmenter(SegmentationSettings(model_path=str(dst), int8_weights=weights)).load()
        assert seg.input_hw == (208, 208)
        labels = seg.segment(frame).labels
        # the same weights at a slightly larger scale: mostly the same labels, not identical
        assert labels.shape == frame.shape[:2]
        assert 0.8 < (labels == ref).mean() < 1.0
