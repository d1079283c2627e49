"""Does the segmentation confidence say when an outline is wrong? Cross-validated on REAL images.

    .venv/bin/python benchmarks/seg_confidence_cv.py --fold-models DIR [--data ../shared/data] [--json FILE]

DIR holds the fold models of ``python -m models.train --cv 3 ... --cv-save DIR`` (fold0.onnx and
its .json naming the held-out images, ...). Each fold model segments its own held-out REAL images
with the shipped manifest's post-processing; for every image where a class is shown, the raw
confidence (mean winning probability of its pixels) is paired with the image's Dice for it
(usgra_seg nerve and vessel, dltrack_apo fascia). Per class, a logistic regression of
"Dice >= 0.5" on the raw confidence is fit on two folds and scored on the third (log-loss and
Brier against the training folds' base rate; "unsure" = calibrated < 0.5), then fit on all folds:
the ``w`` and ``c`` that the manifest's ``confidence_calibration`` holds.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.classes import CLASSES  # noqa: E402
from models.data import read_image, read_mask  # noqa: E402
from models.segmenter import Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402

GOOD_DICE = 0.5
SETS = (("usgra_seg", "held_out_usgra", {"nerve": 1, "vessel": 2}),
        ("dltrack_apo", "held_out_dltrack", {"fascia": 255}))


def rows_for_fold(model: Path, data: Path, post_process: dict, tmp: Path, k: int) -> list[dict]:
    """(class, raw confidence, Dice) for each held-out image where the fold model shows the class."""
    manifest = json.loads(model.with_suffix(".json").read_text())
    manifest["post_process"] = post_process
    manifest.pop("confidence_calibration", None)  # raw confidences
    dst = tmp / model.name
    shutil.copy(model, dst)
    dst.with_suffix(".json").write_text(json.dumps(manifest))
    seg = Segmenter(SegmentationSettings(model_path=str(dst), threads=1)).load()
    rows = []
    for folder, key, cmap in SETS:
        for name in manifest[key]:
            out = seg.segment(read_image(data / folder / "images" / name))
            gt = read_mask(data / folder / "masks" / name)
            for cls, value in cmap.items():
                pred, true = out.labels == CLASSES.index(cls), gt == value
                if pred.any():
                    dice = 2 * float((pred & true).sum()) / (pred.sum() + true.sum())
                    rows.append({"fold": k, "cls": cls, "image": name, "dice": dice,
                                 "conf": out.confidence[CLASSES.index(cls)]})
    return rows


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """w, c of P(y) = 1 / (1 + exp(-(w x + c))) by Newton's method (tiny L2 for stability)."""
    X = np.stack([x, np.ones_like(x)], 1)
    th = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ th))
        grad = X.T @ (p - y) + 1e-3 * th
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(2)
        th -= np.linalg.solve(hess, grad)
    return float(th[0]), float(th[1])


def logistic(w: float, c: float, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(w * x + c)))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def analyse(rows: list[dict], cls: str) -> dict:
    r = [q for q in rows if q["cls"] == cls]
    x = np.array([q["conf"] for q in r])
    dice = np.array([q["dice"] for q in r])
    y = (dice >= GOOD_DICE).astype(float)
    fold = np.array([q["fold"] for q in r])
    p, base = np.zeros_like(x), np.zeros_like(x)
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        w, c = fit_logistic(x[tr], y[tr])
        p[te], base[te] = logistic(w, c, x[te]), y[tr].mean()
    unsure = p < 0.5
    w, c = fit_logistic(x, y)
    res = {"images": len(r), "good": int(y.sum()), "log_loss": round(log_loss(p, y), 3),
           "log_loss_base_rate": round(log_loss(base, y), 3),
           "brier": round(float(np.mean((p - y) ** 2)), 3),
           "brier_base_rate": round(float(np.mean((base - y) ** 2)), 3),
           "unsure": int(unsure.sum()),
           "unsure_mean_dice": round(float(dice[unsure].mean()), 2) if unsure.any() else None,
           "sure_mean_dice": round(float(dice[~unsure].mean()), 2) if (~unsure).any() else None,
           "poor_flagged": f"{int((unsure & (y == 0)).sum())} of {int((y == 0).sum())}",
           "good_flagged": f"{int((unsure & (y == 1)).sum())} of {int(y.sum())}",
           "w": round(w, 3), "c": round(c, 3), "raw_at_half": round(-c / w, 3)}
    res["calibrate"] = res["log_loss"] < res["log_loss_base_rate"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fold-models", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--manifest", type=Path, default=ROOT / "models" / "pecs_seg.json",
                    help="whose post_process to apply (default: the shipped model's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    folds = sorted(args.fold_models.glob("fold*.onnx"))
    if not folds:
        print(f"no fold*.onnx in {args.fold_models}", file=sys.stderr)
        return 2
    post = json.loads(args.manifest.read_text())["post_process"]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in folds:
            rows += rows_for_fold(model, args.data, post, Path(tmp), int(model.stem[4:]))
    result = {}
    print(f"REAL held-out images, {len(folds)} fold models; good = Dice >= {GOOD_DICE}; "
          "cross-fold: fit on the other folds, scored on this one")
    for cls in ("nerve", "vessel", "fascia"):
        a = analyse(rows, cls)
        result[cls] = a
        print(f"{cls:<7} {a['images']} images ({a['good']} good): log-loss {a['log_loss']} "
              f"(base rate {a['log_loss_base_rate']}), Brier {a['brier']} ({a['brier_base_rate']}); "
              f"unsure {a['unsure']}: Dice {a['unsure_mean_dice']} against {a['sure_mean_dice']}; "
              f"poor flagged {a['poor_flagged']}, good flagged {a['good_flagged']}; all folds: "
              f"w {a['w']}, c {a['c']} (0.5 at raw {a['raw_at_half']}); "
              f"calibrate: {'yes' if a['calibrate'] else 'no (no better than the base rate)'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
