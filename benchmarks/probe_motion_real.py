"""How the vessel memory's registration behaves on REAL cine loops (assistant.fluid).

Every consecutive pair of frames of the `regional_us_videos` loops (no needle) through
``assistant.fluid.probe_motion``, as the assistant registers each segmented frame to the
last: the response (the memory is cleared under ``REG_MIN_RESPONSE``), the largest step
between two frames, and the translation summed over each loop. Prints one line per loop
and a summary; asserts nothing. REAL data.

    .venv/bin/python benchmarks/probe_motion_real.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.fluid import REG_MIN_RESPONSE, _reg_view, probe_motion  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args(argv)
    videos = sorted((Path(a.data) / "regional_us_videos" / "videos").glob("*.mp4"))
    if not videos:
        print(f"no videos under {Path(a.data) / 'regional_us_videos' / 'videos'}", file=sys.stderr)
        return 1
    responses: list[float] = []
    for v in videos:
        cap = cv2.VideoCapture(str(v))
        prev, rs, total, step = None, [], np.zeros(2), 0.0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            now = _reg_view(frame)
            moved, r = probe_motion(prev, now)
            if moved is not None:
                rs.append(r)
                total += moved
                step = max(step, abs(moved[0]), abs(moved[1]))
            prev = now
        cap.release()
        rs_a = np.array(rs)
        responses += rs
        print(f"{v.name}: {len(rs)} pairs, response p5 {np.percentile(rs_a, 5):.2f} median "
              f"{np.median(rs_a):.2f}, under the floor {int((rs_a < REG_MIN_RESPONSE).sum())}, "
              f"largest step {step:.0f} px, summed ({total[0]:.0f}, {total[1]:.0f}) px")
    r = np.array(responses)
    print(f"REAL, {len(videos)} loops, {len(r)} frame pairs: response p1 {np.percentile(r, 1):.2f}, "
          f"p5 {np.percentile(r, 5):.2f}, median {np.median(r):.2f}; under {REG_MIN_RESPONSE} "
          f"(memory cleared): {int((r < REG_MIN_RESPONSE).sum())} "
          f"({100 * float(np.mean(r < REG_MIN_RESPONSE)):.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
