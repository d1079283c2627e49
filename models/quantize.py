"""Static int8 quantization of a trained segmentation model, for one-core speed.

    python -m models.quantize --onnx DIR/full.onnx --out DIR/full_int8.onnx [--data ../shared/data]
        [--held-out-from DIR/fold0.onnx]

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
record). Needs the ``train`` extra (onnx); nothing here is used at run time: onnxruntime runs
the quantized model as it runs any other.
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


U8_NOTE = ("the dense convolutions' int8 weights shifted by 128 to uint8 (zero point 128), "
           "the same dequantized values: onnxruntime on an x86 CPU without VNNI adds u8 x s8 "
           "products in pairs in 16 bits and saturates, and computes u8 x u8 in 32 bits; run "
           "there instead of the s8 file (models.segmenter.int8_weights_for)")


def is_depthwise(node) -> bool:
    """An ONNX node that is a grouped (depthwise) convolution."""
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


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
    inits = {i.name: i for i in m.graph.initializer}
    users: dict[str, list] = {}
    for n in m.graph.node:
        for x in n.input:
            users.setdefault(x, []).append(n)

    done = set()
    for n in m.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.input[0] in done:
            continue
        if any(is_depthwise(u) for u in users.get(n.output[0], [])):
            continue
        w = numpy_helper.to_array(inits[n.input[0]])
        if w.dtype != np.int8:
            continue
        if len(n.input) < 3 or n.input[2] not in inits:
            raise ValueError(f"{src}: weight {n.input[0]!r} has no zero-point initializer")
        z = numpy_helper.to_array(inits[n.input[2]])
        if z.dtype != np.int8 or (z != 0).any():
            raise ValueError(f"{src}: weight {n.input[0]!r} is not symmetric int8 (zero point "
                             f"{z.dtype} {z.ravel()[:4]})")
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


def u8_record(model: Path) -> dict:
    """Write MODEL_u8.onnx beside ``model``; its manifest entry (``u8_variant``)."""
    from models.segmenter import file_sha256
    dst = model.with_name(model.stem + "_u8.onnx")
    n = u8_variant(model, dst)
    return {"file": dst.name, "sha256": file_sha256(dst), "weight_tensors": n, "note": U8_NOTE}


def runtime_file(model: Path, manifest: dict | None = None) -> Path:
    """The file the runtime runs for ``model`` on this host (its u8 variant where
    models.segmenter.int8_weights_for says so); ``manifest``: the model's, if not on disk."""
    from models.segmenter import host_int8_weights
    if manifest is None:
        manifest = json.loads(model.with_suffix(".json").read_text())
    variant = manifest.get("u8_variant")
    if variant and host_int8_weights() == "u8":
        return model.parent / variant["file"]
    return model


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
    a = ap.parse_args(argv)
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
    import cv2

    from models.segmenter import file_sha256
    from models.simulator import simulate_frame
    src, dst = Path(a.onnx), Path(a.out)
    if not _has_manifest(src, "--onnx"):
        return 2
    m = json.loads(src.with_suffix(".json").read_text())
    if "quantization" in m:
        print(f"error: --onnx {a.onnx!r} is already quantized (its manifest has a "
              f"'quantization' record); quantize the float model it came from", file=sys.stderr)
        return 2
    try:
        held = held_out_of(Path(a.held_out_from)) if a.held_out_from else None
        paths = calibration_images(Path(a.data), held)
    except (OSError, ValueError) as e:  # a fold manifest without its lists, a missing folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    frames = [simulate_frame(s).image for s in SIM_SEEDS]
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            print(f"error: calibration image {str(p)!r} cannot be read", file=sys.stderr)
            return 2
        frames.append(img)
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
    # measured on the file this host runs (without VNNI the s8 file's sums saturate)
    m["metrics"] = sim_metrics(runtime_file(dst, m), Path(a.cache))
    dst.with_suffix(".json").write_text(json.dumps(m, indent=1))
    print(f"{dst}: {len(frames)} calibration frames ({len(paths)} real), "
          f"{len(record['kept_float'])} nodes kept float, sha256 {m['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
