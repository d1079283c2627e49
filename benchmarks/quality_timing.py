"""Time the assistant's per-frame work: reduce(Frame) + reduce(SegResult).

That is the quality score (with the image and steadiness parts), the needle
guidance and the alert checks, on simulated PECS II frames at the replay size
(542x562, models.simulator, labels as the segmentation, models.needle tracker).

    .venv/bin/python benchmarks/quality_timing.py [--frames 40] [--fluid-rule off]
        [--follow-probe off] [--needle advancing]

``--frames 120`` fills the fluid rule's 5 s vessel memory (at 20 fps) before it is timed.
By default each frame draws its own random needle, so the tracker confirms none; with
``--needle advancing`` one in-plane needle (30 degrees) advances 0.2 mm a frame from 10 mm
and is tracked, so the work done for a visible needle (its shaft left out of the probe's
registration, the distances from its tip) is timed too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fluid-rule", choices=("on", "off"), default="on",
                    help="assistant.fluid_rule (new fluid at the tip, vessel permanence)")
    ap.add_argument("--follow-probe", choices=("on", "off"), default="on",
                    help="assistant.fluid_follow_probe (each frame registered to the last)")
    ap.add_argument("--needle", choices=("random", "advancing"), default="random",
                    help="a random needle per frame (never confirmed) or one advancing needle")
    args = ap.parse_args(argv)

    from assistant.logic import initial_state, reduce
    from assistant.messages import Frame, SegResult
    from models.classes import CLASSES
    from models.needle import NeedleTracker
    from models.simulator import NeedleParams, SimParams, sample_anatomy, simulate_frame

    rng = np.random.default_rng(args.seed)
    anatomy = sample_anatomy(rng)

    def needle(k: int):
        if args.needle == "random":
            return "random"
        return NeedleParams(entry_x_mm=5.0, angle_deg=30.0, length_mm=10.0 + 0.2 * k)

    frames = [simulate_frame(args.seed * 1000 + k, SimParams(anatomy=anatomy, probe_x_mm=0.0,
                                                            depth_mm=40.0, time_s=k / 20,
                                                            gain_db=0.0, needle=needle(k)))
              for k in range(args.frames)]
    tracker = NeedleTracker()
    import dataclasses

    from assistant.logic_settings import AssistantSettings
    state = initial_state(dataclasses.replace(AssistantSettings(),
                                              fluid_rule=args.fluid_rule == "on",
                                              fluid_follow_probe=args.follow_probe == "on"))
    times, shown = [], 0
    for k, f in enumerate(frames):
        t = k / 20
        nd = tracker.update(f.labels, f.spacing_mm, t)
        shown += bool(nd["visible"])
        fr = Frame(frame_id=k, media_time_s=t, image=f.image, spacing_mm=f.spacing_mm,
                   depth_mm=f.depth_mm)
        sg = SegResult(frame_id=k, media_time_s=t, frame_t_mono=0.0, labels=f.labels,
                       classes=list(CLASSES), confidence=[1.0] * len(CLASSES),
                       present=[True] * len(CLASSES), needle=nd)
        t0 = time.perf_counter()
        state, _ = reduce(state, fr, None, t)
        state, _ = reduce(state, sg, None, t)
        times.append(1000 * (time.perf_counter() - t0))
    ms = np.array(times[2:] if len(times) < 110 else times[100:])  # warm caches / memory
    h, w = frames[0].labels.shape
    print(f"reduce(Frame)+reduce(SegResult), fluid rule {args.fluid_rule}, follow probe "
          f"{args.follow_probe}, {w}x{h} "
          f"simulated PECS II, {len(ms)} frames: "
          f"median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
          f"max {ms.max():.1f} ms; last quality {state.quality} ({state.quality_reason}); "
          f"needle ({args.needle}) shown on {shown} of {len(frames)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
