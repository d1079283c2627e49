"""Does the segmentation confidence say when an outline is wrong? Cross-validated on REAL images.

    .venv/bin/python benchmarks/seg_confidence_cv.py --fold-models DIR [--data ../shared/data] [--json FILE]
        [--int8-weights auto|s8|u8|s7]

DIR holds the fold models of ``python -m models.train --cv 3 ... --cv-save DIR`` (fold0.onnx and
its .json naming the held-out images, ...). Each fold model segments its own held-out REAL images
with the shipped manifest's post-processing; for every image where a class is shown, the raw
confidence (mean winning probability of its pixels) and the fraction of the frame it covers are
paired with the image's Dice for it (usgra_seg nerve and vessel, dltrack_apo fascia). Per class
and per feature set (the raw confidence; log10 of the area; both), a logistic regression of
"Dice >= 0.5" is fit on two folds and scored on the third (log-loss and Brier against the
training folds' base rate, also per fold; "unsure" = calibrated < 0.5), then fit on all folds:
the ``w``, ``w_log_area`` and ``c`` that the manifest's ``confidence_calibration`` holds.

Which map a class gets (the rule): the raw confidence alone unless another set lowers the
cross-fold log-loss by at least ``MIN_GAIN``; none if the chosen one does not beat the base
rate. "nested" scores that rule honestly: the choice made on two folds (by their own 2-fold
cross-validation), the chosen map scored on the third.
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
from models.segmenter import INT8_WEIGHTS, WEIGHT_VARIANTS, Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402

GOOD_DICE = 0.5
MIN_GAIN = 0.01  # log-loss a richer map must save to replace the raw confidence alone
FEATURE_SETS = (("conf",), ("log_area",), ("conf", "log_area"))
SETS = (("usgra_seg", "held_out_usgra", {"nerve": 1, "vessel": 2}),
        ("dltrack_apo", "held_out_dltrack", {"fascia": 255}))


def rows_for_fold(model: Path, data: Path, post_process: dict, tmp: Path, k: int,
                  int8_weights: str = "auto") -> list[dict]:
    """(class, raw confidence, area, Dice) for each held-out image where the fold model
    shows the class. An int8 fold model's other encodings of its weights (its manifest's
    ``u8_variant``, ``s7_variant``) go with it, so ``int8_weights`` picks among them as the
    runtime does."""
    manifest = json.loads(model.with_suffix(".json").read_text())
    manifest["post_process"] = post_process
    manifest.pop("confidence_calibration", None)  # raw confidences
    dst = tmp / model.name
    shutil.copy(model, dst)
    for key in WEIGHT_VARIANTS.values():
        if key in manifest and (model.parent / manifest[key]["file"]).is_file():
            shutil.copy(model.parent / manifest[key]["file"], tmp / manifest[key]["file"])
    dst.with_suffix(".json").write_text(json.dumps(manifest))
    seg = Segmenter(SegmentationSettings(model_path=str(dst), threads=1,
                                         int8_weights=int8_weights)).load()
    print(f"{model.name}: runs {seg.run_path.name}", file=sys.stderr)
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
                                 "conf": out.confidence[CLASSES.index(cls)],
                                 "area": out.area_frac[CLASSES.index(cls)]})
    return rows


def features(rows: list[dict], names: tuple) -> np.ndarray:
    cols = {"conf": lambda q: q["conf"],
            "log_area": lambda q: float(np.log10(max(q["area"], 1e-6)))}
    x = np.array([[cols[n](q) for n in names] for q in rows], float)
    return x.reshape(len(rows), len(names))


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights (one per column of x, then the intercept) of P(y) = 1 / (1 + exp(-(x w + c)))
    by Newton's method (tiny L2 for stability)."""
    x = x.reshape(len(x), -1)
    X = np.concatenate([x, np.ones((len(x), 1))], 1)
    th = np.zeros(X.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ th))
        grad = X.T @ (p - y) + 1e-3 * th
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(len(th))
        th -= np.linalg.solve(hess, grad)
    return th


def logistic(th: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return 1 / (1 + np.exp(-(x @ th[:-1] + th[-1])))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def cross_fold(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each fold's predictions from a fit on the other folds, and the other folds' base rate."""
    p, base = np.zeros(len(y)), np.zeros(len(y))
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        p[te], base[te] = logistic(fit_logistic(x[tr], y[tr]), x[te]), y[tr].mean()
    return p, base


def choose(r: list[dict], y: np.ndarray, fold: np.ndarray) -> tuple | None:
    """The rule: the raw confidence alone unless another set saves MIN_GAIN of cross-fold
    log-loss (the largest saving wins); None if the chosen set does not beat the base rate."""
    scores = {}
    for names in FEATURE_SETS:
        p, base = cross_fold(features(r, names), y, fold)
        scores[names] = log_loss(p, y)
    best = min(scores, key=scores.get)
    pick = best if scores[best] <= scores[("conf",)] - MIN_GAIN else ("conf",)
    return pick if scores[pick] < log_loss(base, y) else None


def analyse(rows: list[dict], cls: str) -> dict:
    r = [q for q in rows if q["cls"] == cls]
    dice = np.array([q["dice"] for q in r])
    y = (dice >= GOOD_DICE).astype(float)
    fold = np.array([q["fold"] for q in r])
    res = {"images": len(r), "good": int(y.sum()), "maps": {}}
    for names in FEATURE_SETS:
        x = features(r, names)
        p, base = cross_fold(x, y, fold)
        unsure = p < 0.5
        th = fit_logistic(x, y)
        res["maps"]["+".join(names)] = {
            "log_loss": round(log_loss(p, y), 3), "log_loss_base_rate": round(log_loss(base, y), 3),
            "per_fold": [f"{log_loss(p[fold == k], y[fold == k]):.3f} (base "
                         f"{log_loss(base[fold == k], y[fold == k]):.3f})"
                         for k in np.unique(fold)],
            "brier": round(float(np.mean((p - y) ** 2)), 3),
            "brier_base_rate": round(float(np.mean((base - y) ** 2)), 3),
            "unsure": int(unsure.sum()),
            "unsure_mean_dice": round(float(dice[unsure].mean()), 2) if unsure.any() else None,
            "sure_mean_dice": round(float(dice[~unsure].mean()), 2) if (~unsure).any() else None,
            "poor_flagged": f"{int((unsure & (y == 0)).sum())} of {int((y == 0).sum())}",
            "good_flagged": f"{int((unsure & (y == 1)).sum())} of {int(y.sum())}",
            "fit": {("w" if n == "conf" else "w_log_area"): round(float(v), 3)
                    for n, v in zip(names, th)} | {"c": round(float(th[-1]), 3)}}
    pick = choose(r, y, fold)
    res["calibrate"] = "+".join(pick) if pick else None
    # nested: the rule applied to two folds, its map fit on them and scored on the third
    p, base, picks = np.zeros(len(y)), np.zeros(len(y)), []
    for k in np.unique(fold):
        tr = fold != k
        rt = [q for q, m in zip(r, tr) if m]
        pk = choose(rt, y[tr], fold[tr])
        picks.append("+".join(pk) if pk else "none")
        base[~tr] = y[tr].mean()
        p[~tr] = logistic(fit_logistic(features(rt, pk), y[tr]), features(
            [q for q, m in zip(r, tr) if not m], pk)) if pk else y[tr].mean()
    res["nested"] = {"log_loss": round(log_loss(p, y), 3),
                     "log_loss_base_rate": round(log_loss(base, y), 3),
                     "picks": picks}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fold-models", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--manifest", type=Path, default=ROOT / "models" / "pecs_seg.json",
                    help="whose post_process to apply (default: the shipped model's)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--int8-weights", default="auto", choices=INT8_WEIGHTS,
                    help="segmentation.int8_weights: which encoding of an int8 fold model runs")
    args = ap.parse_args(argv)
    # fold0.onnx, fold1.onnx, ... (not their fold0_u8.onnx / fold0_s7.onnx variants)
    folds = sorted(p for p in args.fold_models.glob("fold*.onnx") if p.stem[4:].isdigit())
    if not folds:
        print(f"no fold*.onnx in {args.fold_models}", file=sys.stderr)
        return 2
    post = json.loads(args.manifest.read_text())["post_process"]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in folds:
            rows += rows_for_fold(model, args.data, post, Path(tmp), int(model.stem[4:]),
                                  args.int8_weights)
    result = {}
    print(f"REAL held-out images, {len(folds)} fold models; good = Dice >= {GOOD_DICE}; "
          "cross-fold: fit on the other folds, scored on this one")
    for cls in ("nerve", "vessel", "fascia"):
        a = analyse(rows, cls)
        result[cls] = a
        print(f"{cls}: {a['images']} images ({a['good']} good); the rule picks: "
              f"{a['calibrate'] or 'nothing (no map beats the base rate)'}; nested: log-loss "
              f"{a['nested']['log_loss']} (base rate {a['nested']['log_loss_base_rate']}), "
              f"picks {', '.join(a['nested']['picks'])}")
        for name, m in a["maps"].items():
            print(f"  {name:<14} log-loss {m['log_loss']} (base rate {m['log_loss_base_rate']}; "
                  f"per fold {', '.join(m['per_fold'])}), Brier {m['brier']} "
                  f"({m['brier_base_rate']}); unsure {m['unsure']}: Dice "
                  f"{m['unsure_mean_dice']} against {m['sure_mean_dice']}; "
                  f"poor flagged {m['poor_flagged']}, good flagged {m['good_flagged']}; "
                  f"all folds: {m['fit']}")
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
