"""The shipped ONNX segmentation model through models.segmenter (onnxruntime only)."""
import json
import logging

import numpy as np
import pytest

from models.classes import CLASS_INDEX, CLASSES
from models.needle import needle_tip_from_mask
from models.segmenter import (DEFAULT_MODEL, ModelIntegrityError, Segmenter, int8_weights_for,
                              probs_to_output, validate_image, weights_file)
from models.settings import SegmentationSettings
from models.simulator import NeedleParams, SimParams, simulate_frame
from conftest import copy_shipped_model

VESSEL = CLASS_INDEX["vessel"]
NEEDLE = CLASS_INDEX["needle"]


@pytest.fixture(scope="module")
def seg():
    return Segmenter(SegmentationSettings()).load()


def test_shipped_model_and_manifest_agree(seg):
    m = seg.manifest
    assert DEFAULT_MODEL.exists()
    assert m["classes"] == list(CLASSES)
    assert m["input"]["shape"][:2] == [1, 1]
    assert "not for clinical use" in m["intended_use"]
    assert {d["licence"] for d in m["data"]} >= {"CC-BY 4.0", "Apache-2.0"}


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_finds_the_artery_where_the_simulator_put_it(seg, seed):
    # frames the model never saw (training used another random stream), no needle
    f = simulate_frame(seed, SimParams(needle=None, depth_mm=35.0))
    out = seg.segment(f.image)
    assert out.labels.shape == f.image.shape
    truth = f.labels == VESSEL
    pred = out.labels == VESSEL
    assert pred.any(), "no vessel found"
    ys, xs = np.nonzero(pred)
    cx, cy = f.vessel["centre_px"]
    # the biggest predicted vessel blob is on the artery
    assert np.hypot(np.median(xs) - cx, np.median(ys) - cy) < f.vessel["radius_px"]
    dice = 2 * (truth & pred).sum() / (truth.sum() + pred.sum())
    assert dice > 0.5
    assert out.present[VESSEL] and out.confidence[VESSEL] > 0.5


def test_any_size_grey_or_bgr_gives_labels_at_frame_size(seg):
    f = simulate_frame(5, SimParams(size=(301, 417)))
    grey = seg.segment(f.image)
    bgr = seg.segment(np.repeat(f.image[..., None], 3, axis=2))
    assert grey.labels.shape == (301, 417) and grey.labels.dtype == np.uint8
    assert np.array_equal(grey.labels, bgr.labels)
    assert grey.classes == list(CLASSES)
    assert len(grey.confidence) == len(grey.present) == len(CLASSES)
    assert set(grey.timings_ms) >= {"pre", "predict", "post", "total"}
    for i, c in enumerate(grey.confidence):
        assert (c > 0) == bool((grey.labels == i).any()) or i == 0


@pytest.mark.parametrize("image,words", [
    (np.zeros((0, 10), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), "2 channels"),
    (np.zeros((10, 10, 5), np.uint8), "5 channels"),
    (np.zeros((5000, 20), np.uint8), "too large"),
    (np.zeros((10, 10), np.float32), "dtype"),
    (np.zeros((2, 10, 10, 3), np.uint8), "dimensions"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_bad_images_get_clear_errors(seg, image, words):
    with pytest.raises(ValueError, match=words):
        seg.segment(image)


def test_validate_image_accepts_bgra_and_single_channel():
    assert validate_image(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)
    assert validate_image(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5)


def test_post_process_rules():
    probs = np.zeros((len(CLASSES) - 1, 4, 4), np.float32)
    probs[CLASS_INDEX["nerve"] - 1, :2, :2] = 0.9  # nerve top-left
    probs[CLASS_INDEX["vessel"] - 1, :2, :2] = 0.7  # lower than nerve there
    probs[CLASS_INDEX["vessel"] - 1, 2:, 2:] = 0.6
    probs[CLASS_INDEX["fascia"] - 1, 2:, :2] = 0.4  # under the threshold: background
    out = probs_to_output(probs, (4, 4), min_area_frac=0.25)
    want = np.zeros((4, 4), np.uint8)
    want[:2, :2] = CLASS_INDEX["nerve"]
    want[2:, 2:] = CLASS_INDEX["vessel"]
    assert np.array_equal(out.labels, want)
    assert out.confidence[CLASS_INDEX["nerve"]] == pytest.approx(0.9)
    assert out.confidence[CLASS_INDEX["vessel"]] == pytest.approx(0.6)
    assert out.confidence[CLASS_INDEX["fascia"]] == 0.0
    assert out.present[CLASS_INDEX["nerve"]] and not out.present[CLASS_INDEX["fascia"]]
    with pytest.raises(ValueError, match="channels"):
        probs_to_output(probs[:3], (4, 4))


def test_changed_weights_are_refused(tmp_path):
    model = copy_shipped_model(tmp_path)
    Segmenter(SegmentationSettings(model_path=str(model))).load()  # intact: loads
    with open(model, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        Segmenter(SegmentationSettings(model_path=str(model))).load()


def test_a_changed_or_missing_u8_variant_is_refused_where_it_would_run(tmp_path):
    model = copy_shipped_model(tmp_path)
    u8 = tmp_path / json.loads(model.with_suffix(".json").read_text())["u8_variant"]["file"]
    with open(u8, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=u8.name):
        Segmenter(SegmentationSettings(model_path=str(model), int8_weights="u8")).load()
    u8.unlink()
    with pytest.raises(FileNotFoundError, match=u8.name):
        Segmenter(SegmentationSettings(model_path=str(model), int8_weights="u8")).load()
    # asked for the s8 weights, the variant is not needed
    s = Segmenter(SegmentationSettings(model_path=str(model), int8_weights="s8")).load()
    assert s.run_path == model and s.int8_weights == "s8"


@pytest.mark.parametrize("setting,machine,flags,want", [
    ("auto", "x86_64", {"avx2", "fma"}, "u8"),  # AVX2 without VNNI: u8 x s8 sums saturate
    ("auto", "x86_64", {"avx2", "avx512_vnni"}, "s8"),
    ("auto", "AMD64", {"avx_vnni"}, "s8"),
    ("auto", "x86_64", None, "u8"),  # flags unknown: the safe encoding
    ("auto", "aarch64", None, "s8"),
    ("auto", "arm64", {"asimddp"}, "s8"),
    ("s8", "x86_64", {"avx2"}, "s8"),
    ("u8", "aarch64", None, "u8"),
    ("s7", "x86_64", {"avx2"}, "s7"),  # only where the setting asks for it
    ("s7", "x86_64", {"avx512_vnni"}, "s7"),  # asked for: coarser and no faster there
    ("u8", "x86_64", {"avx2"}, "u8"),  # exact, slower
])
def test_int8_weights_are_chosen_by_the_cpu(setting, machine, flags, want):
    assert int8_weights_for(setting, machine, None if flags is None else frozenset(flags)) == want


def test_the_weights_file_falls_back_from_s7_to_u8_to_s8_and_says_so(tmp_path):
    model = tmp_path / "m.onnx"
    both = {"u8_variant": {"file": "m_u8.onnx"}, "s7_variant": {"file": "m_s7.onnx"}}
    assert weights_file(model, both, "s7") == ("s7", tmp_path / "m_s7.onnx", "")
    assert weights_file(model, both, "u8") == ("u8", tmp_path / "m_u8.onnx", "")
    assert weights_file(model, both, "s8") == ("s8", model, "")
    enc, path, warn = weights_file(model, {"u8_variant": {"file": "m_u8.onnx"}}, "s7")
    assert (enc, path) == ("u8", tmp_path / "m_u8.onnx") and "--s7-variant" in warn
    for manifest in ({}, {"s7_variant": {"file": "m_s7.onnx"}}):
        enc, path, warn = weights_file(model, manifest, "u8")
        assert (enc, path) == ("s8", model) and "saturate" in warn and "--u8-variant" in warn


def test_a_changed_or_missing_s7_variant_is_refused_where_it_would_run(tmp_path):
    model = copy_shipped_model(tmp_path)
    manifest = json.loads(model.with_suffix(".json").read_text())
    if "s7_variant" not in manifest:  # made by models.quantize --s7-variant (train extra)
        s7 = tmp_path / "m_s7.onnx"
        s7.write_bytes(model.read_bytes())
        manifest["s7_variant"] = {"file": s7.name, "sha256": "0" * 64}
        model.with_suffix(".json").write_text(json.dumps(manifest))
    else:
        s7 = tmp_path / manifest["s7_variant"]["file"]
        with open(s7, "ab") as f:
            f.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=s7.name):
        Segmenter(SegmentationSettings(model_path=str(model), int8_weights="s7")).load()
    s7.unlink()
    with pytest.raises(FileNotFoundError, match="s7 variant"):
        Segmenter(SegmentationSettings(model_path=str(model), int8_weights="s7")).load()
    # neither auto nor u8 asks for it
    s = Segmenter(SegmentationSettings(model_path=str(model), int8_weights="u8")).load()
    assert s.int8_weights == "u8"
    s = Segmenter(SegmentationSettings(model_path=str(model), int8_weights="auto")).load()
    assert s.int8_weights in ("s8", "u8")


def test_the_model_run_here_agrees_with_exact_int8_arithmetic():
    """Whatever the CPU, the shipped int8 model gives what its integers mean: onnxruntime with
    no graph optimisation runs each QDQ node as float (exact sums); the runtime's fused int8
    kernels must agree with it. With the s8 weights on an AVX2 CPU without VNNI (2026-12-05)
    the masks agreed at Dice 0.93 (nerve, vessel, fascia, pleura) and 0.925 (needle) on these
    frames; with the u8 weights at 0.988 and more."""
    import onnxruntime as ort

    from models.segmenter import pre_process_image
    seg = Segmenter().load()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(DEFAULT_MODEL), opts, providers=["CPUExecutionProvider"])
    needle = SimParams(needle=NeedleParams(entry_x_mm=4.0, angle_deg=30.0, length_mm=30.0))
    frames = [simulate_frame(s, needle if s % 2 else None).image for s in range(6)]
    xs = [pre_process_image(f, seg.input_hw) for f in frames]
    a = np.concatenate([exact.run(None, {"image": x})[0] for x in xs]) >= 0.5
    b = np.concatenate([seg.predict(x) for x in xs]) >= 0.5
    for c, name in enumerate(CLASSES[1:]):  # one output channel per class but background
        n = a[:, c].sum() + b[:, c].sum()
        if n > 200:
            dice = 2 * (a[:, c] & b[:, c]).sum() / n
            assert dice > 0.95, f"{name}: Dice {dice:.3f} against exact ({seg.run_path.name})"


def test_missing_model_fails_at_first_use_not_construction(tmp_path):
    s = Segmenter(SegmentationSettings(model_path=str(tmp_path / "none.onnx")))
    with pytest.raises(FileNotFoundError, match="none.onnx"):
        s.segment(np.zeros((20, 20), np.uint8))


def test_cuda_request_without_cuda_falls_back_to_cpu_with_a_warning(caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with caplog.at_level(logging.WARNING, logger="models.segmenter"):
        s = Segmenter(SegmentationSettings(provider="cuda")).load()
    assert s.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" in caplog.text


@pytest.mark.parametrize("seed,angle,length", [(11, 25.0, 32.0), (22, 35.0, 28.0),
                                               (33, 42.0, 24.0)])
def test_finds_the_needle_tip_where_the_simulator_put_it(seg, seed, angle, length):
    # frames from seeds the model never trained on, a clearly visible in-plane needle
    needle = NeedleParams(entry_x_mm=4.0, angle_deg=angle, length_mm=length, direction=1,
                          visibility=1.0)
    f = simulate_frame(seed, SimParams(needle=needle, depth_mm=40.0))
    assert f.needle["visible"]
    out = seg.segment(f.image)
    found = needle_tip_from_mask(out.labels == NEEDLE)
    assert found is not None, "no needle found"
    (px, py), _, found_angle = found
    tx, ty = f.needle["tip_px"]
    err_mm = float(np.hypot(px - tx, py - ty)) * f.spacing_mm
    assert err_mm < 2.0, f"tip {err_mm:.2f} mm from the simulator's"
    assert abs(found_angle - angle) < 5.0
    assert out.present[NEEDLE]
