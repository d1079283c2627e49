"""Would an int8 model's sums saturate on an x86 CPU without VNNI? Layer by layer, on frames.

    .venv-train/bin/python benchmarks/int8_saturation.py [--model models/pecs_seg.onnx]
        [--data ../shared/data] [--sim 30] [--usgra-every 2] [--dltrack-every 4]

Without VNNI, onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW,
which adds the products of two neighbouring input channels (of one kernel tap) in a signed
16-bit lane that saturates at +-32767 (model card, "On an x86 CPU without VNNI"). This
script runs the model exactly (onnxruntime with no graph optimisation computes each QDQ
node in float), takes every dense convolution's uint8 input, and computes those pair sums
with the layer's int8 weights, in the order the kernel pairs them (input channels of one
tap, channels fastest). Per layer it prints the bound the weights allow (255 x the largest
same-sign pair), the largest pair sum the frames gave (and its share of the 16-bit limit),
how many sums saturated and in how many frames. Depthwise convolutions are left out: their
kernel widens to 16 bits before it adds.

A layer that never comes near the limit could keep the int8 weights on such CPUs (faster);
any other needs the u8 re-encoding (``models.quantize --u8-variant``). Data: SIMULATED
frames (seeds 1000+, the calibration seeds) and REAL images of ``usgra_seg`` and
``dltrack_apo``. Needs the ``train`` extra (onnx). Prints a table; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LIMIT = 32767


def im2col_nhwc(a: np.ndarray, kh: int, kw: int, stride: int, pads, fill: int) -> np.ndarray:
    """(C, H, W) activations -> (output pixels, kh*kw*C) in tap-major, channel-fastest
    order (the order the int8 kernel reads); padding holds ``fill`` (the zero point)."""
    c, h, w = a.shape
    t, left, b, r = pads
    ap = np.full((c, h + t + b, w + left + r), fill, np.int32)
    ap[:, t:t + h, left:left + w] = a
    ho = (h + t + b - kh) // stride + 1
    wo = (w + left + r - kw) // stride + 1
    cols = np.empty((ho, wo, kh, kw, c), np.int32)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j, :] = ap[:, i:i + stride * ho:stride,
                                     j:j + stride * wo:stride].transpose(1, 2, 0)
    return cols.reshape(ho * wo, kh * kw * c)


def weight_rows(w: np.ndarray) -> np.ndarray:
    """(Cout, Cin, kh, kw) int8 weights -> (Cout, K) in the same order, K padded to even."""
    co = w.shape[0]
    rows = w.astype(np.int32).transpose(0, 2, 3, 1).reshape(co, -1)
    return np.pad(rows, ((0, 0), (0, rows.shape[1] % 2)))


def weight_bound(w: np.ndarray) -> int:
    """The largest |pair sum| any uint8 input could give: 255 x the largest same-sign pair."""
    rows = weight_rows(w)
    pos, neg = np.maximum(rows, 0), np.minimum(rows, 0)
    return int(255 * max((pos[:, 0::2] + pos[:, 1::2]).max(),
                         -(neg[:, 0::2] + neg[:, 1::2]).min()))


def pair_sums(a: np.ndarray, w: np.ndarray, stride: int = 1, pads=(0, 0, 0, 0),
              zero_point: int = 0) -> tuple[int, int]:
    """Largest |a_k w_k + a_k+1 w_k+1| over the output pixels, channels and pairs of one
    convolution (uint8 ``a`` (C, H, W), int8 ``w`` (Cout, C, kh, kw)), and how many of those
    sums fall outside the signed 16-bit range."""
    cols = im2col_nhwc(a, w.shape[2], w.shape[3], stride, pads, zero_point)
    cols = np.pad(cols, ((0, 0), (0, cols.shape[1] % 2)))
    rows = weight_rows(w)
    biggest = over = 0
    for r in rows:  # one output channel at a time keeps memory small
        s = cols[:, 0::2] * r[0::2] + cols[:, 1::2] * r[1::2]
        biggest = max(biggest, int(np.abs(s).max()))
        over += int(((s > LIMIT) | (s < -LIMIT - 1)).sum())
    return biggest, over


def dense_convs(model):
    """Each dense Conv of a QDQ model fed by DequantizeLinear: name, its uint8 input
    tensor, the input zero point, int8 weights, stride, pads."""
    from onnx import helper, numpy_helper

    from models.quantize import is_depthwise
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv" or is_depthwise(n):
            continue
        att = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        dqa, dqw = prod.get(n.input[0]), prod.get(n.input[1])
        if (dqa is None or dqw is None or dqa.op_type != "DequantizeLinear"
                or dqw.op_type != "DequantizeLinear" or dqw.input[0] not in inits
                or inits[dqw.input[0]].dtype != np.int8):
            continue
        zp = int(inits[dqa.input[2]]) if len(dqa.input) > 2 and dqa.input[2] in inits else 0
        out.append(dict(name=n.name, act=dqa.input[0], zp=zp, w=inits[dqw.input[0]],
                        stride=int(att.get("strides", [1, 1])[0]),
                        pads=tuple(att.get("pads", [0, 0, 0, 0]))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "pecs_seg.onnx"))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sim", type=int, default=30, help="simulated frames (seeds 1000+)")
    ap.add_argument("--usgra-every", type=int, default=2, help="every Nth usgra_seg image (0: none)")
    ap.add_argument("--dltrack-every", type=int, default=4, help="every Nth dltrack_apo image (0: none)")
    args = ap.parse_args()

    import cv2
    import onnx
    import onnxruntime as ort

    from models.data import list_images
    from models.segmenter import load_manifest, pre_process_image
    from models.simulator import simulate_frame

    model = onnx.load(args.model)
    layers = dense_convs(model)
    if not layers:
        raise SystemExit(f"{args.model}: no dense convolution with int8 weights (is it quantized?)")
    for L in layers:
        model.graph.output.append(onnx.helper.make_tensor_value_info(L["act"], onnx.TensorProto.UINT8, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    hw = tuple(load_manifest(args.model)["input"]["shape"][-2:])
    names = [o.name for o in sess.get_outputs()]

    frames = [simulate_frame(seed=1000 + i).image for i in range(args.sim)]
    real = []
    for folder, every in (("usgra_seg", args.usgra_every), ("dltrack_apo", args.dltrack_every)):
        if every > 0:
            real += list_images(args.data / folder / "images")[::every]
    for p in real:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SystemExit(f"{p}: cannot be read as an image")
        frames.append(img)
    print(f"{args.model}: {len(layers)} dense int8 convolutions; {args.sim} SIMULATED frames, "
          f"{len(real)} REAL images")
    stats = {L["name"]: [0, 0, 0] for L in layers}  # biggest, saturated sums, frames
    for img in frames:
        outs = dict(zip(names, sess.run(None, {inp: pre_process_image(img, hw)})))
        for L in layers:
            big, over = pair_sums(outs[L["act"]][0], L["w"], L["stride"], L["pads"], L["zp"])
            s = stats[L["name"]]
            s[0], s[1], s[2] = max(s[0], big), s[1] + over, s[2] + (over > 0)
    print(f"{'layer':18s} {'weights':>18s} {'in zp':>5s} {'bound':>6s} {'largest':>7s} "
          f"{'of limit':>8s} {'saturated':>10s} {'frames':>9s}")
    for L in layers:
        big, over, nf = stats[L["name"]]
        print(f"{L['name']:18s} {str(list(L['w'].shape)):>18s} {L['zp']:5d} "
              f"{weight_bound(L['w']):6d} {big:7d} {big / LIMIT:8.2f} {over:10d} "
              f"{nf:4d}/{len(frames)}")
    safe = [L["name"] for L in layers if stats[L["name"]][0] <= LIMIT // 2]
    print(f"layers whose sums stayed under half the limit: {len(safe)} {safe}")


if __name__ == "__main__":
    main()
