"""Check the quality score against real images: more expected structures, higher score.

Scores the real usgra_seg B-mode images (../shared/data/usgra_seg: images/ + masks/,
palette masks 1 nerve, 2 vessel) with the ground-truth masks standing in for the
segmentation, for a nerve-block preset (key structures nerve + vessel).

Two views of the same data:

* natural: each image as annotated (every image has a nerve; some have no vessel);
* ablation: each image scored four times, with both structures, without the vessel,
  without the nerve, and with neither (labels removed, image unchanged), so the
  count of expected structures present (0, 1, 2) varies on the same real image.

Prints the mean score by number of expected structures present and Spearman's rank
correlation between that number and the score (scipy). Then the steadiness part on
the real supraclavicular cine loops (../shared/data/regional_us_videos, internal
testing only): consecutive frames against frames 5 apart.

    .venv/bin/python benchmarks/quality_real.py [--data DIR] [--block supraclavicular]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_pair(image_path: Path, mask_path: Path):
    """(grey image uint8, labels uint8 with nerve=1, vessel=2 in models.classes terms)."""
    import cv2

    from models.classes import CLASS_INDEX

    img = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read image {image_path}")
    mask = cv2.imread(str(mask_path), cv2.IMREAD_COLOR)
    if mask is None:
        raise ValueError(f"cannot read mask {mask_path}")
    if mask.shape[:2] != img.shape:
        raise ValueError(f"mask {mask_path} has shape {mask.shape[:2]}, image {img.shape}")
    # palette PNG decoded as BGR: index 1 (nerve) is dark red, index 2 (vessel) dark green
    labels = np.zeros(img.shape, np.uint8)
    labels[mask[..., 2] > 0] = CLASS_INDEX["nerve"]
    labels[mask[..., 1] > 0] = CLASS_INDEX["vessel"]
    return img, labels


def run(data: Path, block: str, limit: int | None = None) -> dict:
    from scipy.stats import spearmanr

    from assistant.blocks import default_presets, find_preset
    from assistant.quality import MIN_AREA_FRAC, quality_score
    from models.classes import CLASS_INDEX

    preset = find_preset(default_presets(), block)
    names = sorted(p.name for p in (data / "images").glob("*.png"))
    if limit:
        names = names[:limit]
    if not names:
        raise SystemExit(f"no images in {data / 'images'}")
    natural: list[tuple[int, float]] = []
    ablation: list[tuple[int, float]] = []
    ordered = both = 0
    t0 = time.perf_counter()
    for name in names:
        img, labels = load_pair(data / "images" / name, data / "masks" / name)
        min_area = max(20, int(MIN_AREA_FRAC * labels.size))
        def count(lab):
            return sum(int(np.count_nonzero(lab == CLASS_INDEX[c]) >= min_area)
                       for c in preset.key_structures)
        natural.append((count(labels), quality_score(img, labels, None, preset).score))
        scores = {}
        for drop in ((), ("vessel",), ("nerve",), ("nerve", "vessel")):
            lab = labels.copy()
            for c in drop:
                lab[lab == CLASS_INDEX[c]] = 0
            s = quality_score(img, lab, None, preset).score
            ablation.append((count(lab), s))
            scores[drop] = s
        if count(labels) == 2:
            both += 1
            # strictly: both > each single one > none, on the same image
            if scores[()] > max(scores[("vessel",)], scores[("nerve",)]) and \
                    min(scores[("vessel",)], scores[("nerve",)]) > scores[("nerve", "vessel")]:
                ordered += 1
    elapsed = time.perf_counter() - t0

    def table(pairs):
        out = {}
        for n in (0, 1, 2):
            vals = [s for k, s in pairs if k == n]
            out[n] = {"n": len(vals), "mean": float(np.mean(vals)) if vals else None,
                      "sd": float(np.std(vals)) if vals else None}
        ks, ss = zip(*pairs)
        rho, p = spearmanr(ks, ss) if len(set(ks)) > 1 else (float("nan"), float("nan"))
        return {"by_count": out, "spearman_rho": float(rho), "spearman_p": float(p)}

    return {"block": block, "images": len(names), "natural": table(natural),
            "ablation": table(ablation), "ablation_ordered_share": ordered / max(1, both), "images_with_both": both,
            "ms_per_score": 1000 * elapsed / (5 * len(names))}


def run_steadiness(videos: Path, max_frames: int = 120, lags=(1, 5)) -> dict:
    """Steadiness part on real cine loops (regional_us_videos): frames further apart
    (more probe motion between them) must look less steady than consecutive ones."""
    import cv2

    from assistant.quality import steadiness_part

    out = {lag: [] for lag in lags}
    wins = pairs = 0
    files = sorted(videos.glob("*.mp4"))
    for f in files:
        cap = cv2.VideoCapture(str(f))
        grey = []
        while len(grey) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            grey.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32))
        cap.release()
        far = max(lags)
        for k in range(far, len(grey)):
            vals = {lag: steadiness_part(grey[k], grey[k - lag]) for lag in lags}
            for lag, v in vals.items():
                out[lag].append(v)
            pairs += 1
            wins += vals[min(lags)] > vals[far]
    return {"videos": len(files), "pairs": pairs,
            "mean_by_lag": {lag: float(np.mean(v)) if v else None for lag, v in out.items()},
            "share_nearer_steadier": wins / pairs if pairs else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "usgra_seg")
    ap.add_argument("--block", default="supraclavicular")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--videos", type=Path,
                    default=ROOT.parent / "shared" / "data" / "regional_us_videos" / "videos",
                    help="real cine loops for the steadiness check (skipped if absent)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if not (args.data / "images").is_dir() or not (args.data / "masks").is_dir():
        print(f"no usgra_seg data at {args.data} (need images/ and masks/)", file=sys.stderr)
        return 2
    res = run(args.data, args.block, args.limit)
    print(f"quality score on {res['images']} real usgra_seg images, block {res['block']} "
          f"(key structures from ground-truth masks), {res['ms_per_score']:.1f} ms/score")
    for part in ("natural", "ablation"):
        t = res[part]
        print(f"  {part}:")
        for n, row in t["by_count"].items():
            if row["n"]:
                print(f"    {n} expected structures present: mean {row['mean']:.1f} "
                      f"(sd {row['sd']:.1f}, n={row['n']})")
        print(f"    Spearman rho (count vs score) = {t['spearman_rho']:.3f}, "
              f"p = {t['spearman_p']:.2g}")
    print(f"  per image (the {res['images_with_both']} with both annotated): score with both > "
          f"with either one > with none in {100 * res['ablation_ordered_share']:.1f}%")
    if args.videos.is_dir():
        st = run_steadiness(args.videos)
        res["steadiness"] = st
        lags = ", ".join(f"{lag} frame{'s' if lag > 1 else ''} apart {v:.2f}"
                         for lag, v in st["mean_by_lag"].items())
        print(f"steadiness on {st['videos']} real cine loops ({st['pairs']} frames): mean "
              f"{lags}; nearer frame steadier in {100 * st['share_nearer_steadier']:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
