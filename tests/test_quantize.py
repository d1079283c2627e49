"""models.quantize: int8 quantization of a trained model, its calibration set, and the
quantized model's agreement with the float one."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from models import quantize
from models.simulator import simulate_frame

ROOT = Path(__file__).resolve().parents[1]


def _data(tmp_path: Path, n_usgra: int = 12, n_dl: int = 41) -> Path:
    for folder, n, fmt in (("usgra_seg", n_usgra, "{:04d}.png"), ("dltrack_apo", n_dl, "img_{:05d}.png")):
        d = tmp_path / folder / "images"
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / fmt.format(i)), np.full((20, 30), i, np.uint8))
    return tmp_path


def test_calibration_images_take_every_fifth_and_twentieth_and_leave_out_a_folds_held_out(tmp_path):
    data = _data(tmp_path)
    names = [p.name for p in quantize.calibration_images(data)]
    assert names == ["0000.png", "0005.png", "0010.png",
                     "img_00000.png", "img_00020.png", "img_00040.png"]
    held = {"usgra_seg": {"0005.png", "0001.png"}, "dltrack_apo": {"img_00040.png"}}
    names = [p.name for p in quantize.calibration_images(data, held)]
    assert names == ["0000.png", "0010.png", "img_00000.png", "img_00020.png"]


def test_held_out_lists_come_from_the_fold_manifest_or_a_clear_error(tmp_path):
    fold = tmp_path / "fold1.onnx"
    fold.write_bytes(b"")
    with pytest.raises(ValueError, match="fold1.json.*held_out"):
        quantize.held_out_of(fold)
    fold.with_suffix(".json").write_text(json.dumps(
        {"held_out_usgra": ["0003.png"], "held_out_dltrack": ["img_00007.png"]}))
    assert quantize.held_out_of(fold) == {"usgra_seg": {"0003.png"}, "dltrack_apo": {"img_00007.png"}}


def test_a_missing_model_data_folder_or_fold_manifest_is_named(tmp_path, capsys):
    assert quantize.main(["--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "q.onnx"),
                          "--data", str(tmp_path)]) == 2
    assert "none.onnx" in capsys.readouterr().err
    model = tmp_path / "m.onnx"
    shutil.copy(ROOT / "models" / "pecs_seg.onnx", model)
    manifest = json.loads((ROOT / "models" / "pecs_seg.json").read_text())
    # the shipped model is quantized already: refused by name
    model.with_suffix(".json").write_text(json.dumps(manifest))
    out = tmp_path / "q.onnx"
    assert quantize.main(["--onnx", str(model), "--out", str(out), "--data", str(tmp_path)]) == 2
    assert "already quantized" in capsys.readouterr().err and not out.exists()
    manifest.pop("quantization", None)
    model.with_suffix(".json").write_text(json.dumps(manifest))
    assert quantize.main(["--onnx", str(model), "--out", str(out),
                          "--data", str(tmp_path / "nodata")]) == 2
    assert "nodata" in capsys.readouterr().err and not out.exists()
    assert quantize.main(["--onnx", str(model), "--out", str(out), "--data", str(_data(tmp_path)),
                          "--held-out-from", str(model)]) == 2
    assert "m.json" in capsys.readouterr().err and not out.exists()


def _float_copy(src: Path, dst: Path) -> None:
    """A float model from a QDQ one: the int8 weights (and int32 biases) dequantized into float
    initializers, each activation's QuantizeLinear -> DequantizeLinear pair replaced by the
    Clip to the range it can hold (the quantizer drops a Relu or Clip that range implies)."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(str(src))
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    nodes, weights = [], {}
    # the quantizer's own tensor names (..._DequantizeLinear_Output) would clash when this
    # model is quantized again: every tensor a removed node made gets a neutral name
    rename = {n.output[0]: f"dq{i}" for i, n in enumerate(g.node) if n.op_type == "DequantizeLinear"}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            q = inits[n.input[0]].astype(np.float32)
            scale = inits[n.input[1]].astype(np.float32)
            zero = inits[n.input[2]].astype(np.float32) if len(n.input) > 2 else np.float32(0)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim == 1 and q.ndim > 1:
                shape[axis] = -1
                scale, zero = scale.reshape(shape), np.reshape(zero, shape)
            weights[rename[n.output[0]]] = ((q - zero) * scale).astype(np.float32)
        elif n.op_type == "DequantizeLinear":
            q = producer[n.input[0]]
            assert q.op_type == "QuantizeLinear"
            scale, zero = inits[q.input[1]].astype(np.float32), inits[q.input[2]]
            info = np.iinfo(zero.dtype)
            lo, hi = (info.min - zero.astype(np.float32)) * scale, (info.max - zero.astype(np.float32)) * scale
            out = rename[n.output[0]]
            weights[out + "_lo"], weights[out + "_hi"] = lo, hi
            nodes.append(helper.make_node("Clip", [q.input[0], out + "_lo", out + "_hi"], [out]))
        elif n.op_type != "QuantizeLinear":
            nodes.append(n)
    for n in nodes:
        for i, x in enumerate(n.input):
            n.input[i] = rename.get(x, x)
    used = {x for n in nodes for x in n.input}
    keep = [numpy_helper.from_array(v, k) for k, v in list(inits.items()) + list(weights.items())
            if k in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def test_the_quantized_model_keeps_full_resolution_float_and_agrees_with_the_float_model(tmp_path):
    pytest.importorskip("onnx", reason="quantization needs the train extra (onnx)")
    import onnx
    import onnxruntime as ort

    from models.segmenter import pre_process_image
    # the shipped model is int8: its float twin (the same trained weights, dequantized)
    src = tmp_path / "m.onnx"
    _float_copy(ROOT / "models" / "pecs_seg.onnx", src)
    manifest = json.loads((ROOT / "models" / "pecs_seg.json").read_text())
    manifest.pop("quantization", None)
    manifest.pop("u8_variant", None)
    src.with_suffix(".json").write_text(json.dumps(manifest))
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(src)).graph.node}
    frames = [simulate_frame(s).image for s in range(6)]
    dst = tmp_path / "q.onnx"
    record = quantize.quantize(src, dst, frames)
    graph = onnx.load(str(dst)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # a kept convolution reads its float weights; every other one int8 weights through a
    # DequantizeLinear
    kept = set(record["kept_float"])
    inits = {i.name for i in graph.initializer}
    dq_out = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert any(n.name in kept for n in convs) and any(n.name not in kept for n in convs)
    for n in convs:
        assert (n.input[1] in inits) == (n.name in kept), n.name
        assert (n.input[1] in dq_out) == (n.name not in kept), n.name
    assert graph.node[-1].op_type == "Sigmoid" and graph.node[-1].name in kept
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    x = pre_process_image(simulate_frame(99).image, (192, 192))
    pa, pb = a.run(None, {"image": x})[0], b.run(None, {"image": x})[0]
    assert pb.shape == pa.shape and pb.dtype == np.float32
    # float head: probabilities are not on a 1/255 grid
    assert len(np.unique(pb)) > 1000
    ma, mb = pa >= 0.5, pb >= 0.5
    for c in (1, 3):  # vessel, pec_major: large on every PECS II frame
        agree = 2 * (ma[0, c] & mb[0, c]).sum() / (ma[0, c].sum() + mb[0, c].sum())
        assert agree > 0.9, c


def test_the_float_tail_runs_the_last_int8_convolution_in_float_with_its_int8_weights(
        tmp_path, capsys):
    """``--float-tail`` (measured, not shipped): the int8 convolution whose output only the
    full-resolution float nodes read runs in float, with the same (dequantized int8) weights
    and its output no longer re-quantized; nothing else changes, and the probabilities move
    by a rounding step, not more."""
    pytest.importorskip("onnx", reason="the float tail is made with the train extra (onnx)")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from models.segmenter import pre_process_image
    q0, q1 = ROOT / "models" / "pecs_seg.onnx", tmp_path / "q1.onnx"
    kept = json.loads(q0.with_suffix(".json").read_text())["quantization"]["kept_float"]
    assert quantize.float_tail(q0, q1, kept) == ["node_conv2d_37"]
    g0, g1 = onnx.load(str(q0)).graph, onnx.load(str(q1)).graph
    i0 = {i.name: numpy_helper.to_array(i) for i in g0.initializer}
    i1 = {i.name: numpy_helper.to_array(i) for i in g1.initializer}
    conv0 = next(n for n in g0.node if n.name == "node_conv2d_37")
    conv1 = next(n for n in g1.node if n.name == "node_conv2d_37")
    wdq = next(n for n in g0.node if n.output[0] == conv0.input[1])
    w8 = i0[wdq.input[0]].astype(np.float64)
    scale = i0[wdq.input[1]].astype(np.float64).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(i1[conv1.input[1]], w8 * scale, rtol=1e-6)
    assert i1[conv1.input[1]].dtype == np.float32
    assert not any(conv1.output[0] in n.input for n in g1.node if n.op_type == "QuantizeLinear")
    assert len(g0.node) - len(g1.node) == 4  # weight and bias DequantizeLinear, output Q/DQ
    # every other weight, bias, scale and zero point is as it was
    gone = {wdq.input[0]} | {n.input[0] for n in g0.node if n.output[0] == conv0.input[2]}
    assert all(np.array_equal(i0[k], i1[k]) for k in i0 if k in i1)
    assert not gone & i1.keys()
    # (exact arithmetic on any CPU: both through their u8 copies)
    u0, u1 = tmp_path / "u0.onnx", tmp_path / "u1.onnx"
    assert quantize.u8_variant(q0, u0) == 26 and quantize.u8_variant(q1, u1) == 25
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (u0, u1)]
    xs = [pre_process_image(simulate_frame(seed).image, (192, 192)) for seed in (60, 61, 62)]
    p0, p1 = (np.concatenate([s.run(None, {"image": x})[0] for x in xs]) for s in run)
    assert 0 < np.abs(p1 - p0).max() < 0.2
    a, b = p0 >= 0.5, p1 >= 0.5
    for c in range(a.shape[1]):
        n = a[:, c].sum() + b[:, c].sum()
        if n > 200:
            assert 2 * (a[:, c] & b[:, c]).sum() / n > 0.98, c
    # an unnamed reader cannot be told apart from any other unnamed node: never counted
    m = onnx.load(str(q0))
    next(n for n in m.graph.node if n.name == "node_upsample_bilinear2d_3").name = ""
    onnx.save(m, str(tmp_path / "anon.onnx"))
    assert quantize.float_tail(tmp_path / "anon.onnx", tmp_path / "anon2.onnx", kept + [""]) == []
    # nothing left to re-write once it ran: a clear error, the file untouched
    assert quantize.float_tail(q1, tmp_path / "q2.onnx", kept) == []
    shutil.copy(q0.with_suffix(".json"), q1.with_suffix(".json"))
    before = q1.read_bytes()
    assert quantize.main(["--float-tail", str(q1), "--data", str(_data(tmp_path / "data"))]) == 2
    assert "already re-written" in capsys.readouterr().err
    assert q1.read_bytes() == before
    # a model without a quantization record (a float one) is named in a clear error
    manifest = json.loads(q0.with_suffix(".json").read_text())
    manifest.pop("quantization")
    (tmp_path / "f.json").write_text(json.dumps(manifest))
    shutil.copy(q0, tmp_path / "f.onnx")
    assert quantize.main(["--float-tail", str(tmp_path / "f.onnx")]) == 2
    assert "f.onnx" in capsys.readouterr().err


def test_the_sim_figures_measured_through_onnxruntime_are_the_manifest_figures(tmp_path):
    """sim_metrics on the file the runtime runs here (the s8 model, or on an x86 CPU without
    VNNI its u8 variant) gives the manifest's figures, measured when it was made (on a CPU
    with VNNI). The s8 file on an AVX2 CPU without VNNI gave fascia 0.754 against 0.779,
    needle 0.771 against 0.827 (2026-12-05): its int8 sums saturate."""
    pytest.importorskip("torch", reason="models.train's evaluation needs torch")
    shipped = json.loads((ROOT / "models" / "pecs_seg.json").read_text())["metrics"]
    got = quantize.sim_metrics(quantize.runtime_file(ROOT / "models" / "pecs_seg.onnx"), tmp_path)
    assert got["real_cross_validation"] == "not run for this model"
    for part in ("simulated_held_out", "simulated_needle_held_out"):
        assert got[part]["frames"] == shipped[part]["frames"] == 60
        for cls in ("sim:vessel", "sim:fascia", "sim:needle"):
            assert got[part][cls]["n"] == shipped[part][cls]["n"]
            assert got[part][cls]["dice"] == pytest.approx(shipped[part][cls]["dice"], abs=0.01)
        assert got[part]["needle_tip"]["found"] == shipped[part]["needle_tip"]["found"]


def test_the_u8_variant_holds_the_same_weights_and_is_what_the_code_makes(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the u8 variant is made with the train extra (onnx)")
    import onnx
    from onnx import numpy_helper

    from models.segmenter import file_sha256
    for name in ("pecs_seg.onnx", "pecs_seg.json"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    model = tmp_path / "pecs_seg.onnx"
    assert quantize.main(["--u8-variant", str(model)]) == 0
    u8 = tmp_path / "pecs_seg_u8.onnx"
    record = json.loads(model.with_suffix(".json").read_text())["u8_variant"]
    assert record["file"] == u8.name and record["sha256"] == file_sha256(u8)
    assert record["weight_tensors"] == 26  # the dense convolutions; 11 depthwise stay int8
    # byte for byte the committed variant, and named as committed
    shipped = json.loads((ROOT / "models" / "pecs_seg.json").read_text())["u8_variant"]
    assert file_sha256(ROOT / "models" / shipped["file"]) == shipped["sha256"] == record["sha256"]

    def weights(path):
        g = onnx.load(str(path)).graph
        arr = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        out = {}
        for n in g.node:
            q = arr.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
            if q is None or q.dtype not in (np.int8, np.uint8):
                continue
            axis = next((x.i for x in n.attribute if x.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            zero = arr[n.input[2]].astype(np.int32).reshape(shape)
            out[n.input[0]] = (q.astype(np.int32) - zero, arr[n.input[1]])
        return out
    a, b = weights(model), weights(u8)
    assert a.keys() == b.keys() and len(a) == 37
    for k in a:  # (q - zero point) and scale: the same dequantized weights
        assert np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]), k
    n_u8 = sum(numpy_helper.to_array(i).dtype == np.uint8 and i.name in a
               for i in onnx.load(str(u8)).graph.initializer)
    assert n_u8 == 26
    # a float model has no int8 weights: a clear error, nothing written
    twin = tmp_path / "f.onnx"
    _float_copy(model, twin)
    shutil.copy(model.with_suffix(".json"), twin.with_suffix(".json"))
    assert quantize.main(["--u8-variant", str(twin)]) == 2
    assert "no int8 weights" in capsys.readouterr().err and not (tmp_path / "f_u8.onnx").exists()


def test_the_s7_variant_cannot_saturate_and_its_bias_correction_brings_it_nearer_exact(tmp_path, capsys):
    """7-bit weights: none over 64, so onnxruntime's u8 x s8 pair sums (16 bits on an x86
    CPU without VNNI) cannot saturate; the file then gives on this host exactly what its u8
    copy (computed in 32 bits) gives. The bias correction brings its probabilities nearer
    the exact model's than the re-scaled weights alone (on the shipped model, 4 SIM frames:
    mean error 0.00074-0.00114 against 0.00103-0.00143)."""
    pytest.importorskip("onnx", reason="the s7 variant is made with the train extra (onnx)")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from models.segmenter import file_sha256, pre_process_image
    for name in ("pecs_seg.onnx", "pecs_seg.json", "pecs_seg_u8.onnx"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    model = tmp_path / "pecs_seg.onnx"
    data = _data(tmp_path / "data")
    assert quantize.main(["--s7-variant", str(model), "--data", str(data)]) == 0
    assert "7-bit variant" in capsys.readouterr().out
    record = json.loads(model.with_suffix(".json").read_text())["s7_variant"]
    s7 = tmp_path / record["file"]
    assert record["sha256"] == file_sha256(s7)
    assert record["calibration_frames"] == 40 + 6  # SIM seeds + every 5th / 20th dummy image
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model)).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(s7)).graph.initializer}
    convs = quantize.dense_conv_weights(onnx.load(str(model)))
    assert record["weight_tensors"] == len(convs) == 26
    for _, wdq, _ in convs:
        w8, w7 = before[wdq.input[0]], after[wdq.input[0]]
        assert np.abs(w7.astype(int)).max() <= 64, wdq.input[0]
        small = np.abs(w8.astype(int)).reshape(len(w8), -1).max(1) <= 64
        assert np.array_equal(w8[small], w7[small])  # channels within 64 are untouched
    plain = tmp_path / "plain.onnx"
    quantize.s7_variant(model, plain, [], correct_bias=False)
    s7_u8 = tmp_path / "s7_u8.onnx"
    quantize.u8_variant(s7, s7_u8)
    run = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
           for k, p in {"exact": tmp_path / "pecs_seg_u8.onnx", "s7": s7, "s7_u8": s7_u8,
                        "plain": plain}.items()}
    xs = [pre_process_image(simulate_frame(seed).image, (192, 192)) for seed in (50, 51, 52)]
    p = {k: np.concatenate([s.run(None, {"image": x})[0] for x in xs]) for k, s in run.items()}
    np.testing.assert_allclose(p["s7"], p["s7_u8"], atol=1e-6)  # no saturated sums
    assert np.abs(p["s7"] - p["exact"]).mean() < np.abs(p["plain"] - p["exact"]).mean()
    a, b = p["exact"] >= 0.5, p["s7"] >= 0.5
    for c in range(a.shape[1]):  # one output channel per class but background
        n = a[:, c].sum() + b[:, c].sum()
        if n > 200:
            assert 2 * (a[:, c] & b[:, c]).sum() / n > 0.95, c
    # a float model has no int8 weights: a clear error
    assert quantize.main(["--s7-variant", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx" in capsys.readouterr().err
