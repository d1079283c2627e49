"""How steady and how close is the tracked needle tip? Simulated injections, filter by filter.

The clips of ``benchmarks/seg_la_clips.py`` (``--clips`` in-plane and ``--clips`` artery
clips from each ``--seed``, pooled, 20 fps): the needle goes in, stops, and local anaesthetic opens at its
tip. Each frame goes through the shipped segmentation once; its labels and needle confidence
then go through one needle tracker per ``--needle-filter`` (``alpha_beta``, ``one_euro``, or
``one_euro:C`` for a ``cutoff_per_mm_s`` of C). Against the simulator's true tip:

* advancing: the tracked tip's error (mm), median and p95, over the frames from 0.3 s after
  the needle enters until it arrives, where it is shown;
* still (from 0.55 s after it arrives): the share of frames on which the fluid rule's
  "still" test holds (``assistant.fluid``: the shown tip moved at most 1 mm over 0.5 s), and
  the tip's spread over the last 0.5 s (mm, the farthest from the newest), median and p95.

Prints one JSON line per filter; asserts nothing. SIMULATED data only.

    .venv/bin/python benchmarks/needle_track_clips.py --clips 8 --seed 19700 21700 \\
        --needle-filter alpha_beta,one_euro
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.fluid import _tip_still  # noqa: E402
from benchmarks.seg_la_clips import FPS, clip_frames, clip_seeds, tracker_for  # noqa: E402
from models.needle import NEEDLE  # noqa: E402
from models.segmenter import Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402
from models.simulator import clip_story_times  # noqa: E402

STILL_S, STILL_MM = 0.5, 1.0  # the fluid rule's defaults (AssistantSettings)


def spec_tracker(spec: str):
    """``alpha_beta``, ``one_euro`` or ``one_euro:C``: the shipped tracker with that filter."""
    name, _, c = spec.partition(":")
    return tracker_for(name, float(c) if c else None)


def track(spec: str, clips) -> dict:
    """The figures of one filter over ``clips``: [(needle masks, needle confidences, true
    tips (nan where none is visible), spacing_mm), ...]."""
    adv, spread, still, n_still = [], [], 0, 0
    for masks, confs, tips, sp in clips:
        ns, na, _ = clip_story_times(len(masks) / FPS)
        tr = spec_tracker(spec)
        shown: list = []
        for k, (m, conf, truth) in enumerate(zip(masks, confs, tips)):
            t = k / FPS
            nd = tr.update(m.astype(np.uint8) * NEEDLE, sp, t, float(conf))
            if nd["visible"] and nd["tip_px"] is not None:
                shown.append((t, *nd["tip_px"]))
            shown = [p for p in shown if t - p[0] <= STILL_S]
            if np.isnan(truth).any():
                continue
            if nd["visible"] and nd["tip_px"] is not None and ns + 0.3 <= t < na:
                adv.append(float(np.hypot(*(np.array(nd["tip_px"]) - truth))) * sp)
            if t >= na + STILL_S + 0.05:
                n_still += 1
                still += _tip_still(tuple(shown), sp, STILL_S, STILL_MM)
                if shown:
                    xy = np.array([p[1:] for p in shown])
                    spread.append(float(np.hypot(*(xy - xy[-1]).T).max()) * sp)
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    return {"filter": spec, "advancing_frames": len(adv),
            "advancing_err_mm_median": r3(np.median(adv)), "advancing_err_mm_p95": r3(np.percentile(adv, 95)),
            "still_frames": n_still, "still_share": r3(still / max(1, n_still)),
            "still_spread_mm_median": r3(np.median(spread)),
            "still_spread_mm_p95": r3(np.percentile(spread, 95))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=8, help="clips per story")
    ap.add_argument("--frames", type=int, default=120, help="frames per clip (20 fps)")
    ap.add_argument("--seed", type=int, nargs="+", default=[19700],
                    help="clip sets, pooled (seed S: plane clips S.., artery clips S+500..)")
    ap.add_argument("--near-mm", type=float, default=1.5)
    ap.add_argument("--needle-filter", default="alpha_beta,one_euro",
                    help="comma-separated: alpha_beta, one_euro, one_euro:C (C: Hz per mm/s)")
    a = ap.parse_args(argv)
    specs = a.needle_filter.split(",")
    for spec in specs:
        try:
            spec_tracker(spec)
        except ValueError as exc:
            ap.error(f"--needle-filter {spec!r}: {exc}")
    seg = Segmenter(SegmentationSettings())
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, seed, near in [c for f in a.seed for c in clip_seeds(f, a.clips, a.near_mm)]:
            imgs, _, meta = clip_frames(Path(tmp) / f"c{seed}.mp4", seed, a.frames, near)
            masks, confs = [], []
            for img in imgs:
                out = seg.segment(img)
                masks.append(out.labels == NEEDLE)
                confs.append(float(out.confidence[NEEDLE]))
            tips = np.array([f["needle"]["tip_px"] if f["needle"] and f["needle"].get(
                "visible", True) and f["needle"].get("tip_px") is not None else [np.nan] * 2
                for f in meta["frames"]], float)
            clips.append((masks, confs, tips, float(meta["spacing_mm"])))
    for spec in specs:
        print(json.dumps({**track(spec, clips), "seed": a.seed, "clips": len(clips),
                          "data": "SIMULATED injection clips"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
