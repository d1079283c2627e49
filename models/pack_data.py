"""Pack the real training data small enough to travel to a lent GPU machine, and check it.

    python -m models.pack_data --data ../shared/data --out .gpu/data [--max-side usgra_seg=400 dltrack_apo=320]
    python -m models.pack_data --sim-caches .gpu/cache     # on the GPU machine: the simulated frames

A device run takes the working tree and at most 64 MiB with it; ``usgra_seg`` and
``dltrack_apo`` as shared are 76 MB. Each image is downsized (area interpolation) so its
longer side is at most ``--max-side`` pixels and saved as a grey PNG; each mask is read as
the trainer reads it (``models.data.read_mask``: palette indices, grey values), downsized by
nearest neighbour and saved as a grey PNG of those same values. The training crop covers at
least 74 % of a side and is resized to 192 px, so 320-400 px stays downsampling.

Then the packed folder is loaded back by the trainer's own loaders and compared with the
original, image by image: the same names in the same order (the cross-validation folds are
by position), the same classes present and each class's share of the frame within 2
percentage points. Any difference is an error naming the image; nothing is trusted
unchecked (a palette mask re-saved as a grey image once turned usgra's nerve and vessel
values 1 and 2 into 38 and 75, and a GPU run learnt that no real image holds either).
Training only (the loaders import PyTorch); the shipped data is never committed.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from models.data import list_images, read_grey, read_mask

DATASETS = ("usgra_seg", "dltrack_apo")
DEFAULT_MAX_SIDE = {"usgra_seg": 400, "dltrack_apo": 320}
MAX_SHARE_DIFF = 0.02  # per class, fraction of the frame


def pack_dataset(src: Path, dst: Path, name: str, max_side: int) -> int:
    """Write ``src/name`` downsized into ``dst/name``; returns the number of images."""
    (dst / name / "images").mkdir(parents=True, exist_ok=True)
    (dst / name / "masks").mkdir(parents=True, exist_ok=True)
    for extra in (src / name).iterdir():  # licences and notes travel with the data
        if extra.is_file():
            shutil.copy2(extra, dst / name / extra.name)
    n = 0
    for p in list_images(src / name / "images"):
        img = read_grey(p)
        mask = read_mask(src / name / "masks" / p.name)
        if mask.max() > 255:
            raise ValueError(f"mask {str(src / name / 'masks' / p.name)!r}: values above 255 "
                             "do not fit a grey PNG")
        mask = mask.astype(np.uint8)
        h, w = img.shape
        f = min(1.0, max_side / max(h, w))
        if f < 1.0:
            size = (max(1, round(w * f)), max(1, round(h * f)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        out = (dst / name / "images" / p.name).with_suffix(".png")
        if out.name != p.name:
            raise ValueError(f"{p}: only PNG images keep their names when packed")
        cv2.imwrite(str(out), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        cv2.imwrite(str(dst / name / "masks" / p.name), mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        n += 1
    return n


def _shares(labels: np.ndarray) -> dict[int, float]:
    vals, counts = np.unique(labels, return_counts=True)
    return {int(v): c / labels.size for v, c in zip(vals, counts) if v}


def verify(src: Path, dst: Path) -> dict[str, int]:
    """Load both with the trainer's loaders and compare; returns images per dataset."""
    from models.train import load_dltrack, load_usgra

    checked = {}
    for name, load in (("usgra_seg", load_usgra), ("dltrack_apo", load_dltrack)):
        a, b = load(src), load(dst)
        if [s.name for s in a] != [s.name for s in b]:
            raise ValueError(f"{dst / name}: the images differ from {src / name} in names or "
                             "order (the cross-validation folds are by position)")
        for sa, sb in zip(a, b):
            ha, hb = _shares(sa.labels), _shares(sb.labels)
            if set(ha) != set(hb):
                raise ValueError(f"{dst / name / 'masks' / sb.name}: classes {sorted(hb)}, the "
                                 f"original holds {sorted(ha)}")
            worst = max((abs(ha[c] - hb[c]) for c in ha), default=0.0)
            if worst > MAX_SHARE_DIFF:
                raise ValueError(f"{dst / name / 'masks' / sb.name}: a class's share of the "
                                 f"frame moved by {worst:.3f} (allowed {MAX_SHARE_DIFF})")
        checked[name] = len(b)
    return checked


# the simulated-frame caches models.train reads (n, seed, make_sim options, file stem): the
# recipes' --sim 600, the held-out 60, --sim-needle 300, --sim-la 300, --sim-artery 100 and the
# needle frames a full-data run is scored on; each depends on its seed alone
SIM_CACHES = [(600, 1000, {}, "sim_600_1000"), (60, 99999, {}, "sim_60_99999"),
              (300, 3000, {"needle_only": True}, "simneedle_300_3000"),
              (300, 5000, {"la": True}, "simla_300_5000"),
              (100, 7000, {"artery": True}, "simartery_100_7000"),
              (60, 88888, {"needle_only": True}, "simneedle_60_88888")]


def _one_cache(job: tuple) -> str:
    from models.train import make_sim

    folder, (n, seed, kw, stem) = job
    Path(folder).mkdir(parents=True, exist_ok=True)
    make_sim(n, seed, cache=Path(folder) / f"{stem}.npz", **kw)
    return stem


def build_sim_caches(folder: Path, processes: int = len(SIM_CACHES)) -> list[str]:
    """Render every cache in ``SIM_CACHES`` into ``folder`` (one process each, so that
    training processes started afterwards only read them; side-by-side runs that render the
    same cache would race on its file)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as ex:
        return list(ex.map(_one_cache, [(str(folder), spec) for spec in SIM_CACHES]))


def _max_sides(items: list[str]) -> dict[str, int]:
    out = dict(DEFAULT_MAX_SIDE)
    for item in items:
        name, _, value = item.partition("=")
        if name not in DATASETS or not value.isdigit() or int(value) < 64:
            raise ValueError(f"--max-side {item!r}: expected NAME=PIXELS with NAME one of "
                             f"{', '.join(DATASETS)} and PIXELS >= 64")
        out[name] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.pack_data",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                    / "data", help="folder holding usgra_seg and dltrack_apo")
    ap.add_argument("--out", type=Path, default=None, help="folder for the packed data")
    ap.add_argument("--sim-caches", type=Path, default=None, metavar="DIR",
                    help="instead: render the simulated-frame caches of models.train into DIR")
    ap.add_argument("--max-side", nargs="*", default=[], metavar="NAME=PIXELS",
                    help="longest side per dataset (default usgra_seg=400 dltrack_apo=320)")
    args = ap.parse_args(argv)
    if args.sim_caches is not None:
        for stem in build_sim_caches(args.sim_caches):
            print(f"cache {args.sim_caches / stem}.npz")
        return 0
    if args.out is None:
        ap.error("--out is required (or --sim-caches DIR)")
    try:
        sides = _max_sides(args.max_side)
        if args.out.resolve() == args.data.resolve():
            raise ValueError(f"--out {args.out} is the data folder itself")
        for name in DATASETS:
            if not (args.data / name / "images").is_dir():
                raise ValueError(f"{args.data / name / 'images'}: not found (--data must hold "
                                 f"{' and '.join(DATASETS)})")
            shutil.rmtree(args.out / name, ignore_errors=True)
            n = pack_dataset(args.data, args.out, name, sides[name])
            size = sum(f.stat().st_size for f in (args.out / name).rglob("*") if f.is_file())
            print(f"{name}: {n} images, longest side <= {sides[name]} px, {size / 1e6:.1f} MB")
        checked = verify(args.data, args.out)
    except ValueError as e:
        print(f"python -m models.pack_data: error: {e}", file=sys.stderr)
        return 2
    print(f"checked against the originals: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
