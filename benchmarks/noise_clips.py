"""REAL noise as one-second clips: how many the recognizer takes for a command (issue 4's
"silence and noise: at most 1 %").

Speech Commands' own "_silence_" class is one-second clips of its ``_background_noise_``
recordings (the four in ``../shared/data/speech/noise``: dishes, a cat, an exercise bike,
a running tap). This cuts those recordings into every whole second, as recorded and 12 dB
louder (the gains of ``speech_bench.py``'s noise part), writes them as a
``_noise_`` folder beside the dataset's 20 ``_silence_`` clips, and scores the folder with
the lab tool itself (``assistant listen-eval``: each clip through a fresh listener with
the shipped speech settings, 0.5 s of its own quietest 100 ms before and 0.6 s after).
Prints, per activation, the clips acted on, their share and its exact (Clopper-Pearson)
95 % upper bound. The clips are cut from 4.7 minutes of noise, so neighbouring clips are not
independent; the bound is the one for independent clips.

    python benchmarks/noise_clips.py [--activation always wake] [--json F]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speech.audio import SAMPLE_RATE_HZ as SR, read_wav, write_wav  # noqa: E402
from speech import listen_eval  # noqa: E402

GAINS = (1.0, 4.0)  # as recorded and 12 dB louder


def upper95(k: int, n: int) -> float:
    """The exact (Clopper-Pearson) 95 % upper bound on a proportion seen ``k`` times in
    ``n``: the p at which P(X <= k) = 0.025."""
    if k >= n:  # n == 0 too
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 0.025 else (lo, mid)
    return hi


def tally(rows: list[dict]) -> dict:
    """listen-eval's rows of clips without a command: how many were acted on, the share,
    its bound, and what was heard."""
    acted = [(r["file"], r["heard"]) for r in rows if r["verdict"] == "false command"]
    k, n = len(acted), len(rows)
    return {"clips": n, "acted_on": k, "share_pct": round(100 * k / max(n, 1), 2),
            "upper95_pct": round(100 * upper95(k, n), 2), "heard": acted}


def cut_clips(data: Path, out: Path, clip_s: float) -> int:
    """Every whole ``clip_s`` of each noise recording, at each gain, as WAVs in
    ``out/_noise_``; the dataset's ``_silence_`` clips copied to ``out/_silence_``."""
    (out / "_noise_").mkdir(parents=True)
    n = 0
    files = sorted((data / "noise").glob("*.wav"))
    if not files:
        raise SystemExit(f"--data {data}: no noise recordings in {data / 'noise'}")
    step = int(clip_s * SR)
    for f in files:
        x = read_wav(f)[0].astype(np.float64)
        for gain in GAINS:
            y = np.clip(x * gain, -32768, 32767).astype(np.int16)
            for i in range(len(y) // step):
                write_wav(out / "_noise_" / f"{f.stem}_x{gain:g}_{i:03d}.wav",
                          y[i * step:(i + 1) * step])
                n += 1
    sil = data / "speech_commands" / "_silence_"
    if sil.is_dir():
        shutil.copytree(sil, out / "_silence_", ignore=shutil.ignore_patterns("LICENSE*"))
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "speech")
    ap.add_argument("--activation", nargs="+", default=["always", "wake"],
                    choices=["always", "wake"])
    ap.add_argument("--clip-s", type=float, default=1.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    out: dict = {"clip_s": a.clip_s, "gains": list(GAINS)}
    with tempfile.TemporaryDirectory(prefix="noise_clips_") as tmp:
        clips = Path(tmp) / "clips"
        out["noise_clips"] = cut_clips(a.data, clips, a.clip_s)
        for act in a.activation:
            res = Path(tmp) / f"{act}.json"
            rc = listen_eval.main([str(clips), "--activation", act, "--json", str(res)])
            if rc != 0:
                return rc
            rows = json.loads(res.read_text())["files"]
            out[act] = {name: tally([r for r in rows if r["file"].startswith(prefixes)])
                        for name, prefixes in (("_noise_", "_noise_/"),
                                               ("_silence_", "_silence_/"),
                                               ("all", ("_noise_/", "_silence_/")))}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
