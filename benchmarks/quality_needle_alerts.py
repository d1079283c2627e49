"""How early do the pleura and artery alerts come? Simulated needle approaches.

For each simulated PECS II patient (models.simulator, seeds 0..N-1) and each danger
(pleura between two ribs; the thoracoacromial artery), an in-plane needle advances
along a straight path that ends touching it, ``--step-mm`` per frame at 20 fps. Each
frame: the simulator's labels stand in for the segmentation, models.needle's tracker
gives the tip, assistant.logic.reduce decides. Reported, against the true geometric
distance of the true tip (the simulator's):

* distance at the first alert (mm) and time left before contact (s),
* missed: contact reached without an alert,
* early: an alert while the true distance exceeded the limit + 2 mm.

    .venv/bin/python benchmarks/quality_needle_alerts.py [--patients 8] [--step-mm 0.5]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FPS = 20.0
SIZE = (271, 281)  # half the replay size: the same geometry in mm, 4x fewer pixels
DEPTH_MM = 40.0


def _path_to(lab: np.ndarray, sp: float, goal_px: tuple[float, float],
             forbid: tuple[int, ...]):
    """A needle (NeedleParams) whose tip ends at ``goal_px`` without crossing
    ``forbid`` classes on the way, or None."""
    from models.simulator import NeedleParams

    h, w = lab.shape
    gx, gy = goal_px[0] * sp, goal_px[1] * sp
    for angle in (40, 30, 50, 60, 25):
        for direction in (1, -1):
            a = math.radians(angle)
            length = gy / math.sin(a)
            entry = gx - direction * length * math.cos(a)
            u = np.linspace(0.05, 0.97, 300)
            xs = np.round((entry + direction * u * length * math.cos(a)) / sp).astype(int)
            ys = np.round((u * length * math.sin(a)) / sp).astype(int)
            ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            if ok.sum() < 0.5 * len(u) or np.isin(lab[ys[ok], xs[ok]], forbid).any():
                continue
            return NeedleParams(entry_x_mm=entry, angle_deg=angle, length_mm=length,
                                direction=direction)
    return None


def approach(seed: int, danger: str, step_mm: float, start_mm: float = 15.0,
             pending: bool = True, needle_filter: str = "alpha_beta",
             pending_frames: int | None = None) -> dict | None:
    """One simulated approach; None when this patient offers no clear path."""
    from assistant.logic import Speak, initial_state, reduce
    from assistant.logic_settings import AssistantSettings
    from assistant.messages import Frame, SegResult
    from models.classes import CLASS_INDEX, CLASSES
    from models.needle import NeedleTracker
    from models.simulator import SimParams, sample_anatomy, simulate_frame

    anatomy = sample_anatomy(np.random.default_rng(seed))
    common = dict(size=SIZE, anatomy=anatomy, probe_x_mm=0.0, depth_mm=DEPTH_MM,
                  gain_db=0.0)
    base = simulate_frame(seed, SimParams(needle=None, **common))
    lab, sp = base.labels, base.spacing_mm
    bone, pleura, vessel = (CLASS_INDEX[c] for c in ("bone", "pleura", "vessel"))
    settings = AssistantSettings(fluid_pending=pending)
    if pending_frames is not None:
        settings = dataclasses.replace(settings, fluid_pending_frames=pending_frames)
    if danger == "pleura":
        limit = settings.pleura_alert_mm
        pts = np.argwhere(lab == pleura)
        cols = [x for x in range(SIZE[1] // 8, SIZE[1] - SIZE[1] // 8, 6)
                if (lab[:, x] == pleura).any()
                and not (lab[: np.flatnonzero(lab[:, x] == pleura)[0], x] == bone).any()]
        if not cols:
            return None
        x = cols[len(cols) // 2]
        goal = (x, float(np.flatnonzero(lab[:, x] == pleura)[0]))
        needle = _path_to(lab, sp, goal, (bone, pleura, vessel))
    else:
        limit = settings.artery_alert_mm
        cx, cy = base.vessel["centre_px"]
        r = base.vessel["radius_px"]
        if not (0 <= cx < SIZE[1]) or cy - r < 5:
            return None
        goal = (cx, cy - r)  # the top of the artery wall
        needle = _path_to(lab, sp, goal, (bone, pleura, vessel))
    if needle is None:
        return None
    state = initial_state(settings)
    tracker = NeedleTracker(filter=needle_filter)
    lengths = np.arange(needle.length_mm - start_mm, needle.length_mm + 1e-9, step_mm)
    first = None
    early = False
    k = 0
    for k, length in enumerate(lengths):
        t = k / FPS
        nd_params = dataclasses.replace(needle, length_mm=float(length))
        f = simulate_frame(seed * 1000 + k, SimParams(needle=nd_params, time_s=t, **common))
        tx, ty = nd_params.tip_mm()
        if danger == "pleura":
            true_d = float(np.min(np.hypot(pts[:, 1] * sp - tx, pts[:, 0] * sp - ty)))
        else:
            (vx, vy), vr = f.vessel["centre_px"], f.vessel["radius_px"]
            true_d = max(0.0, math.hypot(vx * sp - tx, vy * sp - ty) - vr * sp)
        nd = tracker.update(f.labels, sp, t)
        state, _ = reduce(state, Frame(frame_id=k, media_time_s=t, image=f.image,
                                       spacing_mm=sp, depth_mm=f.depth_mm), None, t)
        state, acts = reduce(state, SegResult(
            frame_id=k, media_time_s=t, frame_t_mono=0.0, labels=f.labels,
            classes=list(CLASSES), confidence=[1.0] * len(CLASSES),
            present=[True] * len(CLASSES), needle=nd), None, t)
        name = "pleura" if danger == "pleura" else "artery"
        if first is None and any(isinstance(a, Speak) and a.priority == "alert"
                                 and name in a.text for a in acts):
            first = (k, true_d)
            early = true_d > limit + 2.0
    contact_k = len(lengths) - 1
    return {"seed": seed, "danger": danger, "limit_mm": limit,
            "alert": first is not None,
            "distance_at_alert_mm": None if first is None else first[1],
            "time_before_contact_s": None if first is None else (contact_k - first[0]) / FPS,
            "early": early, "frames": len(lengths)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--step-mm", type=float, default=0.5, help="advance per frame (20 fps)")
    ap.add_argument("--pending", choices=("on", "off"), default="on",
                    help="assistant.fluid_pending (rule P: a vessel first seen at the tip "
                         "waits; --pending-frames: for how many segmentations)")
    ap.add_argument("--pending-frames", type=int, default=None,
                    help="assistant.fluid_pending_frames (how many segmentations it waits; "
                         "default: the shipped setting)")
    ap.add_argument("--needle-filter", choices=("alpha_beta", "one_euro"), default="alpha_beta",
                    help="the needle tracker's filter (segmentation.needle_filter)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for danger in ("pleura", "artery"):
        res = [r for r in (approach(s, danger, args.step_mm, pending=args.pending == "on",
                                    needle_filter=args.needle_filter,
                                    pending_frames=args.pending_frames)
                           for s in range(args.patients)) if r is not None]
        if not res:
            print(f"{danger}: no simulated patient offered a clear path")
            continue
        hit = [r for r in res if r["alert"]]
        d = [r["distance_at_alert_mm"] for r in hit]
        tb = [r["time_before_contact_s"] for r in hit]
        print(f"{danger} (alert limit {res[0]['limit_mm']:g} mm), {len(res)} approaches at "
              f"{args.step_mm * FPS:g} mm/s: alerted {len(hit)}/{len(res)}, missed "
              f"{len(res) - len(hit)}, early {sum(r['early'] for r in res)}")
        if hit:
            print(f"  true distance at alert: median {np.median(d):.1f} mm "
                  f"(min {min(d):.1f}, max {max(d):.1f}); time left before contact: median "
                  f"{np.median(tb):.2f} s (min {min(tb):.2f})")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
