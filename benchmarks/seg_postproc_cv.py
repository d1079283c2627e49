"""Post-processing of the segmentation, measured by 3-fold cross-validation on REAL data
with the fold models (no retraining): Dice per class and fold, before (the rules an old
manifest gets: one threshold 0.5, speckle removal for nerve/vessel) and after (the
shipped manifest's ``post_process``), plus the time post-processing takes at 562x542.

    .venv/bin/python benchmarks/seg_postproc_cv.py --data ../shared/data --fold-models /tmp/segcv
        [--manifest models/pecs_seg.json] [--tta] [--nested [--grid wide]] [--sim] [--timing-n 200]
        [--folds 0] [--int8-weights auto|s8|u8|s7]

The fold models come from ``python -m models.train --cv 3 ... --cv-save DIR`` (fold0.onnx,
fold1.onnx, fold2.onnx with their manifests); each is scored on its own held-out blocks,
given by ``models.train.folds`` (checked against the held-out names in the fold's
manifest); ``--folds 0`` scores only those folds (a folder holding just fold0.onnx, e.g.
a longer training of one fold). ``--tta``: also the horizontal-flip test-time
augmentation. ``--nested``: leave-one-fold-out choice among a small grid (the settings
chosen on two folds, scored on the third), the honest figure for settings tuned on these
folds; ``--grid wide`` chooses each class's threshold too (rule PP16). ``--sim``: the same
rules on held-out SIMULATED PECS II frames (seeds 99999 and 88888; the shipped model and
the fold models), where the fascia is thin and broken: a rule
that gains on the REAL aponeuroses can lose there. One CPU thread throughout.
Decision support research tool, not for clinical use.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from models.classes import CLASS_INDEX  # noqa: E402
from models.metrics import dice  # noqa: E402
from models.segmenter import (INT8_WEIGHTS, BlobRule, PostProcess, Segmenter,  # noqa: E402
                              parse_post_process, pre_process_image, probs_to_output)
from models.settings import SegmentationSettings  # noqa: E402

# (dataset, class): the classes each real dataset labels
TARGETS = [("usgra", "nerve"), ("usgra", "vessel"), ("dltrack", "fascia")]


def fold_probs(model: Path, samples: list, tta: bool, int8_weights: str = "auto") -> list[np.ndarray]:
    seg = Segmenter(SegmentationSettings(model_path=str(model), threads=1,
                                         int8_weights=int8_weights)).load()
    print(f"{model.name}: runs {seg.run_path.name}", flush=True)
    out = []
    for s in samples:
        x = pre_process_image(s.image, seg.input_hw)
        p = seg.predict(x)[0]
        if tta:
            p = 0.5 * (p + seg.predict(np.ascontiguousarray(x[..., ::-1]))[0][..., ::-1])
        out.append(p.astype(np.float32))
    return out


def score(folds_data: list, post: PostProcess, sources=("usgra", "dltrack")) -> dict:
    """{class: [mean Dice per fold]} over the held-out images holding the class, and
    {"fp:class": [(frames without it where it is 'present', such frames) per fold]}."""
    res: dict = {}
    for samples, probs in folds_data:
        acc: dict = {}
        for s, p in zip(samples, probs):
            if s.source not in sources:
                continue
            out = probs_to_output(p, s.image.shape[:2], post=post)
            for src, name in TARGETS:
                if src != s.source:
                    continue
                ci = CLASS_INDEX[name]
                gt = s.labels == ci
                if gt.any():
                    acc.setdefault(name, []).append(dice(out.labels == ci, gt))
                else:
                    acc.setdefault("fp:" + name, []).append(bool(out.present[ci]))
        for k, v in acc.items():
            res.setdefault(k, []).append(float(np.mean(v)) if not k.startswith("fp:")
                                         else (int(np.sum(v)), len(v)))
    return res


def msd(v: list[float]) -> str:
    if len(v) < 2:
        return f"{np.mean(v):.3f} (one fold)"
    return f"{np.mean(v):.3f} +- {np.std(v, ddof=1):.3f}"


def table(rows: list[tuple[str, dict]], fold_ids=(0, 1, 2)) -> str:
    lines = [f"{'class':<8} {'post-processing':<28} "
             + " ".join(f"{'fold ' + str(f):>7}" for f in fold_ids) + f"  {'mean +- sd':>15}"]
    for _, name in TARGETS:
        for label, r in rows:
            v = r.get(name)
            if not v:
                continue
            lines.append(f"{name:<8} {label:<28} " + " ".join(f"{x:7.3f}" for x in v)
                         + f"  {msd(v):>15}")
    for label, r in rows:
        fp = r.get("fp:vessel")
        if fp:
            lines.append(f"usgra frames without a vessel where one is shown ({label}): "
                         + ", ".join(f"{a}/{b}" for a, b in fp)
                         + f" (total {sum(a for a, _ in fp)}/{sum(b for _, b in fp)})")
    return "\n".join(lines)


def with_rule(post: PostProcess, name: str, **kw) -> PostProcess:
    rules = dict(post.rules)
    base = rules.get(name, BlobRule())
    rules[name] = BlobRule(**{**base.__dict__, **kw})
    return dataclasses.replace(post, rules=rules)


def grids(name: str) -> dict:
    """The settings ``--nested`` chooses among, per (dataset, class). "small": v7's choice
    (model card, "Post-processing, chosen by cross-validation"); "wide": rule PP16's (model
    card, "Post-processing chosen again for v16i8"), the class's threshold too."""
    if name == "small":
        return {
            ("usgra", "vessel"): [dict(min_blob_mean_prob=b, keep_largest=b > 0)
                                  for b in (0.0, 0.7, 0.75, 0.8, 0.85, 0.9)],
            ("usgra", "nerve"): [dict(min_blob_mean_prob=b, keep_largest=b > 0)
                                 for b in (0.0, 0.7, 0.75, 0.8, 0.85, 0.9)],
            ("dltrack", "fascia"): [dict(threshold=t, min_blob_frac=f) for t in (0.4, 0.5)
                                    for f in (0.0, 0.001, 0.002, 0.003, 0.004)],
        }
    if name == "wide":
        return {
            ("usgra", "nerve"): [dict(threshold=t, min_blob_frac=0.0002, min_blob_mean_prob=b,
                                      keep_largest=b > 0)
                                 for t in (0.4, 0.5, 0.6, 0.7) for b in (0.0, 0.7, 0.8)],
            ("usgra", "vessel"): [dict(threshold=t, min_blob_frac=0.0002, min_blob_mean_prob=b,
                                       keep_largest=b > 0)
                                  for t in (0.4, 0.5, 0.6) for b in (0.0, 0.7, 0.8, 0.85, 0.9)],
            ("dltrack", "fascia"): [dict(threshold=t, min_blob_frac=f) for t in (0.3, 0.4, 0.5)
                                    for f in (0.0005, 0.001)],
        }
    raise ValueError(f"grid must be 'small' or 'wide', got {name!r}")


def nested(folds_data: list, start: PostProcess, grid_name: str = "small") -> list[str]:
    """Leave-one-fold-out choice of each class's settings among a grid (``grids``), beside
    the starting (shipped) settings on the same folds."""
    lines = []
    for (src, name), grid in grids(grid_name).items():
        M = np.array([score(folds_data, with_rule(start, name, **g), (src,))[name] for g in grid])
        base = score(folds_data, start, (src,))[name]
        lines.append(f"  {name}: the starting settings {start.rules.get(name, BlobRule())} "
                     f"(threshold {start.threshold_for(name)}): {msd(base)} per fold "
                     + " ".join(f"{x:.3f}" for x in base))
        lines += lofo(name, grid, M)
        if name == "fascia" and grid_name == "small":  # only the rules that do not lower
            ok = [i for i, g in enumerate(grid) if g["min_blob_frac"] <= 0.001]  # SIM fascia
            lines += lofo(name + " (min_blob_frac <= 0.001)", [grid[i] for i in ok], M[ok])
    return lines


def lofo(name: str, grid: list, M: np.ndarray) -> list[str]:
    """M[setting, fold]: for each fold, the setting best on the other folds, scored on it."""
    lines, held = [], []
    for f in range(M.shape[1]):
        j = int(np.argmax(np.delete(M, f, axis=1).mean(1)))
        held.append(M[j, f])
        lines.append(f"  {name}: fold {f} held out, chosen on the others {grid[j]} -> "
                     f"{M[j, f]:.3f}")
    lines.append(f"  {name}: leave-one-fold-out {msd(held)} per fold "
                 + " ".join(f"{x:.3f}" for x in held)
                 + f" ({len(grid)} settings; chosen on all folds: {grid[int(np.argmax(M.mean(1)))]})")
    return lines


def sim_check(fold_models: Path, fold_ids, posts: list[tuple[str, PostProcess]]) -> list[str]:
    """Dice of every class on held-out SIMULATED frames (as in the training log: at the
    stored 320x320 size) under each rule set: the shipped model on seeds 99999 (60 frames)
    and 88888 (60 needle frames), each fold model on 99999."""
    from models.classes import CLASSES
    from models.train import make_sim

    cache = Path("/tmp/seg_cache")
    cache.mkdir(parents=True, exist_ok=True)
    sim = make_sim(60, 99999, cache=cache / "sim_60_99999.npz")
    needle = make_sim(60, 88888, needle_only=True, cache=cache / "simneedle_60_88888.npz")
    runs = [("shipped, SIM 99999", "", sim), ("shipped, SIM needle 88888", "", needle)]
    runs += [(f"fold {f}, SIM 99999", str(fold_models / f"fold{f}.onnx"), sim) for f in fold_ids]
    names = ("nerve", "vessel", "fascia", "needle")
    lines = [f"{'model, frames':<28} {'post-processing':<26} " + " ".join(f"{n:>7}" for n in names)]
    for label, model, samples in runs:
        seg = Segmenter(SegmentationSettings(model_path=model, threads=1)).load()
        probs = [seg.predict(pre_process_image(s.image, seg.input_hw)) for s in samples]
        for plabel, pp in posts:
            acc: dict = {}
            for s, p in zip(samples, probs):
                lab = probs_to_output(p, s.image.shape[:2], post=pp).labels
                for n in names:
                    gt = s.labels == CLASSES.index(n)
                    if gt.any():
                        acc.setdefault(n, []).append(dice(lab == CLASSES.index(n), gt))
            lines.append(f"{label:<28} {plabel:<26} "
                         + " ".join(f"{np.mean(acc[n]):7.3f}" if n in acc else f"{'-':>7}" for n in names))
    return lines


def timing(post: PostProcess, legacy: PostProcess, folds_data: list, n: int) -> list[str]:
    """Post-processing time at 562x542 on one core: the fold-0 model's probabilities of
    real held-out images (more blobs than simulated frames), old rules and new rules
    alternating frame by frame (a shared host's load then hits both alike)."""
    cv2.setNumThreads(1)
    probs = folds_data[0][1]
    shape = (542, 562)
    ms: dict = {"before": [], "after": []}
    for i in range(n + 10):
        p = probs[i % len(probs)]
        for label, pp in (("before", legacy), ("after", post)):
            t = time.perf_counter()
            probs_to_output(p, shape, post=pp)
            if i >= 10:  # the first ones warm up
                ms[label].append((time.perf_counter() - t) * 1e3)
    b, a = np.asarray(ms["before"]), np.asarray(ms["after"])
    return [f"post-processing at 562x542, one core, {n} frames (real held-out images' "
            f"probabilities): old rules median {np.median(b):.2f} ms (p95 "
            f"{np.percentile(b, 95):.2f}), new rules median {np.median(a):.2f} ms "
            f"(p95 {np.percentile(a, 95):.2f}); extra per frame: median {np.median(a - b):+.2f} ms, "
            f"p95 {np.percentile(a - b, 95):+.2f} ms (load average {os.getloadavg()[0]:.1f})"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder with usgra_seg and dltrack_apo")
    ap.add_argument("--fold-models", required=True, help="folder with fold0.onnx, fold1.onnx, ...")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--manifest", default=str(Path(__file__).resolve().parents[1] / "models" / "pecs_seg.json"),
                    help="manifest whose post_process is 'after' (default: the shipped one)")
    ap.add_argument("--tta", action="store_true", help="also score horizontal-flip TTA")
    ap.add_argument("--nested", action="store_true", help="leave-one-fold-out choice on a grid")
    ap.add_argument("--grid", choices=("small", "wide"), default="small",
                    help="--nested: v7's small grid (default) or rule PP16's wide one, with "
                         "each class's threshold")
    ap.add_argument("--sim", action="store_true", help="also held-out simulated frames")
    ap.add_argument("--timing-n", type=int, default=200, help="frames to time (0: no timing)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--int8-weights", choices=INT8_WEIGHTS, default="auto",
                    help="int8 fold models: which encoding of their weights (segmentation."
                         "int8_weights; s7 needs each fold's s7 variant)")
    ap.add_argument("--folds", type=int, nargs="+", default=None,
                    help="score only these folds (0-based; default: all k)")
    args = ap.parse_args(argv)
    fold_ids = list(range(args.k)) if args.folds is None else sorted(set(args.folds))
    if args.nested and len(fold_ids) < 2:
        raise SystemExit("--nested needs at least two folds")
    cv2.setNumThreads(1)
    from models.train import folds, load_dltrack, load_usgra  # the CV's own split

    root = Path(args.data)
    us, dl = load_usgra(root), load_dltrack(root)
    fu, fd = folds(len(us), args.k), folds(len(dl), args.k)
    manifest = json.loads(Path(args.manifest).read_text())
    if "post_process" not in manifest:
        print(f"note: {args.manifest} has no post_process: 'after' = the default rules")
    after = parse_post_process(manifest.get("post_process"))
    after = dataclasses.replace(after, tta_flip=False)
    before = parse_post_process(None)
    print(f"before: {before}\nafter:  {after}")
    folds_data, folds_tta = [], []
    for k in fold_ids:
        model = Path(args.fold_models) / f"fold{k}.onnx"
        fm = json.loads(model.with_suffix(".json").read_text())
        te = [us[i] for i in fu[k]] + [dl[i] for i in fd[k]]
        if (fm.get("held_out_usgra") != [us[i].name for i in fu[k]]
                or fm.get("held_out_dltrack") != [dl[i].name for i in fd[k]]):
            raise SystemExit(f"{model}: its manifest's held-out images differ from folds()")
        t0 = time.time()
        folds_data.append((te, fold_probs(model, te, False, args.int8_weights)))
        if args.tta:
            folds_tta.append((te, fold_probs(model, te, True, args.int8_weights)))
        print(f"fold {k}: {model.name}, {len(fu[k])} usgra + {len(fd[k])} dltrack held out "
              f"({us[fu[k][0]].name}-{us[fu[k][-1]].name}, {dl[fd[k][0]].name}-{dl[fd[k][-1]].name}), "
              f"{time.time() - t0:.0f} s", flush=True)
    alt = with_rule(after, "fascia", min_blob_frac=0.003)
    rows = [("before (threshold 0.5)", score(folds_data, before)),
            ("after (manifest)", score(folds_data, after)),
            ("alt.: fascia blobs >= 0.3 %", score(folds_data, alt, ("dltrack",)))]
    if args.tta:
        rows += [("before + flip TTA", score(folds_tta, before)),
                 ("after + flip TTA", score(folds_tta, after))]
        result_tta = (rows[-2][1], rows[-1][1])
    print("\nREAL held out, Dice (mean over the images holding the class; sd over folds)")
    print(table(rows, fold_ids))
    result = {"before": dict(rows[0][1]), "after": dict(rows[1][1]),
              "post_process": manifest.get("post_process")}
    if args.folds is not None:
        result["folds"] = fold_ids
    result["alt_fascia_0.003"] = dict(rows[2][1])
    if args.tta:
        result["tta_before"], result["tta_after"] = dict(result_tta[0]), dict(result_tta[1])
    if args.nested:
        print("\nleave-one-fold-out selection (settings chosen on two folds, scored on the third)")
        lines = nested(folds_data, after, args.grid)
        print("\n".join(lines))
        result["nested"] = lines
    if args.sim:
        print("\nSIMULATED held-out frames (not real data), Dice")
        lines = sim_check(Path(args.fold_models), fold_ids,
                          [("before", before), ("after (manifest)", after),
                           ("alt.: fascia blobs >= 0.3 %", alt)])
        print("\n".join(lines))
        result["sim"] = lines
    if args.timing_n:
        lines = timing(after, before, folds_data, args.timing_n)
        print("\n" + "\n".join(lines))
        result["timing"] = lines
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
