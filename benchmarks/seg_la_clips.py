"""Artery alerts through whole injections: false "stop, artery" and kept true alerts.

Simulated PECS II clips (``models.simulator.render_clip``; seeds from ``--seed``, never
used in training: training draws single frames, not clips) at 20 fps: the needle goes
in, stops, and local anaesthetic opens a pocket at its tip. Two stories:

* **plane**: the needle stops in the plane under pectoralis minor, clear of the artery
  (an alert there is false);
* **artery**: the needle stops ``--near-mm`` above the artery's wall (an alert is right).

``--slide-mm S``: in every clip the probe slides S mm over the skin in 0.6 s during the
needle's approach (an operator repositioning), so whatever the rules remember of where a
vessel was must move with the tissue.
``--drift-mm D`` instead: the hand holding the probe drifts D mm (smoothly) from 0.3 s
after the needle arrives to the clip's end, slowly enough that the tip counts as still.

Each frame goes through the shipped segmentation path (``models.segmenter`` and the
needle tracker, as the segmentation node runs them) and ``assistant.logic.reduce``: with
the fluid rules (``assistant.fluid``: new fluid, and vessels held under a still tip and,
for ``fluid_hidden_s``, near a moving one), with ``fluid_hidden_s`` 0, and with none.
Counted against the TRUE tip and the TRUE artery (the simulator's masks):

* false stop frames: an artery alert ("stop, ...") on screen while the true artery is
  more than the alert limit + 2 mm from the true tip; spoken false stops;
* near frames: the true artery within the limit; kept = those with the alert on screen;
* near clips: clips whose true tip came within the limit; spoken in time: those whose
  first spoken "stop, artery" came no later than 2 frames (0.1 s) after that
  (``spoken_after_s`` per clip: negative is early);
* fluid frames: the "injectate or vessel at the tip?" banner on screen.

Prints one JSON line per model and rule setting; asserts nothing. SIMULATED data only.

    .venv/bin/python benchmarks/seg_la_clips.py [--model A.onnx --model B.onnx] [--clips 6]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.guidance import distance_to_class_px  # noqa: E402
from assistant.logic import FLUID_TEXT, Speak, initial_state, reduce  # noqa: E402
from assistant.logic_settings import AssistantSettings  # noqa: E402
from assistant.messages import Frame  # noqa: E402
from assistant.sources import read_video_frames  # noqa: E402
from models.classes import CLASSES  # noqa: E402
from models.needle import NeedleTracker  # noqa: E402
from models.node import segment_frame  # noqa: E402
from models.segmenter import INT8_WEIGHTS, Segmenter  # noqa: E402
from models.settings import SegmentationSettings  # noqa: E402
from models.simulator import clip_story_times, render_clip  # noqa: E402

FPS = 20
SLIDE_S = 0.6  # a probe slide's duration (--slide-mm)


def slide_for(seed: int, n: int, slide_mm: float, drift_mm: float = 0.0) -> dict:
    """A clip's probe slide: ``slide_mm`` to the right for even seeds, to the left for odd
    ones, starting at a time drawn from the seed inside the needle's approach (render_clip's
    default story); or a drift of ``drift_mm`` from 0.3 s after the needle arrives to the
    clip's end."""
    if slide_mm and drift_mm:
        raise ValueError("a clip has a slide or a drift, not both")
    ns, na, _ = clip_story_times(n / FPS)
    if drift_mm:
        start = na + 0.3
        if start >= n / FPS:
            raise ValueError(f"a {n}-frame clip has no time for a drift after the needle arrives")
        return {"slide_mm": drift_mm if seed % 2 == 0 else -drift_mm,
                "slide_at_s": start, "slide_s": n / FPS - start}
    if not slide_mm:
        return {}
    u = float(np.random.default_rng([seed, 2]).uniform())
    return {"slide_mm": slide_mm if seed % 2 == 0 else -slide_mm,
            "slide_at_s": ns + u * max(0.0, na - ns - SLIDE_S), "slide_s": SLIDE_S}


def clip_seeds(first: int, clips: int, near_mm: float) -> list[tuple[str, int, float | None]]:
    """(story, seed, stop_near_artery_mm) of a clip set: ``clips`` plane clips from seed
    ``first``, then ``clips`` artery clips from ``first + 500``."""
    return [(story, first + i + off, near) for story, off, near in
            (("plane", 0, None), ("artery", 500, near_mm)) for i in range(clips)]


def tracker_for(needle_filter: str | None = None,
                cutoff_per_mm_s: float | None = None) -> NeedleTracker:
    """The segmentation process's tracker (``SegmentationSettings``), with another filter
    (or its ``cutoff_per_mm_s``) when given."""
    s = SegmentationSettings()
    if needle_filter is not None:
        s = dataclasses.replace(s, needle_filter=needle_filter)
    if cutoff_per_mm_s is not None:
        s = dataclasses.replace(s, needle_cutoff_per_mm_s=cutoff_per_mm_s)
    return NeedleTracker.from_settings(s)


def clip_frames(path: Path, seed: int, n: int, near_mm: float | None, slide_mm: float = 0.0,
                drift_mm: float = 0.0):
    """(images, labels, meta) of one rendered clip."""
    meta = render_clip(path, n_frames=n, fps=FPS, seed=seed, stop_near_artery_mm=near_mm,
                       **slide_for(seed, n, slide_mm, drift_mm))
    labels = np.load(meta["masks"])["labels"]
    return read_video_frames(path), labels, meta


def segment_clip(seg: Segmenter, images, sp: float, needle_filter: str | None = None):
    """The segmentation process's per-frame work (``models.node.segment_frame``, its
    tracker; ``needle_filter``: the tracker's filter, default the shipped one): SegResults
    in frame order."""
    tracker = tracker_for(needle_filter)
    return [segment_frame(seg, tracker, img, k, k / FPS, sp) for k, img in enumerate(images)]


def retrack(segs, sp: float, needle_filter: str):
    """The same segmentations with the needle tracked again by a tracker with another
    filter (the labels and confidences are the model's, so only the tracking differs)."""
    tracker = tracker_for(needle_filter)
    ni = CLASSES.index("needle")
    return [dataclasses.replace(sg, needle=tracker.update(sg.labels, sp, sg.media_time_s,
                                                          sg.confidence[ni])) for sg in segs]


def run_logic(images, segs, labels, meta, settings: AssistantSettings) -> dict:
    vi = CLASSES.index("vessel")
    sp = float(meta["spacing_mm"])
    limit = settings.artery_alert_mm
    state = initial_state(settings)
    c = {"frames": 0, "false_stop_frames": 0, "false_stops_spoken": 0, "near_frames": 0,
         "near_kept": 0, "fluid_frames": 0}
    first_near = first_spoken = None
    for k, (img, sg) in enumerate(zip(images, segs)):
        t = k / FPS
        state, _ = reduce(state, Frame(frame_id=k, media_time_s=t, image=img, spacing_mm=sp,
                                       depth_mm=float(meta["depth_mm"])), None, t)
        state, acts = reduce(state, sg, None, t)
        nd = meta["frames"][k]["needle"]
        if not nd or nd.get("tip_px") is None or not nd.get("visible", True):
            continue
        d = distance_to_class_px(labels[k], vi, nd["tip_px"])
        true_mm = float("inf") if d is None else d * sp
        c["frames"] += 1
        stop_up = any(a.key == "artery" and a.level == "alert" for a in state.alerts)
        spoken = any(isinstance(a, Speak) and a.priority == "alert" and "artery" in a.text
                     for a in acts)
        if spoken and first_spoken is None:
            first_spoken = k
        if true_mm <= limit:
            first_near = k if first_near is None else first_near
            c["near_frames"] += 1
            c["near_kept"] += int(stop_up)
        elif true_mm > limit + 2.0:
            c["false_stop_frames"] += int(stop_up)
            c["false_stops_spoken"] += int(spoken)
        c["fluid_frames"] += int(any(a.key == "fluid" and a.text == FLUID_TEXT
                                     for a in state.alerts))
    if first_near is not None:  # a clip whose tip came within the limit: was it said in time?
        c["near_clips"] = 1
        c["spoken_in_time"] = int(first_spoken is not None and first_spoken <= first_near + 2)
        c["spoken_after_s"] = None if first_spoken is None else (first_spoken - first_near) / FPS
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[],
                    help="ONNX model with its manifest (repeat; default: the shipped one)")
    ap.add_argument("--clips", type=int, default=6, help="clips per story")
    ap.add_argument("--frames", type=int, default=120, help="frames per clip (20 fps)")
    ap.add_argument("--seed", type=int, default=8100)
    ap.add_argument("--near-mm", type=float, default=1.5)
    ap.add_argument("--slide-mm", type=float, default=0.0,
                    help="every clip's probe slides this far (mm) during the needle's approach "
                         "(right for even seeds, left for odd)")
    ap.add_argument("--drift-mm", type=float, default=0.0,
                    help="instead of a slide: every clip's probe drifts this far (mm) from 0.3 s "
                         "after the needle arrives to the end (the tip stays 'still')")
    ap.add_argument("--hidden-s", type=float, default=AssistantSettings().fluid_hidden_s,
                    help="fluid_hidden_s of the first setting (each model also runs with 0, "
                         "and with no fluid rule)")
    ap.add_argument("--follow-probe", choices=("on", "off"), default="on",
                    help="assistant.fluid_follow_probe in every setting (the memory moves "
                         "with the tissue)")
    ap.add_argument("--pending", choices=("on", "off"), default="on",
                    help="assistant.fluid_pending in every setting (rule P: a vessel first "
                         "seen at the tip waits; --pending-frames: how long)")
    ap.add_argument("--pending-frames", default=str(AssistantSettings().fluid_pending_frames),
                    help="assistant.fluid_pending_frames, comma-separated: each on the same "
                         "segmentations")
    ap.add_argument("--needle-filter", default=SegmentationSettings().needle_filter,
                    help="the needle tracker's filter(s), comma-separated (alpha_beta, "
                         "one_euro): each on the same segmentations")
    ap.add_argument("--int8-weights", default="auto", choices=INT8_WEIGHTS,
                    help="segmentation.int8_weights: which encoding of an int8 model runs")
    ap.add_argument("--birth-mm", type=float, default=AssistantSettings().fluid_birth_mm,
                    help="assistant.fluid_birth_mm in every setting (how far from a still tip "
                         "a new blob is fluid)")
    a = ap.parse_args(argv)
    filters = a.needle_filter.split(",")
    try:
        waits = [int(x) for x in a.pending_frames.split(",")]
    except ValueError:
        ap.error(f"--pending-frames: integers, comma-separated, got {a.pending_frames!r}")
    if not set(filters) <= set(NeedleTracker.FILTERS):
        ap.error(f"--needle-filter: one or more of {', '.join(NeedleTracker.FILTERS)}")
    if a.slide_mm and a.drift_mm:
        ap.error("--slide-mm and --drift-mm: a clip has one or the other")
    t0 = time.perf_counter()
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for story, seed, near in clip_seeds(a.seed, a.clips, a.near_mm):
            clips.append((story, seed) + clip_frames(Path(tmp) / f"{story}{seed}.mp4",
                                                     seed, a.frames, near, a.slide_mm,
                                                     a.drift_mm))
    for model in a.model or [""]:
        seg = Segmenter(SegmentationSettings(model_path=model, int8_weights=a.int8_weights))
        segs0 = [segment_clip(seg, imgs, float(meta["spacing_mm"]), filters[0])
                 for _, _, imgs, _, meta in clips]
        runs = [(True, a.hidden_s)] + ([(True, 0.0)] if a.hidden_s else []) + [(False, 0.0)]
        tracked = {f: segs0 if f == filters[0] else
                   [retrack(sg, float(c[4]["spacing_mm"]), f) for sg, c in zip(segs0, clips)]
                   for f in filters}
        for nf, pf, rule, hidden in [(f, w, r, h) for f in filters for w in waits
                                     for r, h in runs]:
            segs = tracked[nf]
            settings = dataclasses.replace(AssistantSettings(), fluid_rule=rule,
                                           fluid_pending_frames=pf,
                                           fluid_hidden_s=hidden,
                                           fluid_follow_probe=a.follow_probe == "on",
                                           fluid_pending=a.pending == "on",
                                           fluid_birth_mm=a.birth_mm)
            for story in ("plane", "artery"):
                tot: dict = {}
                per_clip = []
                for (st, seed, imgs, labels, meta), sg in zip(clips, segs):
                    if st != story:
                        continue
                    c = run_logic(imgs, sg, labels, meta, settings)
                    per_clip.append({"seed": seed, **c})
                    for key, v in c.items():
                        if key != "spoken_after_s":
                            tot[key] = tot.get(key, 0) + v
                print(json.dumps({"model": model or "shipped", "fluid_rule": rule,
                                  "fluid_hidden_s": hidden, "slide_mm": a.slide_mm,
                                  "drift_mm": a.drift_mm,
                                  "follow_probe": a.follow_probe == "on",
                                  "pending": a.pending == "on",
                                  "int8_weights": a.int8_weights,
                                  "needle_filter": nf,
                                  "pending_frames": pf,
                                  "fluid_birth_mm": a.birth_mm,
                                  "story": story, "clips": len(per_clip), **tot,
                                  "per_clip": per_clip,
                                  "data": "SIMULATED injection clips"}), flush=True)
    print(f"# {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
