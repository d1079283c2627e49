"""Run the same segmentation weights at another input size (no retraining).

    python -m models.input_size --size 176 MODEL.onnx --out DIR

The network is fully convolutional; what ties an exported graph to its input size is the
input and output shapes and the output sizes of its Resize nodes (the decoder's bilinear
upsampling, written by the exporter as fixed sizes). This re-writes those, scaled from the
graph's own input size to ``size``, for the model and for the weight variants its manifest
names (``u8_variant``, ``s7_variant``), and writes the manifest with the new shapes, files and
sha256s. The weights, thresholds, post-processing and confidence maps are left as they are:
whether they still hold at the new size is a measurement (models/MODEL_CARD.md, "A smaller
input"). ``size`` must be a multiple of the encoder's stride (16). Needs the ``train`` extra
(onnx); nothing here is used at run time.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ENCODER_STRIDE = 16


def graph_input_size(m) -> int:
    """The (square) input size of an NCHW graph ``m``."""
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] != dims[3] or dims[2] <= 0:
        raise ValueError(f"expected a square NCHW input with fixed sides, got {dims}")
    return dims[2]


def set_input_size(src: Path, dst: Path, size: int) -> int:
    """Write ``dst``: ``src`` with input size ``size`` (input and output H, W and every
    Resize node's output sizes scaled by size / the old size). Returns the number of Resize
    nodes changed. Raises ValueError where a size would not scale to whole pixels or a
    Resize uses scales instead of sizes."""
    import onnx
    from onnx import numpy_helper
    if size <= 0 or size % ENCODER_STRIDE:
        raise ValueError(f"input size {size} is not a positive multiple of {ENCODER_STRIDE}")
    m = onnx.load(str(src))
    old = graph_input_size(m)
    inits = {i.name: i for i in m.graph.initializer}
    changed = 0
    for n in m.graph.node:
        if n.op_type != "Resize":
            continue
        if len(n.input) < 4 or n.input[3] not in inits:
            raise ValueError(f"{src}: Resize node {n.name!r} has no constant output sizes")
        sizes = numpy_helper.to_array(inits[n.input[3]]).copy()
        for ax in (2, 3):
            if (int(sizes[ax]) * size) % old:
                raise ValueError(f"{src}: Resize node {n.name!r} size {int(sizes[ax])} does not "
                                 f"scale to whole pixels at input {size}")
            sizes[ax] = int(sizes[ax]) * size // old
        inits[n.input[3]].CopyFrom(numpy_helper.from_array(sizes, n.input[3]))
        changed += 1
    for v in (m.graph.input[0], m.graph.output[0]):
        dims = v.type.tensor_type.shape.dim
        dims[2].dim_value = dims[3].dim_value = size
    del m.graph.value_info[:]  # intermediate shapes at the old size would be stale
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return changed


def resize_model(model: Path, out_dir: Path, size: int) -> Path:
    """``model`` (with its manifest beside it) and its weight variants at input ``size`` in
    ``out_dir`` (same file names); returns the new model path."""
    from models.segmenter import file_sha256
    manifest = json.loads(model.with_suffix(".json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    new = copy.deepcopy(manifest)
    dst = out_dir / model.name
    if dst.resolve() == model.resolve():
        raise ValueError(f"{dst} is the input model: choose another --out")
    set_input_size(model, dst, size)
    new["sha256"] = file_sha256(dst)
    for key in ("u8_variant", "s7_variant"):
        if key in manifest:
            v_src = model.parent / manifest[key]["file"]
            v_dst = out_dir / manifest[key]["file"]
            set_input_size(v_src, v_dst, size)
            new[key]["sha256"] = file_sha256(v_dst)
    old = manifest["input"]["shape"][2]
    new["input"]["shape"] = [1, 1, size, size]
    new["output"]["shape"] = manifest["output"]["shape"][:2] + [size, size]
    pre = new.get("preprocessing")
    if isinstance(pre, dict) and "resize" in pre:
        pre["resize"] = pre["resize"].replace(f"{old}x{old}", f"{size}x{size}")
    new["input_size_change"] = {
        "from": old, "to": size,
        "note": "the same weights run at another input size (models.input_size): input, "
                "output and Resize sizes re-written; nothing retrained. The metrics, "
                "thresholds and confidence maps in this manifest were measured and chosen "
                f"at {old}x{old}, not at this size"}
    dst.with_suffix(".json").write_text(json.dumps(new, indent=1) + "\n")
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="ONNX model with its manifest (MODEL.json) beside it")
    ap.add_argument("--size", type=int, required=True, help="new input size (multiple of 16)")
    ap.add_argument("--out", required=True, help="folder for the re-written model and manifest")
    a = ap.parse_args(argv)
    model = Path(a.model)
    if not model.is_file() or not model.with_suffix(".json").is_file():
        print(f"error: {model} or its manifest {model.with_suffix('.json')} is missing",
              file=sys.stderr)
        return 2
    try:
        dst = resize_model(model, Path(a.out), a.size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {dst} (input {a.size}x{a.size}) and its manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
