"""Segmentation accuracy figures of the shipped model. Prints; asserts nothing.

    .venv/bin/python benchmarks/seg_accuracy.py [--data ../shared/data] [--clip-seconds 12]

1. Real data, held out: the cross-validation summary stored in the model's manifest
   (``python -m models.train --cv 3 ...``; the shipped model itself saw all real images,
   so running it on them would be in-sample and optimistic).
2. Real data never used in training: the supraclavicular cine loops of
   ``regional_us_videos`` (internal testing only). Their ground truth is boxes around
   plexus trunks on frames marked ``human``; we report how many boxes contain predicted
   nerve pixels (recall) and what share of predicted nerve pixels lie in a box
   (precision proxy).
3. Simulated: the demo clip (models.simulator, unseen seed) through Segmenter and
   NeedleTracker: per-class Dice against the simulator's labels and the tracked needle
   tip error in mm against the simulator's tip.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def part_cv(seg) -> None:
    cv = seg.manifest.get("metrics", {}).get("real_cross_validation")
    print("1. real data, cross-validation (held-out blocks):")
    if not isinstance(cv, dict):
        print(f"   {cv}")
        return
    print(f"   folds: {cv.get('folds')} of k={cv.get('k')}, {cv.get('minutes_per_fold')} min/fold")
    for name, r in cv.items():
        if isinstance(r, dict) and "dice_mean" in r:
            sd = r.get("dice_sd")
            print(f"   {name:<10} Dice {r['dice_mean']:.3f} +- {sd if sd is None else round(sd, 3)}"
                  f"  per fold {[round(v, 3) for v in r['dice_per_fold']]}"
                  f"  HD95 {r.get('hd95_px_mean') and round(r['hd95_px_mean'], 1)} px")


def part_videos(seg, data: Path) -> None:
    from models.classes import CLASS_INDEX

    vids = data / "regional_us_videos"
    print("2. real supraclavicular cine loops (never trained on; human-annotated frames):")
    if not vids.exists():
        print(f"   {vids} not found: skipped")
        return
    nerve = CLASS_INDEX["nerve"]
    boxes_hit = boxes = frames = 0
    inside = total = 0
    split = {"sure": [0, 0, 0], "unsure": [0, 0, 0]}  # frames, nerve px inside boxes, nerve px
    for ann in sorted((vids / "annotations").glob("*.txt")):
        video = next((vids / "videos").glob(ann.stem + ".*"), None)
        if video is None:
            continue
        human = {}
        for line in ann.read_text().splitlines():
            if not line.strip():
                continue
            (k, v), = json.loads(line).items()
            if v.get("tracker") == "human":
                # 'None': the annotator marked no plexus in that frame
                boxes_k = json.loads(v["bounding_boxes"]) if v["bounding_boxes"] != "None" else []
                human[int(k)] = boxes_k or []
        cap = cv2.VideoCapture(str(video))
        i = 0
        while human:
            ok, frame = cap.read()
            if not ok:
                break
            if i in human:
                out = seg.segment(frame)
                labels = out.labels == nerve
                inbox = np.zeros_like(labels)
                for x, y, w, h in human.pop(i):
                    boxes += 1
                    region = labels[y:y + h, x:x + w]
                    boxes_hit += int(region.sum() >= max(20, 0.02 * w * h))
                    inbox[y:y + h, x:x + w] = True
                inside += int((labels & inbox).sum())
                total += int(labels.sum())
                frames += 1
                if labels.any():
                    s = split["unsure" if out.confidence[nerve] < 0.5 else "sure"]
                    s[0] += 1
                    s[1] += int((labels & inbox).sum())
                    s[2] += int(labels.sum())
            i += 1
        cap.release()
    if not frames:
        print("   no annotated frames found")
        return
    print(f"   frames {frames}, boxes {boxes}: boxes with nerve predicted inside "
          f"{boxes_hit}/{boxes} = {boxes_hit / boxes:.2f}; predicted nerve pixels inside "
          f"a box {inside / max(1, total):.2f} ({total} px predicted)")
    print("   frames showing nerve, by confidence (< 0.5: drawn unsure): " + "; ".join(
        f"{k} {v[0]}, nerve pixels inside a box {v[1] / max(1, v[2]):.2f}" for k, v in split.items()))


def part_sim(seg, seconds: float) -> None:
    from models.classes import CLASSES
    from models.metrics import dice
    from models.needle import NeedleTracker
    from models.simulator import make_demo_clip

    print(f"3. simulated demo clip ({seconds:g} s, seed 7, unseen), Segmenter + NeedleTracker:")
    with tempfile.TemporaryDirectory() as tmp:
        meta = make_demo_clip(str(Path(tmp) / "c.mp4"), seconds=seconds, fps=20, seed=7)
        labels = np.load(meta["masks"])["labels"]
        cap = cv2.VideoCapture(meta["video"])
        tr = NeedleTracker()
        per = {c: [] for c in CLASSES[1:]}
        tip_mm = []
        for i, fm in enumerate(meta["frames"]):
            ok, frame = cap.read()
            if not ok:
                break
            out = seg.segment(frame)
            nd = tr.update(out.labels, meta["spacing_mm"], fm["t_s"],
                           out.confidence[CLASSES.index("needle")])
            for ci, c in enumerate(CLASSES[1:], start=1):
                gt = labels[i] == ci
                if gt.any():
                    per[c].append(dice(out.labels == ci, gt))
            truth = fm["needle"]
            if truth["visible"] and truth["tip_px"] is not None:
                if nd["tip_px"] is not None:
                    tip_mm.append(math.hypot(nd["tip_px"][0] - truth["tip_px"][0],
                                             nd["tip_px"][1] - truth["tip_px"][1]) * meta["spacing_mm"])
                else:
                    tip_mm.append(float("inf"))
        cap.release()
    for c, v in per.items():
        if v:
            print(f"   {c:<10} Dice {np.mean(v):.3f} (sd {np.std(v):.3f}, {len(v)} frames)")
    t = np.array(tip_mm)
    if len(t):
        ok = np.isfinite(t)
        if ok.any():
            print(f"   needle tip error (frames with a tracked tip): median {np.median(t[ok]):.2f} mm, "
                  f"p90 {np.percentile(t[ok], 90):.2f} mm")
        print(f"   {ok.sum()} of {len(t)} frames with a visible needle had a tracked tip")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default="")
    ap.add_argument("--clip-seconds", type=float, default=12.0)
    args = ap.parse_args()
    from models.segmenter import Segmenter
    from models.settings import SegmentationSettings

    seg = Segmenter(SegmentationSettings(model_path=args.model)).load()
    print(f"model {seg.model_name}  (not for clinical use)")
    part_cv(seg)
    part_videos(seg, Path(args.data))
    part_sim(seg, args.clip_seconds)


if __name__ == "__main__":
    main()
