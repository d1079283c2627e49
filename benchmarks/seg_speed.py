"""Segmentation speed: model alone at its input size on ONE CPU core, and end-to-end
(pre + predict + post) on a 562x542 simulated frame. Prints medians and p95.

    .venv/bin/python benchmarks/seg_speed.py [--model PATH [--model PATH2 ...]] [--n 200] [--threads 1]
        [--int8-weights auto|s8|u8[,...]]

The host line names the CPU's int8 dot-product instructions (VNNI, AMX): an int8 model
measured faster than its float original only on a host with them (model card, "Speed").
Timings on a shared machine are noisy: quote medians, and compare runs on the same host. With
several --model, the models take turns frame by frame (interleaved), so the host's load changes
hit them alike and their medians compare; the ratio to the first is printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def int8_support() -> str:
    """The CPU's int8 dot-product instructions, which decide whether an int8 model is faster
    than float (Linux /proc/cpuinfo; 'unknown' elsewhere)."""
    from models.segmenter import VNNI_FLAGS, cpu_flags
    flags = cpu_flags()
    if flags is None:
        return "unknown"
    have = [f for f in VNNI_FLAGS if f in flags]
    return ", ".join(have) if have else "none (no VNNI)"


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    # min shows the cost without interference from other processes on a shared host
    return (f"median {np.median(a):6.2f} ms  p95 {np.percentile(a, 95):6.2f} ms  "
            f"min {a.min():6.2f} ms  (n={len(a)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[],
                    help="ONNX model (default: the shipped one); repeat to compare, interleaved")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--int8-weights", default="auto",
                    help="segmentation.int8_weights, or several comma-separated to compare "
                         "(e.g. s8,u8: on a CPU without VNNI the s8 sums saturate)")
    args = ap.parse_args()

    from models.segmenter import Segmenter
    from models.settings import SegmentationSettings
    from models.simulator import simulate_frame

    segs = [Segmenter(SegmentationSettings(model_path=m, threads=args.threads,
                                           int8_weights=w)).load()
            for m in (args.model or [""]) for w in args.int8_weights.split(",")]
    for seg in segs:
        h, w = seg.input_hw
        runs = (f" (runs {seg.run_path.name}: int8 weights {seg.int8_weights})"
                if seg.int8_weights else "")
        print(f"model {seg.model_path}{runs} input {w}x{h}, intra_op_num_threads={args.threads}, "
              f"providers {seg.providers}")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; int8 dot product: {int8_support()}")
    sim_ms = []
    frames = []
    for s in range(20):
        t = time.perf_counter()
        frames.append(simulate_frame(s).image)
        sim_ms.append((time.perf_counter() - t) * 1e3)
    print(f"simulator, one 562x542 frame:  {stats(sim_ms)}")
    for seg in segs:
        x = seg.pre_process(frames[0])
        for _ in range(10):
            seg.predict(x)
    model_ms: list[list[float]] = [[] for _ in segs]
    for i in range(args.n):
        for seg, ms in zip(segs, model_ms):
            x = seg.pre_process(frames[i % len(frames)])
            t = time.perf_counter()
            seg.predict(x)
            ms.append((time.perf_counter() - t) * 1e3)
    parts = [{"pre": [], "predict": [], "post": [], "total": []} for _ in segs]
    for i in range(args.n):
        for seg, pt in zip(segs, parts):
            out = seg.segment(frames[i % len(frames)])
            for k in pt:
                pt[k].append(out.timings_ms[k])
    fh, fw = frames[0].shape
    names = [seg.run_path.name for seg in segs]
    if len(set(names)) < len(names):  # same file name in several folders: show the paths
        names = [str(seg.run_path) for seg in segs]
    for j, seg in enumerate(segs):
        h, w = seg.input_hw
        if len(segs) > 1:
            print(f"--- {names[j]}")
        print(f"model only ({w}x{h}):          {stats(model_ms[j])}")
        for k in ("pre", "predict", "post"):
            print(f"  {k:<8}                     {stats(parts[j][k])}")
        med = float(np.median(parts[j]["total"]))
        p95 = float(np.percentile(parts[j]["total"], 95))
        print(f"end-to-end ({fw}x{fh}):        {stats(parts[j]['total'])}")
        print(f"=> {1000 / med:.0f} fps at the median, {1000 / p95:.0f} fps at p95; "
              f"keeps up with 30 fps: {'yes' if p95 < 1000 / 30 else 'no'} (p95 < 33.3 ms)")
        if j:
            print(f"   against {names[0]}: model median x"
                  f"{np.median(model_ms[j]) / np.median(model_ms[0]):.2f}, end to end x"
                  f"{med / np.median(parts[0]['total']):.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
