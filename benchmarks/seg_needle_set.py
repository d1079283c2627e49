"""Write held-out simulated needle sequences as a seg-eval folder (images/ + masks/).

    .venv/bin/python benchmarks/seg_needle_set.py --out /tmp/needle_set [--seeds 101 102 103]
    assistant seg-eval --images /tmp/needle_set/images --masks /tmp/needle_set/masks \\
        --map needle=9,vessel=2,fascia=3 --spacing-mm 0.0738

Each seed renders one clip of ``models.simulator.render_clip`` (PECS II, in-plane needle
entering, advancing to the plane, local anaesthetic; depth fixed at 40 mm so every frame
has the same pixel spacing, 40/542 mm). Only frames whose labels hold a needle are
written: PNG image and a mask whose values are our class indices (``needle=9``). The
clip seeds are not used in training (training frames come from ``simulate_frame`` seed
streams 1000+ and 3000+). Simulated data, not real scans; not for clinical use.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--frames", type=int, default=60, help="frames per clip (20 fps)")
    ap.add_argument("--every", type=int, default=2, help="keep every k-th needle frame")
    args = ap.parse_args()
    from models.classes import CLASS_INDEX
    from models.simulator import render_clip

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    needle = CLASS_INDEX["needle"]
    kept, sp = 0, None
    truth = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            meta = render_clip(Path(tmp) / "c.mp4", n_frames=args.frames, fps=20, seed=seed,
                               depth_mm=40.0, needle_start_s=0.3)
            sp = meta["spacing_mm"]
            labels = np.load(meta["masks"])["labels"]
            cap = cv2.VideoCapture(meta["video"])
            j = 0
            for i, fm in enumerate(meta["frames"]):
                ok, frame = cap.read()
                if not ok:
                    break
                if not (labels[i] == needle).any():
                    continue
                j += 1
                if (j - 1) % args.every:
                    continue
                name = f"clip{seed}_{i:03d}.png"
                cv2.imwrite(str(out / "images" / name), frame)
                cv2.imwrite(str(out / "masks" / name), labels[i])
                truth[name] = fm["needle"]["tip_px"]
                kept += 1
            cap.release()
    (out / "truth.json").write_text(json.dumps({"spacing_mm": sp, "tip_px": truth}))
    print(f"wrote {kept} frames with a needle to {out} (spacing {sp:.4f} mm/px)")
    print(f"assistant seg-eval --images {out}/images --masks {out}/masks "
          f"--map needle={needle} --spacing-mm {sp:.4f}")


if __name__ == "__main__":
    main()
