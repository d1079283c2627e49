"""Replay throughput on a real clip through the process chain.

    .venv/bin/python benchmarks/replay_throughput.py [--video PATH] [--runs 3]

Chains measured (every frame processed, with back-pressure; start-up excluded):
* ``pass-through``: driver -> bus -> assistant -> renderer (draws and encodes every frame),
  speech fed the (silent) audio track: the transport and the stages without the model;
* ``full``: + segmentation (the shipped ONNX model) and speech output.
Prints frames/s and times real time (median of the runs) for each chain. The clip is a real
supraclavicular scan from ../shared/data/regional_us_videos (562x542, 20 fps).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.config import load_settings  # noqa: E402
from assistant.replay import replay  # noqa: E402

CHAINS = {
    "pass-through": ("speech", "assistant", "renderer"),
    "full": ("segmentation", "speech", "tts", "assistant", "renderer"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path,
                    default=ROOT.parent / "shared" / "data" / "regional_us_videos" / "videos" / "1595.mp4")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chains", default=",".join(CHAINS))
    args = ap.parse_args(argv)
    if not args.video.exists():
        print(f"{args.video}: not found (the real clips live in ../shared/data)", file=sys.stderr)
        return 2
    overrides = {"tts": {"output": "none"}}
    for chain in args.chains.split(","):
        speeds, fps, lat95 = [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                settings = load_settings(None, {**overrides, "assistant": {"session_db": f"{d}/s.sqlite"}})
                s = replay(settings, None, args.video, d, progress=False, nodes=CHAINS[chain])
            speeds.append(s.speed)
            fps.append(s.frames / s.wall_s)
            lat95.append(s.latency_ms_p95)
        print(json.dumps({"chain": chain, "nodes": CHAINS[chain], "clip": args.video.name,
                          "frames": s.frames, "runs": args.runs,
                          "frames_per_s_median": round(statistics.median(fps), 1),
                          "x_real_time_median": round(statistics.median(speeds), 2),
                          "x_real_time_all": [round(x, 2) for x in speeds],
                          "frame_latency_ms_p95_median": round(statistics.median(lat95), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
