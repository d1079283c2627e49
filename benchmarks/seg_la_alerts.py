"""Would the segmentation raise false danger alerts while local anaesthetic is injected?

Simulated PECS II frames (models.simulator, seed stream ``--seed``, never used in
training: the training's local-anaesthetic frames are seeds 5000+) with the injection
pocket open (half-width 2-9 mm). For each frame with a visible needle, the model's vessel
(pleura) is compared with the TRUE tip:

* would-be false alert: predicted vessel (pleura) within the alert limit of the true tip
  (3 mm artery, 5 mm pleura: assistant defaults) while the true structure is more than
  2 mm beyond that limit;
* truly near: the true structure within the limit (an alert there is right).

``--write-set DIR`` also writes the first 60 frames as DIR/images + DIR/masks (CLASSES
indices) for ``assistant seg-eval --map nerve=1,vessel=2,fascia=3,pleura=8,needle=9``.
Prints JSON, one line per model; asserts nothing. SIMULATED data only.

    .venv/bin/python benchmarks/seg_la_alerts.py [--model A.onnx --model B.onnx]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.guidance import distance_to_class_px  # noqa: E402
from models.classes import CLASSES  # noqa: E402
from models.segmenter import INT8_WEIGHTS, Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402
from models.simulator import SimParams, simulate_frame  # noqa: E402

LIMIT_MM = {"vessel": 3.0, "pleura": 5.0}


def nearest_mm(labels: np.ndarray, idx: int, tip_px, spacing_mm: float) -> float:
    """The alert logic's own distance (assistant.guidance), in mm; inf when absent."""
    d = distance_to_class_px(labels, idx, tip_px)
    return float("inf") if d is None else d * spacing_mm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[],
                    help="ONNX model with its manifest (repeat; default: the shipped one)")
    ap.add_argument("--frames", type=int, default=120, help="frames drawn (those with a needle count)")
    ap.add_argument("--seed", type=int, default=77777)
    ap.add_argument("--int8-weights", default="auto", choices=INT8_WEIGHTS,
                    help="segmentation.int8_weights: which encoding of an int8 model runs")
    ap.add_argument("--write-set", default="", metavar="DIR")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    frames = [simulate_frame(rng, SimParams(la_radius_mm=float(rng.uniform(2.0, 9.0))))
              for _ in range(a.frames)]
    if a.write_set:
        for sub in ("images", "masks"):
            (Path(a.write_set) / sub).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames[:60]):
            cv2.imwrite(str(Path(a.write_set) / "images" / f"la{i:03d}.png"), f.image)
            cv2.imwrite(str(Path(a.write_set) / "masks" / f"la{i:03d}.png"), f.labels)
    with_needle = [f for f in frames if f.needle["visible"] and f.needle["tip_px"] is not None]
    for model in a.model or [""]:
        seg = Segmenter(SegmentationSettings(model_path=model, int8_weights=a.int8_weights))
        false_alert = {c: 0 for c in LIMIT_MM}
        truly_near = {c: 0 for c in LIMIT_MM}
        for f in with_needle:
            labels = seg.segment(cv2.cvtColor(f.image, cv2.COLOR_GRAY2BGR)).labels
            for c, lim in LIMIT_MM.items():
                ci = CLASSES.index(c)
                d_true = nearest_mm(f.labels, ci, f.needle["tip_px"], f.spacing_mm)
                d_pred = nearest_mm(labels, ci, f.needle["tip_px"], f.spacing_mm)
                if d_true <= lim:
                    truly_near[c] += 1
                elif d_pred <= lim and d_true > lim + 2.0:
                    false_alert[c] += 1
        print(json.dumps({"model": model or "shipped", "data": "SIMULATED local anaesthetic",
                          "seed": a.seed, "int8_weights": a.int8_weights,
                          "frames_with_needle": len(with_needle),
                          "would_be_false_alert_frames": false_alert,
                          "truly_near_frames": truly_near}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
