"""Segmentation speed: model alone at its input size on ONE CPU core, and end-to-end
(pre + predict + post) on a 562x542 simulated frame. Prints medians and p95.

    .venv/bin/python benchmarks/seg_speed.py [--model PATH] [--n 200] [--threads 1]

Timings on a shared machine are noisy: quote medians, and compare runs on the same host.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    # min shows the cost without interference from other processes on a shared host
    return (f"median {np.median(a):6.2f} ms  p95 {np.percentile(a, 95):6.2f} ms  "
            f"min {a.min():6.2f} ms  (n={len(a)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from models.segmenter import Segmenter
    from models.settings import SegmentationSettings
    from models.simulator import simulate_frame

    seg = Segmenter(SegmentationSettings(model_path=args.model, threads=args.threads)).load()
    h, w = seg.input_hw
    print(f"model {seg.model_path.name} input {w}x{h}, intra_op_num_threads={args.threads}, "
          f"providers {seg.providers}")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    sim_ms = []
    frames = []
    for s in range(20):
        t = time.perf_counter()
        frames.append(simulate_frame(s).image)
        sim_ms.append((time.perf_counter() - t) * 1e3)
    print(f"simulator, one 562x542 frame:  {stats(sim_ms)}")
    x = seg.pre_process(frames[0])
    for _ in range(10):
        seg.predict(x)
    model_ms = []
    for i in range(args.n):
        x = seg.pre_process(frames[i % len(frames)])
        t = time.perf_counter()
        seg.predict(x)
        model_ms.append((time.perf_counter() - t) * 1e3)
    print(f"model only ({w}x{h}):          {stats(model_ms)}")
    parts: dict[str, list[float]] = {"pre": [], "predict": [], "post": [], "total": []}
    for i in range(args.n):
        out = seg.segment(frames[i % len(frames)])
        for k in parts:
            parts[k].append(out.timings_ms[k])
    fh, fw = frames[0].shape
    for k in ("pre", "predict", "post"):
        print(f"  {k:<8}                     {stats(parts[k])}")
    med = float(np.median(parts["total"]))
    p95 = float(np.percentile(parts["total"], 95))
    print(f"end-to-end ({fw}x{fh}):        {stats(parts['total'])}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"=> {1000 / med:.0f} fps at the median, {1000 / p95:.0f} fps at p95; "
          f"keeps up with 30 fps: {'yes' if p95 < 1000 / 30 else 'no'} (p95 < 33.3 ms)")


if __name__ == "__main__":
    main()
