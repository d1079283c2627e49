"""How long models.train takes to draw one training batch on one core (12 windows of 128 px
from 192 px frames, REAL usgra_seg and DL_Track images as shared), the work a GPU training
step waits for. Prints the mean of 40 batches after one warm-up; asserts nothing.

    .venv-train/bin/python benchmarks/seg_batch_time.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models.train as t  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    samples = t.load_usgra(a.data) + t.load_dltrack(a.data)
    rng = np.random.default_rng(0)
    t.batch(samples, rng.integers(len(samples), size=12), 192, rng, 128)
    t0 = time.perf_counter()
    for _ in range(a.n):
        t.batch(samples, rng.integers(len(samples), size=12), 192, rng, 128)
    print(f"{(time.perf_counter() - t0) / a.n * 1000:.1f} ms a batch of 12 (mean of {a.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
