"""``assistant seg-eval``: run the segmentation model on a folder of images with masks
and print per-class Dice, IoU and 95th-percentile Hausdorff distance, plus the needle
tip error. Decision support research tool, not for clinical use.

    seg-eval --images DIR --masks DIR --map nerve=1,vessel=2 [--spacing-mm S] [--json FILE]

Masks have the same names as the images (palette PNG, grey, or 0/255); ``--map`` says
which mask value is which of our classes (``fascia=255`` for a binary mask). For each class
it also says on how many images the model showed it as unsure (confidence below
``--min-confidence``, 0.5 as on the monitor view) and the mean Dice of those and of the rest:
whether "unsure" can be trusted on your scans.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from assistant.paths import file_in_the_way
from models.classes import CLASS_INDEX, CLASSES
from models.data import find_mask, list_images, read_image, read_mask
from models.metrics import dice, hd95, iou
from models.needle import needle_tip_from_mask

log = logging.getLogger(__name__)


class EvalError(ValueError):
    """A problem with seg-eval's inputs, said in words."""


def parse_map(text: str) -> dict[str, int]:
    """``"nerve=1,vessel=2"`` -> {"nerve": 1, "vessel": 2}; unknown class names and bad
    values raise EvalError naming them."""
    out: dict[str, int] = {}
    if not text or not text.strip():
        raise EvalError("--map is empty: give CLASS=VALUE pairs, e.g. nerve=1,vessel=2")
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise EvalError(f"--map item {part!r} is not CLASS=VALUE")
        name, _, val = (s.strip() for s in part.partition("="))
        if name not in CLASS_INDEX or name == "background":
            raise EvalError(f"--map names unknown class {name!r}; known classes: "
                            f"{', '.join(CLASSES[1:])}")
        try:
            v = int(val)
        except ValueError:
            raise EvalError(f"--map value for {name!r} must be an integer, got {val!r}") from None
        if not 0 <= v <= 65535:
            raise EvalError(f"--map value for {name!r} must be 0..65535, got {v}")
        if name in out:
            raise EvalError(f"--map gives class {name!r} twice")
        same = [n for n, w in out.items() if w == v]
        if same:
            raise EvalError(f"--map gives value {v} to both {same[0]!r} and {name!r}")
        out[name] = v
    if not out:
        raise EvalError("--map has no CLASS=VALUE pairs")
    return out


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs; every image must have a mask."""
    images = list_images(images_dir)
    mdir = Path(masks_dir)
    if not mdir.is_dir():
        raise FileNotFoundError(f"mask folder {str(mdir)!r} does not exist")
    pairs, missing = [], []
    for p in images:
        try:
            pairs.append((p, find_mask(mdir, p)))
        except FileNotFoundError:
            missing.append(p.name)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"no mask in {str(mdir)!r} for {len(missing)} image(s): "
                                f"{', '.join(missing[:5])}{more}")
    return pairs


def evaluate_pairs(pairs: list[tuple[Path, Path]], mapping: dict[str, int], segment,
                   spacing_mm: float | None = None, min_confidence: float = 0.5) -> dict:
    """Score ``segment(image)`` (labels, or an output with ``labels`` and ``confidence``) on
    the pairs. Per class: the mean over the images whose mask holds the class; hd95 over
    those where the model found it too. With confidences: of the images where the model
    shows the class, how many it calls unsure (confidence < ``min_confidence``, as the
    monitor view does) and the mean Dice of those and of the rest."""
    acc = {name: {"dice": [], "iou": [], "hd95_px": [], "missed": 0, "sure": [], "unsure": []}
           for name in mapping}
    tip_err: list[float] = []
    needle_images = 0
    skipped: list[dict] = []  # pairs that could not be scored, each with its reason
    seen_values: set[int] = set()
    for img_path, mask_path in pairs:
        try:
            image = read_image(img_path)
            mask = read_mask(mask_path)
            if mask.shape[:2] != image.shape[:2]:
                raise EvalError(f"mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} "
                                f"but image {img_path.name} is "
                                f"{image.shape[1]}x{image.shape[0]}")
        except ValueError as exc:  # one bad file costs that pair, not the others
            skipped.append({"image": img_path.name, "why": str(exc)})
            continue
        seen_values.update(v for v in mapping.values() if (mask == v).any())
        out = segment(image)
        labels = getattr(out, "labels", out)
        confidence = getattr(out, "confidence", None)
        for name, value in mapping.items():
            gt = mask == value
            if not gt.any():
                continue
            pred = labels == CLASS_INDEX[name]
            a = acc[name]
            a["dice"].append(dice(pred, gt))
            a["iou"].append(iou(pred, gt))
            if confidence is not None and pred.any():
                c = float(confidence[CLASS_INDEX[name]])
                a["unsure" if c < min_confidence else "sure"].append(a["dice"][-1])
            h = hd95(pred, gt)
            if h is None:
                a["missed"] += 1
            else:
                a["hd95_px"].append(h)
            if name == "needle":
                needle_images += 1
                g = needle_tip_from_mask(gt)
                p = needle_tip_from_mask(pred)
                if g is not None and p is not None:
                    tip_err.append(float(np.hypot(p[0][0] - g[0][0], p[0][1] - g[0][1])))
    per_class = {}
    for name, a in acc.items():
        n = len(a["dice"])
        per_class[name] = {
            "dice": float(np.mean(a["dice"])) if n else None,
            "dice_sd": float(np.std(a["dice"])) if n else None,
            "iou": float(np.mean(a["iou"])) if n else None,
            "hd95_px": float(np.mean(a["hd95_px"])) if a["hd95_px"] else None,
            "images": n,
            "missed": a["missed"],
        }
        if a["sure"] or a["unsure"]:
            per_class[name]["sure_images"] = len(a["sure"])
            per_class[name]["unsure_images"] = len(a["unsure"])
            per_class[name]["sure_dice"] = float(np.mean(a["sure"])) if a["sure"] else None
            per_class[name]["unsure_dice"] = float(np.mean(a["unsure"])) if a["unsure"] else None
    if len(skipped) == len(pairs):
        raise EvalError(f"no pair could be scored; first: {skipped[0]['image']}: "
                        f"{skipped[0]['why']}")
    result = {"per_class": per_class,
              "needle_tip_error_px": float(np.median(tip_err)) if tip_err else None,
              "images": len(pairs) - len(skipped),
              "skipped": skipped,
              "values_in_no_mask": {n: v for n, v in mapping.items() if v not in seen_values}}
    if tip_err:
        result["needle_tip_error_px_p90"] = float(np.percentile(tip_err, 90))
    if "needle" in mapping:
        result["needle_tip_found"] = len(tip_err)
        result["needle_images"] = needle_images
        if spacing_mm and tip_err:
            result["needle_tip_error_mm"] = float(np.median(tip_err)) * spacing_mm
            result["needle_tip_error_mm_p90"] = result["needle_tip_error_px_p90"] * spacing_mm
    return result


def format_table(result: dict, spacing_mm: float | None = None) -> str:
    lines = [f"{'class':<10} {'images':>6} {'Dice':>7} {'(sd)':>7} {'IoU':>7} {'HD95 px':>8} {'missed':>6}"]
    f = lambda v, w=7: f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    for name, r in result["per_class"].items():
        lines.append(f"{name:<10} {r['images']:>6} {f(r['dice'])} {f(r['dice_sd'])} "
                     f"{f(r['iou'])} {f(r['hd95_px'], 8)} {r['missed']:>6}")
    for name, r in result["per_class"].items():
        if "unsure_images" in r:
            lines.append(f"{name}: shown as unsure on {r['unsure_images']} images (Dice "
                         f"{f(r['unsure_dice'], 0).strip()}), as sure on {r['sure_images']} "
                         f"(Dice {f(r['sure_dice'], 0).strip()})")
    if "needle_images" in result:
        e = result["needle_tip_error_px"]
        s = "needle tip error: " + (f"median {e:.1f} px" if e is not None else "no tips found")
        if e is not None and spacing_mm:
            s += f" = {e * spacing_mm:.2f} mm"
        if e is not None:
            e90 = result["needle_tip_error_px_p90"]
            s += f", p90 {e90:.1f} px" + (f" = {e90 * spacing_mm:.2f} mm" if spacing_mm else "")
        s += f" ({result['needle_tip_found']} of {result['needle_images']} needles found)"
        lines.append(s)
    for n, v in result.get("values_in_no_mask", {}).items():
        lines.append(f"warning: no mask holds the value {v} given to {n!r} in --map")
    for sk in result.get("skipped", []):
        lines.append(f"skipped {sk['image']}: {sk['why']}")
    skip = f", {len(result['skipped'])} skipped" if result.get("skipped") else ""
    lines.append(f"images: {result['images']}{skip}  (not for clinical use)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from models.segmenter import INT8_WEIGHTS
    ap = argparse.ArgumentParser(prog="assistant seg-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--images", required=True, help="folder of images (any size, grey or colour)")
    ap.add_argument("--masks", required=True, help="folder of masks with the same names")
    ap.add_argument("--map", required=True, dest="mapping",
                    help="class=value pairs, e.g. nerve=1,vessel=2 or fascia=255")
    ap.add_argument("--spacing-mm", type=float, default=None, help="mm per pixel, for the tip error in mm")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--model", default="", help="ONNX model (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--int8-weights", choices=INT8_WEIGHTS, default="auto",
                    help="an int8 model's weights as quantized (s8), as u8 (exact) or in 7 bits "
                         "(s7); auto: u8 on an x86 CPU without VNNI, where s8 sums saturate "
                         "(as the runtime does)")
    ap.add_argument("--min-confidence", type=float, default=0.5,
                    help="below this a shown class counts as unsure (the monitor view's default)")
    args = ap.parse_args(argv)
    try:
        if args.spacing_mm is not None and not (math.isfinite(args.spacing_mm)
                                                and args.spacing_mm > 0):
            raise EvalError(f"--spacing-mm must be a number > 0, got {args.spacing_mm}")
        if args.threads < 1:
            raise EvalError(f"--threads must be >= 1, got {args.threads}")
        if args.json:
            j = Path(args.json)
            if j.is_dir():
                raise EvalError(f"--json {args.json} is a folder; give a file name")
            in_the_way = file_in_the_way(j.parent)
            if in_the_way is not None:
                raise EvalError(f"--json {args.json}: {in_the_way} is a file, not a folder")
        mapping = parse_map(args.mapping)
        pairs = pair_files(args.images, args.masks)
        from models.segmenter import Segmenter
        from models.settings import SegmentationSettings

        seg = Segmenter(SegmentationSettings(model_path=args.model, threads=args.threads,
                                             int8_weights=args.int8_weights))
        if not 0.0 <= args.min_confidence <= 1.0:
            raise EvalError(f"--min-confidence must be in [0, 1], got {args.min_confidence}")
        result = evaluate_pairs(pairs, mapping, seg.segment, args.spacing_mm, args.min_confidence)
        result["model"] = seg.name
        result["model_sha256"] = seg.manifest.get("sha256")
    except (OSError, ValueError) as exc:
        print(f"seg-eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result, args.spacing_mm))
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1))
        except OSError as exc:
            print(f"seg-eval: error: cannot write --json {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
