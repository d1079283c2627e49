"""Static int8 quantization of a trained segmentation model, for one-core speed.

    python -m models.quantize --onnx DIR/full.onnx --out DIR/full_int8.onnx [--data ../shared/data]
        [--held-out-from DIR/fold0.onnx]
    python -m models.quantize --u8-variant MODEL.onnx
    python -m models.quantize --s7-variant MODEL.onnx [--data ../shared/data] [--held-out-from FOLD.onnx]
    python -m models.quantize --float-tail MODEL.onnx [--data ../shared/data] [--held-out-from FOLD.onnx]

onnxruntime's static QDQ quantization: per-channel signed 8-bit weights, unsigned 8-bit
activations with MinMax ranges measured on calibration frames. Every node runs in int8 except
those whose output is at the full input resolution (the full-resolution branch and the head:
the probabilities keep float precision, and a one-channel 3x3 convolution is slower in int8
than in float). Calibration frames (ranges only, no labels): 40 simulated frames (seeds
1000-1039), every 5th image of ``usgra_seg/images`` and every 20th of ``dltrack_apo/images``;
``--held-out-from FOLD.onnx`` leaves out the images that fold model holds out (its manifest's
``held_out_usgra`` / ``held_out_dltrack``), so a cross-validation fold stays held out.
The manifest (OUT.json) is the input's with ``sha256``/``file`` updated, the SIM held-out
figures measured again on the quantized model (the float model's kept in the ``quantization``
record). Two other encodings of the int8 weights are written beside it and named in the
manifest, for x86 CPUs without VNNI, where onnxruntime adds pairs of u8 x s8 products in 16 bits
and saturates: ``u8_variant`` (the same values shifted to u8: exact, slower) and ``s7_variant``
(7-bit weights, biases corrected on the calibration frames: cannot saturate, as fast as int8,
not the same arithmetic; models/MODEL_CARD.md gives its figures). ``--float-tail MODEL``
(not part of quantizing; measured, not shipped: the model card's "A float tail") re-writes
an int8 model so that the int8 convolutions only the full-resolution nodes read run in float
(their int8 weights dequantized, their output not re-quantized): onnxruntime then runs the
full-resolution nodes in its NCHWc layout, 0.6-0.8 ms a frame less on one AVX2 core. Needs
the ``train`` extra (onnx); nothing here is used at run time: onnxruntime runs the quantized
model as it runs any other.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

SIM_SEEDS = range(1000, 1040)
USGRA_EVERY, DLTRACK_EVERY = 5, 20


def calibration_images(data: Path, held_out: dict[str, set[str]] | None = None) -> list[Path]:
    """The real calibration images (every 5th usgra, every 20th dltrack), less ``held_out``."""
    from models.data import list_images
    held_out = held_out or {}
    out = []
    for folder, every in (("usgra_seg", USGRA_EVERY), ("dltrack_apo", DLTRACK_EVERY)):
        files = list_images(data / folder / "images")[::every]
        out += [p for p in files if p.name not in held_out.get(folder, set())]
    return out


def calibration_frames(data: Path, held_out_from: str | None = None) -> tuple[list[np.ndarray], list[Path]]:
    """The calibration frames: the simulated seeds, then the real calibration images (less
    the images the fold model ``held_out_from`` holds out); and the real images' paths."""
    import cv2

    from models.simulator import simulate_frame
    held = held_out_of(Path(held_out_from)) if held_out_from else None
    paths = calibration_images(data, held)
    frames = [simulate_frame(s).image for s in SIM_SEEDS]
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"calibration image {str(p)!r} cannot be read")
        frames.append(img)
    return frames, paths


def held_out_of(fold_model: Path) -> dict[str, set[str]]:
    """The images a fold model holds out, from its manifest."""
    manifest = fold_model.with_suffix(".json")
    try:
        m = json.loads(manifest.read_text())
        return {"usgra_seg": set(m["held_out_usgra"]), "dltrack_apo": set(m["held_out_dltrack"])}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--held-out-from {str(fold_model)!r}: its manifest {str(manifest)!r} "
                         f"gives no held_out_usgra/held_out_dltrack lists ({e})") from None


def full_resolution_nodes(model_path: Path) -> list[str]:
    """Names of the nodes whose output has the input's height and width (kept float)."""
    import onnx
    from onnx import shape_inference
    m = shape_inference.infer_shapes(onnx.load(str(model_path)))
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    shapes = {v.name: dims(v) for v in list(m.graph.value_info) + list(m.graph.output)}
    in_hw = dims(m.graph.input[0])[-2:]
    return [n.name for n in m.graph.node if shapes.get(n.output[0], [])[-2:] == in_hw]


def quantize(src: Path, dst: Path, frames: list[np.ndarray]) -> dict:
    """Quantize ``src`` into ``dst`` calibrated on ``frames`` (uint8 images); the record."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from models.segmenter import pre_process_image
    manifest = json.loads(src.with_suffix(".json").read_text())
    name, hw = manifest["input"]["name"], tuple(manifest["input"]["shape"][-2:])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: pre_process_image(f, hw)} for f in frames])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        keep = full_resolution_nodes(pre)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=keep, extra_options={"ActivationSymmetric": False})
    return {"method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, "
                      "MinMax ranges", "kept_float": keep, "calibration_frames": len(frames)}


def graph_index(g) -> tuple[dict, dict, dict]:
    """An ONNX graph's initializers by name, the node producing each tensor, and the nodes
    reading each tensor."""
    users: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            users.setdefault(x, []).append(n)
    return ({i.name: i for i in g.initializer}, {o: n for n in g.node for o in n.output}, users)


FLOAT_TAIL_NOTE = ("the int8 convolutions whose output only the full-resolution float nodes "
                   "read run in float (their int8 weights dequantized, their output no longer "
                   "re-quantized), so onnxruntime runs the full-resolution tail in its NCHWc "
                   "layout: 0.6-0.8 ms less a frame on one AVX2 core (models/MODEL_CARD.md)")


def float_tail(src: Path, dst: Path, kept: list[str]) -> list[str]:
    """Write ``dst``: the QDQ model ``src`` with every int8 convolution whose re-quantized
    output is read only by the float nodes ``kept`` (the full-resolution ones) run in float:
    its weights and bias are the dequantized int8 values, and its output's
    QuantizeLinear -> DequantizeLinear pair is dropped. The same weights, one rounding fewer;
    onnxruntime then runs the float nodes after it in its NCHWc layout (a DequantizeLinear's
    output keeps them in NCHW). Returns the names of the convolutions changed (``src`` may
    be ``dst``)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(src))
    g = m.graph
    inits, producer, users = graph_index(g)
    kept_set = set(kept) - {""}  # an unnamed node cannot be told apart: never counted

    def dequantized(dq) -> np.ndarray:
        q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
        col = (-1,) + (1,) * (q.ndim - 1)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64).reshape(col)
        zero = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64).reshape(col)
                if len(dq.input) > 2 and dq.input[2] else 0.0)
        return ((q - zero) * scale).astype(np.float32)

    changed, drop = [], []
    for conv in list(g.node):
        if conv.op_type != "Conv" or len(conv.input) < 2:
            continue
        wdq = producer.get(conv.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        q = users.get(conv.output[0], [])
        if len(q) != 1 or q[0].op_type != "QuantizeLinear":
            continue
        dqs = users.get(q[0].output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        readers = users.get(dqs[0].output[0], [])
        if not readers or any(r.name not in kept_set for r in readers):
            continue
        bdq = producer.get(conv.input[2]) if len(conv.input) > 2 else None
        if bdq is None or bdq.op_type != "DequantizeLinear" or bdq.input[0] not in inits:
            bdq = None
        for i, dq in ((1, wdq), (2, bdq)):  # the weight and the bias, as their float values
            if dq is not None:
                name = conv.input[i] + "_float"
                g.initializer.append(numpy_helper.from_array(dequantized(dq), name))
                conv.input[i] = name
                drop.append(dq)
        drop += [q[0], dqs[0]]
        for r in readers:
            for i, x in enumerate(r.input):
                if x == dqs[0].output[0]:
                    r.input[i] = conv.output[0]
        changed.append(conv.name)
    for n in drop:
        g.node.remove(n)
    used = {x for n in g.node for x in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return changed


U8_NOTE = ("the dense convolutions' int8 weights shifted by 128 to uint8 (zero point 128), "
           "the same dequantized values: onnxruntime on an x86 CPU without VNNI adds u8 x s8 "
           "products in pairs in 16 bits and saturates, and computes u8 x u8 in 32 bits; run "
           "there instead of the s8 file (models.segmenter.int8_weights_for)")


def is_depthwise(node) -> bool:
    """An ONNX node that is a grouped (depthwise) convolution."""
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


def symmetric_int8(src: Path, inits: dict, dq) -> tuple[np.ndarray, np.ndarray]:
    """The int8 weights and zero points a weight DequantizeLinear ``dq`` of ``src`` reads,
    or a ValueError where they are not symmetric int8 (zero points all 0)."""
    from onnx import numpy_helper
    if len(dq.input) < 3 or dq.input[2] not in inits:
        raise ValueError(f"{src}: weight {dq.input[0]!r} has no zero-point initializer")
    w = numpy_helper.to_array(inits[dq.input[0]])
    z = numpy_helper.to_array(inits[dq.input[2]])
    if w.dtype != np.int8 or z.dtype != np.int8 or (z != 0).any():
        raise ValueError(f"{src}: weight {dq.input[0]!r} is not symmetric int8 (weights "
                         f"{w.dtype}, zero point {z.dtype} {z.ravel()[:4]})")
    return w, z


def u8_variant(src: Path, dst: Path) -> int:
    """Write ``dst``: ``src`` (a QDQ model) with the int8 weight tensors of its dense
    convolutions re-encoded as uint8 = int8 + 128 with zero point 128, which dequantizes to
    the same floats. Depthwise ones (``group`` > 1) stay int8: onnxruntime's depthwise kernel
    widens to 16 bits before it adds, and does not saturate (converting them too changed no
    mask on 30 SIM frames, and cost 0.5 ms on an AVX2 host). Returns the number of weight
    tensors changed."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(src))
    inits, _, users = graph_index(m.graph)

    done = set()
    for n in m.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.input[0] in done:
            continue
        if any(is_depthwise(u) for u in users.get(n.output[0], [])):
            continue
        if numpy_helper.to_array(inits[n.input[0]]).dtype != np.int8:
            continue
        w, z = symmetric_int8(src, inits, n)
        inits[n.input[0]].CopyFrom(numpy_helper.from_array(
            (w.astype(np.int16) + 128).astype(np.uint8), n.input[0]))
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(
            np.full(z.shape, 128, np.uint8), n.input[2]))
        done.add(n.input[0])
    if not done:
        raise ValueError(f"{src}: no int8 weights to re-encode (is it quantized?)")
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return len(done)


S7_LIMIT = 64  # 2 * 255 * 64 = 32640: a pair of u8 x s8 products cannot pass 32767
S7_NOTE = ("the dense convolutions' int8 weights re-scaled per output channel so that none "
           f"exceeds {S7_LIMIT} in size (channels already within it unchanged), each bias "
           "corrected by the mean change the coarser weights make on the calibration frames: "
           "onnxruntime's u8 x s8 pair sums cannot saturate on an x86 CPU without VNNI, at "
           "the s8 file's speed; not the same arithmetic as the s8 file (measured: model card)")


def dense_conv_weights(m) -> list[tuple]:
    """(conv, weight DequantizeLinear, bias DequantizeLinear or None) of every dense
    (``group`` 1) convolution of the QDQ model ``m`` whose weights are int8 initializers."""
    from onnx import numpy_helper
    inits, producer, _ = graph_index(m.graph)
    out = []
    for n in m.graph.node:
        if n.op_type != "Conv" or is_depthwise(n):
            continue
        wdq = producer.get(n.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue  # a float convolution (the full-resolution nodes)
        if numpy_helper.to_array(inits[wdq.input[0]]).dtype != np.int8:
            continue
        bdq = producer.get(n.input[2]) if len(n.input) > 2 else None
        out.append((n, wdq, bdq if bdq is not None and bdq.op_type == "DequantizeLinear" else None))
    return out


def conv_input_means(model: Path, frames: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The mean over ``frames`` and over positions of each channel of the tensors ``names``
    (convolution inputs) of ``model``, run by onnxruntime on one thread."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from models.segmenter import pre_process_image
    m = onnx.load(str(model))
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    hw = tuple(inp.shape[-2:])
    sums = {name: np.zeros(0) for name in names}
    for f in frames:
        for name, o in zip(names, sess.run(names, {inp.name: pre_process_image(f, hw)})):
            mean = o.astype(np.float64).mean(axis=(0, 2, 3))
            sums[name] = mean if not sums[name].size else sums[name] + mean
    return {name: v / len(frames) for name, v in sums.items()}


def s7_variant(src: Path, dst: Path, frames: list[np.ndarray], correct_bias: bool = True) -> dict:
    """Write ``dst``: ``src`` (a QDQ model with int8 weights) with each dense convolution's
    output channels whose weights exceed ``S7_LIMIT`` in size re-scaled to it (rounded from
    the dequantized int8 values), and each bias corrected by the mean change in output:
    b' = b - sum over inputs and taps of (W' - W) * E[x], E[x] the mean input channel over
    ``frames`` (run exactly, through the u8 variant). onnxruntime's u8 x s8 kernel on an x86
    CPU without VNNI adds pairs of products in 16 bits; with weights within 64 those sums
    cannot saturate. ``correct_bias`` False: re-scaled weights only (to measure what the
    correction does). The record: weight tensors and channels changed."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    convs = dense_conv_weights(m)
    if not convs:
        raise ValueError(f"{src}: no int8 convolution weights to re-encode (is it quantized?)")
    means = {}
    if correct_bias:
        with tempfile.TemporaryDirectory() as tmp:
            exact = Path(tmp) / "u8.onnx"
            u8_variant(src, exact)
            means = conv_input_means(exact, frames, [n.input[0] for n, _, _ in convs])
    arr = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
    put = lambda name, a: inits[name].CopyFrom(numpy_helper.from_array(a, name))  # noqa: E731
    tensors = channels = 0
    for conv, wdq, bdq in convs:
        w8 = symmetric_int8(src, inits, wdq)[0].astype(np.int64)
        scale = arr(wdq.input[1]).astype(np.float64)
        if scale.ndim != 1 or w8.ndim != 4 or len(scale) != len(w8):
            raise ValueError(f"{src}: weight {wdq.input[0]!r} is not per-channel "
                             f"(scale shape {scale.shape})")
        peak = np.abs(w8).reshape(len(w8), -1).max(axis=1)
        if (peak <= S7_LIMIT).all():
            continue
        scale7 = scale * np.maximum(peak, S7_LIMIT) / S7_LIMIT
        col = (-1, 1, 1, 1)
        w = w8 * scale.reshape(col)
        w7 = np.clip(np.round(w / scale7.reshape(col)), -S7_LIMIT, S7_LIMIT)
        put(wdq.input[0], w7.astype(np.int8))
        put(wdq.input[1], scale7.astype(np.float32))
        tensors, channels = tensors + 1, channels + int((peak > S7_LIMIT).sum())
        if bdq is None:
            continue
        bias_scale = arr(bdq.input[1]).astype(np.float64)  # input scale x weight scale
        bias = arr(bdq.input[0]) * bias_scale
        if correct_bias:
            change = (w7 * scale7.reshape(col) - w).sum(axis=(2, 3))  # (out, in)
            bias = bias - change @ means[conv.input[0]]
        bias_scale7 = bias_scale / scale * scale7
        q = np.round(bias / bias_scale7)
        if not np.isfinite(q).all() or np.abs(q).max() >= 2 ** 31:
            raise ValueError(f"{src}: bias {bdq.input[0]!r} does not fit int32 after re-scaling")
        put(bdq.input[0], q.astype(np.int32))
        put(bdq.input[1], bias_scale7.astype(np.float32))
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return {"weight_tensors": tensors, "channels_rescaled": channels,
            "calibration_frames": len(frames)}


def s7_record(model: Path, frames: list[np.ndarray]) -> dict:
    """Write MODEL_s7.onnx beside ``model``; its manifest entry (``s7_variant``)."""
    from models.segmenter import file_sha256
    dst = model.with_name(model.stem + "_s7.onnx")
    record = s7_variant(model, dst, frames)
    return {"file": dst.name, "sha256": file_sha256(dst), **record, "note": S7_NOTE}


def u8_record(model: Path) -> dict:
    """Write MODEL_u8.onnx beside ``model``; its manifest entry (``u8_variant``)."""
    from models.segmenter import file_sha256
    dst = model.with_name(model.stem + "_u8.onnx")
    n = u8_variant(model, dst)
    return {"file": dst.name, "sha256": file_sha256(dst), "weight_tensors": n, "note": U8_NOTE}


def runtime_file(model: Path, manifest: dict | None = None) -> Path:
    """The file the runtime runs for ``model`` on this host (its u8 variant where
    models.segmenter.int8_weights_for says so); ``manifest``: the model's, if not on disk."""
    from models.segmenter import host_int8_weights, weights_file
    if manifest is None:
        manifest = json.loads(model.with_suffix(".json").read_text())
    return weights_file(model, manifest, host_int8_weights())[1]


def sim_metrics(model: Path, cache: Path) -> dict:
    """models.train's SIM held-out figures (seed 99999, and 88888 with a needle in every
    frame), measured on ``model`` through onnxruntime with the runtime's post-processing."""
    import onnxruntime as ort

    from models.segmenter import pre_process_image
    from models.train import evaluate, needle_test_set, sim_metrics_entries, sim_test_set
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    hw = tuple(inp.shape[-2:])
    probs_of = lambda image: sess.run(None, {inp.name: pre_process_image(image, hw)})[0][0]  # noqa: E731
    sim, needle = sim_test_set(60, cache), needle_test_set(60, cache)
    return {**sim_metrics_entries(evaluate(probs_of, sim, hw[0]), len(sim),
                                  evaluate(probs_of, needle, hw[0]), len(needle)),
            "real_cross_validation": "not run for this model"}


def _has_manifest(model: Path, flag: str) -> bool:
    """True if ``model`` exists with its manifest beside it; else says so on stderr."""
    if model.is_file() and model.with_suffix(".json").is_file():
        return True
    print(f"error: {flag} {str(model)!r}: no such model with a manifest beside it",
          file=sys.stderr)
    return False


def _float_tail_main(model: Path, a) -> int:
    """``--float-tail MODEL``: re-write it, its variants and manifest, all made in a
    temporary folder first, so a failure leaves the model as it was."""
    import shutil

    from models.segmenter import file_sha256
    if not _has_manifest(model, "--float-tail"):
        return 2
    mpath = model.with_suffix(".json")
    manifest = json.loads(mpath.read_text())
    record = manifest.get("quantization")
    if not record or not record.get("kept_float"):
        print(f"error: --float-tail {str(model)!r}: its manifest has no 'quantization' record "
              "with 'kept_float' (is it an int8 model made by models.quantize?)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / model.name
        try:
            frames, _ = calibration_frames(Path(a.data), a.held_out_from)
            tail = float_tail(model, work, record["kept_float"])
            if not tail:
                raise ValueError(f"{model}: no int8 convolution feeds only the float nodes "
                                 "(already re-written?)")
            record["float_tail"] = sorted(set(record.get("float_tail", [])) | set(tail))
            record["float_tail_note"] = FLOAT_TAIL_NOTE
            manifest["sha256"] = file_sha256(work)
            manifest["u8_variant"] = u8_record(work)
            manifest["s7_variant"] = s7_record(work, frames)
            cv = manifest.get("metrics", {}).get("real_cross_validation")
            manifest["metrics"] = sim_metrics(runtime_file(work, manifest), Path(a.cache))
            if isinstance(cv, dict):  # the recipe's cross-validation: its fold models
                manifest["metrics"]["real_cross_validation"] = cv
        except (OSError, ValueError) as e:
            print(f"error: --float-tail: {e}", file=sys.stderr)
            return 2
        for name in (work.name, manifest["u8_variant"]["file"], manifest["s7_variant"]["file"]):
            shutil.copyfile(work.parent / name, model.parent / name)
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{model}: {', '.join(tail)} now float; u8 and s7 variants and SIM figures made again")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", help="trained model (its manifest beside it)")
    ap.add_argument("--out", help="quantized model to write (and OUT.json, OUT_u8.onnx)")
    ap.add_argument("--u8-variant", metavar="MODEL",
                    help="only write MODEL_u8.onnx for an int8 MODEL and name it in its manifest")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
                    help="folder holding usgra_seg/ and dltrack_apo/ (default ../shared/data)")
    ap.add_argument("--held-out-from", default=None,
                    help="fold model whose held-out images are left out of the calibration")
    ap.add_argument("--cache", default="/tmp/seg_cache",
                    help="folder for simulated-frame caches (models.train's)")
    ap.add_argument("--s7-variant", metavar="MODEL",
                    help="only write MODEL_s7.onnx (7-bit weights) for an int8 MODEL and name it "
                         "in its manifest; its biases are corrected on the calibration frames "
                         "(--data, --held-out-from as for quantizing)")
    ap.add_argument("--float-tail", metavar="MODEL",
                    help="re-write an int8 MODEL quantized before the float tail existed: its "
                         "last int8 convolutions before the full-resolution nodes run in float; "
                         "its u8 and s7 variants, manifest and SIM figures are made again "
                         "(--data, --held-out-from, --cache as for quantizing)")
    a = ap.parse_args(argv)
    if a.float_tail:
        return _float_tail_main(Path(a.float_tail), a)
    if a.s7_variant:
        model = Path(a.s7_variant)
        if not _has_manifest(model, "--s7-variant"):
            return 2
        try:
            frames, _ = calibration_frames(Path(a.data), a.held_out_from)
            mpath = model.with_suffix(".json")
            manifest = json.loads(mpath.read_text())
            manifest["s7_variant"] = s7_record(model, frames)
        except (OSError, ValueError) as e:
            print(f"error: --s7-variant: {e}", file=sys.stderr)
            return 2
        mpath.write_text(json.dumps(manifest, indent=1) + "\n")
        r = manifest["s7_variant"]
        print(f"{model.parent / r['file']}: the 7-bit variant of {model.name} "
              f"({r['channels_rescaled']} channels of {r['weight_tensors']} convolutions re-scaled)")
        return 0
    if a.u8_variant:
        model = Path(a.u8_variant)
        if not _has_manifest(model, "--u8-variant"):
            return 2
        mpath = model.with_suffix(".json")
        manifest = json.loads(mpath.read_text())
        try:
            manifest["u8_variant"] = u8_record(model)
        except ValueError as e:
            print(f"error: --u8-variant: {e}", file=sys.stderr)
            return 2
        mpath.write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"{model.parent / manifest['u8_variant']['file']}: the u8 variant of {model.name}")
        return 0
    if not (a.onnx and a.out):
        ap.error("--onnx and --out are required (or --u8-variant MODEL)")
    from models.segmenter import file_sha256
    src, dst = Path(a.onnx), Path(a.out)
    if not _has_manifest(src, "--onnx"):
        return 2
    m = json.loads(src.with_suffix(".json").read_text())
    if "quantization" in m:
        print(f"error: --onnx {a.onnx!r} is already quantized (its manifest has a "
              f"'quantization' record); quantize the float model it came from", file=sys.stderr)
        return 2
    try:
        frames, paths = calibration_frames(Path(a.data), a.held_out_from)
    except (OSError, ValueError) as e:  # a fold manifest without its lists, a missing folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    dst.parent.mkdir(parents=True, exist_ok=True)
    record = quantize(src, dst, frames)
    record["real_images"] = len(paths)
    record["simulated_seeds"] = f"{SIM_SEEDS.start}-{SIM_SEEDS.stop - 1}"
    record["float_model_sha256"] = file_sha256(src)
    record["command"] = "python -m models.quantize " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.held_out_from:
        record["held_out_from"] = Path(a.held_out_from).name
    # the SIM held-out figures are the float model's: measure them again on this one
    record["float_model_metrics"] = m.get("metrics", {})
    m["file"], m["sha256"], m["quantization"] = dst.name, file_sha256(dst), record
    m["u8_variant"] = u8_record(dst)
    m["s7_variant"] = s7_record(dst, frames)
    # measured on the file this host runs (without VNNI the s8 file's sums saturate)
    m["metrics"] = sim_metrics(runtime_file(dst, m), Path(a.cache))
    dst.with_suffix(".json").write_text(json.dumps(m, indent=1))
    print(f"{dst}: {len(frames)} calibration frames ({len(paths)} real), "
          f"{len(record['kept_float'])} nodes kept float, sha256 {m['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
