"""``assistant needle-eval VIDEO --tips TIPS.csv --spacing-mm S [--only-listed] [--json FILE]``

The needle tip as the product reports it (segmentation, then the tracker with its shaft gate
and filter, config.yaml's ``segmentation`` settings), frame by frame through a recorded
sequence, against tips a person marked: the measurement the needle goal asks for ("tip error
at most 2 mm on real needle sequences"), for a lab that has such sequences.

``TIPS.csv`` has a header ``frame,x,y`` and one row per annotated frame: the 0-based frame
index and the tip in pixels of the video's frames; a row with x and y left empty marks a frame
annotated as showing no needle. Frames without a row count as showing no needle too, unless
``--only-listed``, which scores only the frames listed (for sequences annotated every few
frames). The sequence may also be a folder of frame images, in name order (``--fps`` then
required). The frame time is the frame index over the frame rate (``--fps`` overrides the
video's). Frames are read as a replay reads them (``assistant.sources``): a frame or image
that cannot be decoded is named and skipped (its time still passes); a video too damaged to
read on is scored up to where it broke, and that is said.

It prints, for the frames with a marked tip, how many the product reported a needle in and the
tip error of those (median, p90, max, in px and mm), and how many were within 2 mm (a frame
without a reported tip counts as not within); for the frames without a needle, how many it
reported one in (false needles). Not for clinical use.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

GOAL_MM = 2.0


class NeedleEvalError(ValueError):
    """A problem with needle-eval's inputs, said in words."""


def read_tips(path: Path) -> dict[int, tuple[float, float] | None]:
    """``frame,x,y`` rows -> {frame: (x, y) or None (marked: no needle)}. Errors name the file,
    the line and what is wrong."""
    if not path.is_file():
        raise NeedleEvalError(f"--tips {path}: no such file")
    out: dict[int, tuple[float, float] | None] = {}
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows, [])]
        if header[:3] != ["frame", "x", "y"]:
            raise NeedleEvalError(f"{path}: the first line must be the header frame,x,y "
                                  f"(got {','.join(header) or 'nothing'})")
        for n, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            cells = [c.strip() for c in row] + ["", ""]
            try:
                frame = int(cells[0])
                if frame < 0:
                    raise ValueError
            except ValueError:
                raise NeedleEvalError(f"{path}, line {n}: frame {cells[0]!r} is not a frame "
                                      "index (0, 1, 2, ...)") from None
            if frame in out:
                raise NeedleEvalError(f"{path}, line {n}: frame {frame} is listed twice")
            if cells[1] == cells[2] == "":
                out[frame] = None
                continue
            try:
                x, y = float(cells[1]), float(cells[2])
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise ValueError
            except ValueError:
                raise NeedleEvalError(f"{path}, line {n}: x, y {cells[1]!r}, {cells[2]!r} are "
                                      "not pixel coordinates (leave both empty for no needle)"
                                      ) from None
            out[frame] = (x, y)
    if not out:
        raise NeedleEvalError(f"{path}: no annotated frame")
    return out


def write_tips(path: Path, frames_meta: list[dict]) -> int:
    """A simulated clip's true tips (``render_clip``'s per-frame metadata) as ``TIPS.csv``:
    every frame listed, empty x, y where no needle is visible. Returns the tips written."""
    n = 0
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "x", "y"])
        for fm in frames_meta:
            nd = fm.get("needle") or {}
            tip = nd.get("tip_px") if nd.get("visible") else None
            w.writerow([fm["i"], *(f"{v:.2f}" for v in tip)] if tip else [fm["i"], "", ""])
            n += tip is not None
    return n


def _source(source: Path, fps: float | None):
    """(frames, frame rate, frame count, image files or None) for a video or a folder of frame
    images, read as a replay reads them (``assistant.sources``: a frame that cannot be decoded
    is skipped and keeps its index, so the frame times stay right)."""
    from assistant.config import SourceSettings
    from assistant.sources import SourceError, list_images, open_path, probe_video
    try:
        if source.is_dir():
            if not fps:
                raise NeedleEvalError(f"{source} is a folder of images: give its frame rate, --fps")
            files = list_images(source)
            rate, total = fps, len(files)
        else:
            files, info = None, probe_video(source)
            rate, total = fps or info["fps"], info["frames"]
            if not rate:
                raise NeedleEvalError(f"{source}: no frame rate in the file; give --fps")
        return open_path(source, SourceSettings(fps=rate)), rate, total, files
    except SourceError as exc:
        raise NeedleEvalError(str(exc)) from None


def _score(i: int, nd: dict, tips: dict, only_listed: bool, rows: list) -> None:
    """Frame ``i``'s row: the marked tip, the reported one and the distance."""
    if only_listed and i not in tips:
        return
    truth, got = tips.get(i), nd["tip_px"]
    row = {"frame": i, "marked": truth, "reported": got}
    if truth is not None and got is not None:
        row["error_px"] = float(math.hypot(got[0] - truth[0], got[1] - truth[1]))
    rows.append(row)


def evaluate(video: Path, tips: dict, spacing_mm: float, settings=None, fps: float | None = None,
             only_listed: bool = False) -> dict:
    """Run the segmentation and the needle tracker over ``video``; the figures and a row per
    scored frame."""
    from assistant.sources import SourceError
    from models.classes import CLASSES
    from models.needle import NeedleTracker
    from models.segmenter import Segmenter
    from models.settings import SegmentationSettings

    settings = settings or SegmentationSettings()
    frames, rate, n_total, files = _source(video, fps)
    seg = Segmenter(settings)
    tracker = NeedleTracker.from_settings(settings)
    needle = CLASSES.index("needle")
    rows, i, stopped, skipped = [], 0, None, []

    def skip_to(index: int) -> None:  # frames the source could not read: named, time goes on
        skipped.extend(f"cannot read image {files[k]}" if files else
                       f"frame {k} could not be decoded" for k in range(i, index))
    try:
        for fr in frames:
            skip_to(fr.index)
            i = fr.index
            out = seg.segment(fr.image)
            nd = tracker.update(out.labels, spacing_mm, i / rate, out.confidence[needle])
            _score(i, nd, tips, only_listed, rows)
            i += 1
    except SourceError as exc:  # too few frames decoded: score those read, say so
        stopped = f"{exc}; scored frames 0-{i - 1}"
    if files:
        skip_to(n_total)
        i = max(i, n_total)
    elif n_total and i < n_total and stopped is None:
        stopped = f"frame {i} of {n_total} could not be decoded; scored frames 0-{i - 1}"
    if i == len(skipped):
        raise NeedleEvalError(f"{video}: no frame could be read")
    beyond = sorted(f for f in tips if f >= i)
    marked = [r for r in rows if r["marked"] is not None]
    err = np.array([r["error_px"] for r in marked if "error_px" in r])
    none = [r for r in rows if r["marked"] is None]

    def stats(v: np.ndarray, scale: float) -> dict | None:
        if not len(v):
            return None
        return {"median": round(float(np.median(v)) * scale, 3),
                "p90": round(float(np.percentile(v, 90)) * scale, 3),
                "max": round(float(v.max()) * scale, 3)}
    within = int((err * spacing_mm <= GOAL_MM).sum())
    return {"video": str(video), "frames_read": i, "fps": rate, "spacing_mm": spacing_mm,
            "stopped": stopped, "unread_frames": skipped, "tips_beyond_the_video": beyond,
            "needle_filter": settings.needle_filter,
            "marked_frames": len(marked), "reported_in_marked": len(err),
            "tip_error_px": stats(err, 1.0), "tip_error_mm": stats(err, spacing_mm),
            f"within_{GOAL_MM:g}_mm_of_marked": within,
            "no_needle_frames": len(none),
            "false_needle_frames": sum(r["reported"] is not None for r in none),
            "frames": rows}


def main(argv: list[str] | None = None, settings=None) -> int:
    from models.segmenter import INT8_WEIGHTS
    ap = argparse.ArgumentParser(prog="assistant needle-eval", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", help="the recorded sequence: a video (mp4, avi, ...) or a folder "
                                  "of its frames as images (sorted by name; give --fps)")
    ap.add_argument("--tips", required=True, help="CSV: frame,x,y per annotated frame")
    ap.add_argument("--spacing-mm", type=float, required=True, help="mm per pixel of the frames")
    ap.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's)")
    ap.add_argument("--only-listed", action="store_true",
                    help="score only the frames TIPS.csv lists (else unlisted = no needle)")
    ap.add_argument("--int8-weights", choices=INT8_WEIGHTS, default=None,
                    help="an int8 model's weight encoding (default: config.yaml's)")
    ap.add_argument("--json", default=None, help="also write the figures and every frame's row")
    args = ap.parse_args(argv)
    from dataclasses import replace

    from models.settings import SegmentationSettings
    s = settings or SegmentationSettings()
    if args.int8_weights:
        s = replace(s, int8_weights=args.int8_weights)
    try:
        if not (math.isfinite(args.spacing_mm) and args.spacing_mm > 0):
            raise NeedleEvalError(f"--spacing-mm must be a number > 0, got {args.spacing_mm}")
        if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
            raise NeedleEvalError(f"--fps must be a number > 0, got {args.fps}")
        video = Path(args.video)
        if not video.exists():
            raise NeedleEvalError(f"{video}: no such file or folder")
        tips = read_tips(Path(args.tips))
        r = evaluate(video, tips, args.spacing_mm, s, args.fps, args.only_listed)
    except NeedleEvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mm, px = r["tip_error_mm"], r["tip_error_px"]
    print(f"needle-eval: {r['frames_read']} frames of {r['video']} at {r['fps']:g} fps, "
          f"{r['spacing_mm']:g} mm/px, tracker filter {r['needle_filter']}")
    if r["marked_frames"]:
        print(f"frames with a marked tip: {r['marked_frames']}; needle reported in "
              f"{r['reported_in_marked']} ({100 * r['reported_in_marked'] / r['marked_frames']:.1f} %)")
        if mm:
            print(f"tip error (frames with a reported tip): median {mm['median']:.2f} mm "
                  f"({px['median']:.1f} px), p90 {mm['p90']:.2f} mm, max {mm['max']:.2f} mm")
        within = r[f"within_{GOAL_MM:g}_mm_of_marked"]
        print(f"within {GOAL_MM:g} mm: {within} of {r['marked_frames']} marked frames "
              f"({100 * within / r['marked_frames']:.1f} %; a frame without a reported tip "
              "is not within)")
    if r["no_needle_frames"]:
        print(f"frames without a needle: {r['no_needle_frames']}; needle reported in "
              f"{r['false_needle_frames']}")
    if r["stopped"]:
        print(f"warning: {r['stopped']}", file=sys.stderr)
    for u in r["unread_frames"]:
        print(f"warning: not scored: {u}", file=sys.stderr)
    if r["tips_beyond_the_video"]:
        print(f"warning: {len(r['tips_beyond_the_video'])} annotated frames lie beyond the "
              f"{r['frames_read']} frames read (first: {r['tips_beyond_the_video'][0]})",
              file=sys.stderr)
    print("not for clinical use")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
