"""Does the needle tracker see needles that are not there? REAL scans without a needle, and
SIMULATED clips with one.

No real image here holds a needle (usgra_seg and DL_Track are scans of volunteers and limb
muscles; the supraclavicular cine loops are plexus scans), so every needle the system reports
on them is false, and every "stop" it would say about it too. Three parts, each with the
tracker as it was before the shaft gate ("no gate": any needle mask of 15 px, visible at
once) and as configured (``config.yaml`` segmentation.needle_*):

1. REAL stills (usgra_seg 204, dltrack_apo 459): frames whose needle mask looks like a shaft
   in one frame (spacing: 40 mm depth over the image height, the config default), against
   frames with any needle mask. A still cannot be confirmed over frames: an upper bound.
2. REAL cine loops (regional_us_videos, 10 loops, 20 fps): frames with a visible needle, how
   many times one appears, and would-be alert frames (the tracked tip within 3 mm of a
   predicted vessel or 5 mm of predicted pleura: the assistant's defaults).
3. SIMULATED clips with a needle going in (``make_demo_clip``, seeds ``--sim-seeds``, never
   trained on): frames where the true needle is visible and the tracker shows it, the delay
   from the needle's first visible frame to the tracker's, frames shown without a true needle,
   and the tip error where shown.

    .venv/bin/python benchmarks/needle_false_real.py [--data ../shared/data] [--sim-seeds 7 11 13]
        [--model OTHER.onnx] [--fold-models DIR]

Prints a table; asserts nothing. Decision support research tool, not for clinical use.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from assistant.config import load_settings  # noqa: E402
from assistant.guidance import distance_to_class_px  # noqa: E402
from models.classes import CLASS_INDEX  # noqa: E402
from models.data import read_image  # noqa: E402
from models.needle import NEEDLE, NeedleTracker, needle_shape  # noqa: E402
from models.segmenter import Segmenter, file_sha256, load_manifest  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402

DEPTH_MM = 40.0  # config default depth of a real frame without a sidecar
ALERT_MM = {CLASS_INDEX["vessel"]: 3.0, CLASS_INDEX["pleura"]: 5.0}


def trackers() -> dict:
    s = load_settings().segmentation
    return {
        "no gate (before)": lambda: NeedleTracker(min_length_mm=0.0, min_elongation=1.0,
                                                  min_confidence=0.0, confirm_frames=1),
        (f"gate: {s.needle_confirm_frames} frames, >= {s.needle_min_length_mm:g} mm, "
         f">= {s.needle_min_elongation:g}x, conf >= {s.needle_min_confidence:g}"):
            lambda: NeedleTracker.from_settings(s),
    }


def alert_near(labels: np.ndarray, tip, spacing_mm: float) -> bool:
    for idx, limit in ALERT_MM.items():
        d = distance_to_class_px(labels, idx, tip)
        if d is not None and d * spacing_mm <= limit:
            return True
    return False


def as_shipped(model: Path, tmp: Path) -> Segmenter:
    """``model``'s weights with the shipped manifest's post-processing and calibration (its
    sha256 replaced): other weights measured exactly as the shipped ones would run."""
    shipped = load_manifest(ROOT / "models" / "pecs_seg.onnx")
    tmp.mkdir(parents=True, exist_ok=True)
    dst = tmp / model.name
    dst.write_bytes(model.read_bytes())
    shipped["sha256"] = file_sha256(dst)
    shipped["file"] = dst.name
    dst.with_suffix(".json").write_text(json.dumps(shipped))
    return Segmenter(SegmentationSettings(threads=1, model_path=str(dst))).load()


def held_out_names(fold_model: Path) -> dict:
    m = json.loads(fold_model.with_suffix(".json").read_text())
    return {"usgra_seg": set(m["held_out_usgra"]), "dltrack_apo": set(m["held_out_dltrack"])}


def part_stills(seg: Segmenter, data: Path, makers: dict, fold_models: Path | None = None) -> None:
    if fold_models is not None:
        # each image through the fold model that never saw it
        folds = sorted(fold_models.glob("fold*.onnx"))
        print(f"1. REAL stills without a needle, HELD OUT: each through the one of {len(folds)} "
              f"fold models ({fold_models}) that did not train on it")
        with tempfile.TemporaryDirectory() as tmp:
            segs = [(as_shipped(f, Path(tmp) / f.stem), held_out_names(f)) for f in folds]
            _stills(segs, data, makers)
        return
    print("1. REAL stills without a needle (one frame each: shaft-like, not confirmed)")
    _stills([(seg, None)], data, makers)


def _stills(segs: list, data: Path, makers: dict) -> None:
    for folder in ("usgra_seg", "dltrack_apo"):
        names = sorted((data / folder / "images").glob("*.png"))
        anyn = shaft = n = 0
        probe = list(makers.values())[-1]()
        for p in names:
            seg = next((s for s, held in segs if held is None or p.name in held[folder]), None)
            if seg is None:
                continue
            n += 1
            img = read_image(p)
            out = seg.segment(img)
            shape = needle_shape(out.labels == NEEDLE)
            if shape is None:
                continue
            anyn += 1
            sp = DEPTH_MM / img.shape[0]
            shaft += probe.looks_like_a_shaft(shape, sp, out.confidence[NEEDLE])
        print(f"   {folder:<12} {n} images: any needle mask {anyn}, shaft-like {shaft}")


def part_cine(seg: Segmenter, data: Path, makers: dict) -> None:
    videos = sorted((data / "regional_us_videos" / "videos").glob("*.mp4"))
    print(f"2. REAL cine loops without a needle ({len(videos)} loops, every frame)")
    totals = {k: [0, 0, 0] for k in makers}
    n_frames = 0
    for v in videos:
        cap = cv2.VideoCapture(str(v))
        fps = cap.get(cv2.CAP_PROP_FPS) or 20.0
        trs = {k: mk() for k, mk in makers.items()}
        prev = {k: False for k in makers}
        k = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            out = seg.segment(frame)
            sp = DEPTH_MM / frame.shape[0]
            for name, tr in trs.items():
                nd = tr.update(out.labels, sp, k / fps, out.confidence[NEEDLE])
                vis = bool(nd["visible"])
                totals[name][0] += vis
                totals[name][1] += vis and not prev[name]
                totals[name][2] += vis and alert_near(out.labels, nd["tip_px"], sp)
                prev[name] = vis
            k += 1
        n_frames += k
        cap.release()
    for name, (vis, onsets, alerts) in totals.items():
        print(f"   {name}: needle shown in {vis} of {n_frames} frames, appears {onsets} times, "
              f"would-be alert frames {alerts}")


def part_sim(seg: Segmenter, seeds: list[int], seconds: float, makers: dict) -> None:
    from models.simulator import make_demo_clip

    print(f"3. SIMULATED clips with a needle ({len(seeds)} x {seconds:g} s, seeds {seeds}, unseen)")
    res = {k: {"true": 0, "shown": 0, "false": 0, "delay": [], "tip": []} for k in makers}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            meta = make_demo_clip(str(Path(tmp) / f"c{seed}.mp4"), seconds=seconds, fps=20,
                                  seed=seed)
            cap = cv2.VideoCapture(meta["video"])
            sp = meta["spacing_mm"]
            trs = {k: mk() for k, mk in makers.items()}
            first_true = None
            first_shown = {k: None for k in makers}
            for i, fm in enumerate(meta["frames"]):
                ok, frame = cap.read()
                if not ok:
                    break
                out = seg.segment(frame)
                truth = fm["needle"]
                tv = bool(truth["visible"] and truth["tip_px"] is not None)
                if tv and first_true is None:
                    first_true = fm["t_s"]
                for name, tr in trs.items():
                    nd = tr.update(out.labels, sp, fm["t_s"], out.confidence[NEEDLE])
                    r = res[name]
                    if tv:
                        r["true"] += 1
                    if nd["visible"]:
                        if first_shown[name] is None and first_true is not None:
                            first_shown[name] = fm["t_s"]
                        if tv:
                            r["shown"] += 1
                            r["tip"].append(math.hypot(nd["tip_px"][0] - truth["tip_px"][0],
                                                       nd["tip_px"][1] - truth["tip_px"][1]) * sp)
                        else:
                            r["false"] += 1
            cap.release()
            for name in makers:
                if first_true is not None and first_shown[name] is not None:
                    res[name]["delay"].append(first_shown[name] - first_true)
    for name, r in res.items():
        tip = np.array(r["tip"]) if r["tip"] else np.array([np.nan])
        print(f"   {name}: shown in {r['shown']} of {r['true']} frames with a visible needle "
              f"({r['shown'] / max(1, r['true']):.1%}), {r['false']} frames shown without one; "
              f"first shown {', '.join(f'{d * 1000:.0f}' for d in r['delay'])} ms after the "
              f"needle first shows; tip error median {np.median(tip):.2f} mm, "
              f"p90 {np.percentile(tip, 90):.2f} mm")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sim-seeds", type=int, nargs="*", default=[7, 11, 13])
    ap.add_argument("--sim-seconds", type=float, default=12.0)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--model", type=Path, default=None,
                    help="other weights, run with the shipped manifest's post-processing")
    ap.add_argument("--fold-models", type=Path, default=None,
                    help="part 1 on held-out stills: a folder of CV fold models (fold0.onnx... "
                         "with manifests naming their held-out images, from models.train --cv-save)")
    a = ap.parse_args(argv)
    print(f"model: {a.model or 'shipped'}"
          + (f" (part 1: the fold models of {a.fold_models})" if a.fold_models else ""))
    makers = trackers()
    parts = set(a.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        seg = (as_shipped(a.model, Path(tmp)) if a.model
               else Segmenter(SegmentationSettings(threads=1)).load())
        if "1" in parts:
            part_stills(seg, a.data, makers, a.fold_models)
        if "2" in parts:
            part_cine(seg, a.data, makers)
        if "3" in parts:
            part_sim(seg, a.sim_seeds, a.sim_seconds, makers)
    print("not for clinical use")
    return 0


if __name__ == "__main__":
    sys.exit(main())
