"""Could a shape filter tell a local-anaesthetic pocket called "vessel" from a real vessel?

The pretrained-encoder models (v14 family, model card) call small ragged fragments of the
SIMULATED injection pocket "vessel" right at the needle tip. Before a post-processing rule
drops vessel blobs by shape, this measures whether the shapes differ: circularity
(4 pi area / perimeter^2, 1 for a disc) and solidity (area / convex hull area) of every
vessel blob the model shows, after the manifest's post-processing:

* REAL held out (usgra_seg, ``--fold-models DIR``: each fold model on its own held-out
  images, ``models.train.folds``): blobs overlapping a true vessel by > 20 % of their area
  ("right") and the others ("false"); and the true vessel masks themselves;
* SIMULATED local-anaesthetic frames (``benchmarks/seg_la_alerts.py``'s frames, seed
  ``--seed``, ``--model``): blobs overlapping the true vessel, and false blobs within 3 mm of
  the true tip (the pocket fragments that would say "stop").

    .venv/bin/python benchmarks/seg_vessel_shapes.py --fold-models DIR [--manifest M]
        [--model MODEL.onnx] [--seed 77777] [--data ../shared/data]

Prints percentiles per group; asserts nothing. Decision support research tool, not for
clinical use.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from assistant.guidance import distance_to_class_px  # noqa: E402
from models.classes import CLASS_INDEX  # noqa: E402
from models.segmenter import (Segmenter, parse_post_process, pre_process_image,  # noqa: E402
                              probs_to_output)
from models.settings import SegmentationSettings  # noqa: E402

VESSEL = CLASS_INDEX["vessel"]


def blob_shapes(mask: np.ndarray) -> list[dict]:
    """Each outer blob of a bool mask: its pixels, circularity and solidity."""
    sel = mask.astype(np.uint8)
    contours, _ = cv2.findContours(sel, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        m = np.zeros_like(sel)
        cv2.drawContours(m, [c], -1, 1, -1)
        m &= sel
        area = cv2.contourArea(c)
        per = cv2.arcLength(c, True)
        hull = cv2.contourArea(cv2.convexHull(c))
        out.append({"mask": m > 0, "circularity": 4 * np.pi * max(area, 1.0) / max(per, 1.0) ** 2,
                    "solidity": area / hull if hull > 0 else 0.0})
    return out


def summary(name: str, rows: list[dict]) -> str:
    if not rows:
        return f"{name:<44} none"
    c = np.array([r["circularity"] for r in rows])
    s = np.array([r["solidity"] for r in rows])
    return (f"{name:<44} n={len(rows):4d}  circularity min {c.min():.2f} p5 {np.percentile(c, 5):.2f} "
            f"median {np.median(c):.2f}  solidity min {s.min():.2f} p5 {np.percentile(s, 5):.2f} "
            f"median {np.median(s):.2f}")


def real_groups(data: Path, fold_models: Path, post_spec: dict | None) -> dict:
    from models.train import folds, load_usgra

    us = load_usgra(data)
    fu = folds(len(us), 3)
    post = parse_post_process(post_spec)
    groups: dict = {"REAL true vessel masks": [], "REAL shown vessel blobs, right": [],
                    "REAL shown vessel blobs, false": []}
    for k in range(3):
        seg = Segmenter(SegmentationSettings(model_path=str(fold_models / f"fold{k}.onnx"),
                                             threads=1)).load()
        for i in fu[k]:
            s = us[i]
            p = seg.predict(pre_process_image(s.image, seg.input_hw))[0]
            lab = probs_to_output(p, s.image.shape[:2], post=post).labels
            truth = s.labels == VESSEL
            for b in blob_shapes(lab == VESSEL):
                right = (b["mask"] & truth).sum() > 0.2 * b["mask"].sum()
                groups["REAL shown vessel blobs, " + ("right" if right else "false")].append(b)
            groups["REAL true vessel masks"] += blob_shapes(truth)
    return groups


def sim_groups(model: str, seed: int) -> dict:
    from models.simulator import SimParams, simulate_frame

    rng = np.random.default_rng(seed)
    frames = [simulate_frame(rng, SimParams(la_radius_mm=float(rng.uniform(2.0, 9.0))))
              for _ in range(120)]
    seg = Segmenter(SegmentationSettings(model_path=model, threads=1)).load()
    groups: dict = {"SIM LA shown vessel blobs, right": [],
                    "SIM LA false vessel blobs within 3 mm of the tip": []}
    for f in frames:
        if not (f.needle["visible"] and f.needle["tip_px"] is not None):
            continue
        lab = seg.segment(cv2.cvtColor(f.image, cv2.COLOR_GRAY2BGR)).labels
        truth = f.labels == VESSEL
        for b in blob_shapes(lab == VESSEL):
            if (b["mask"] & truth).sum() > 0.2 * b["mask"].sum():
                groups["SIM LA shown vessel blobs, right"].append(b)
                continue
            d = distance_to_class_px(b["mask"].astype(np.uint8) * VESSEL, VESSEL, f.needle["tip_px"])
            if d is not None and d * f.spacing_mm <= 3.0:
                groups["SIM LA false vessel blobs within 3 mm of the tip"].append(b)
    return groups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--fold-models", default=None, help="folder with fold0-2.onnx (REAL part)")
    ap.add_argument("--manifest", default=None,
                    help="manifest whose post_process the REAL part applies (default: fold0's)")
    ap.add_argument("--model", default="", help="model for the SIM part (default: shipped)")
    ap.add_argument("--seed", type=int, default=77777)
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    groups = {}
    if a.fold_models:
        fm = Path(a.fold_models)
        spec = json.loads(Path(a.manifest or fm / "fold0.json").read_text()).get("post_process")
        groups.update(real_groups(Path(a.data), fm, spec))
    groups.update(sim_groups(a.model, a.seed))
    for name, rows in groups.items():
        print(summary(name, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
