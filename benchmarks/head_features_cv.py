"""Which features the single-word head should read: Whisper's pooled encoder output,
Moonshine tiny's, or both (docs/SPEECH.md, "Moonshine's ears").

    python -m speech.train_whisper_head --moonshine --features F --out /tmp/h.npz   # F, once
    python benchmarks/head_features_cv.py --features F [--l2 0.001,0.01]

F holds the pooled features of the head's own examples (REAL Speech Commands clips, each as
recorded and 5 times in real noise; eSpeak voices; noise), Whisper's 768 then Moonshine's
576. For each of the 4 speaker folds of ``benchmarks/kws_speaker_folds.py``, a head (the
shipped trainer, ``train_whisper_head.fit``) is trained without that fold's speakers and
scored on their clips: the clean words (the recordings as they are), the noisy copies, and
the clips of other words and silence ("other" right when the head says so). These are clips,
not the pipeline: ``kws_speaker_folds.py --head-args "--moonshine"`` measures that.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speech.train_whisper_head import fit, speaker_fold  # noqa: E402
from speech.whisper_head import EXTRA_FEATURES  # noqa: E402

WHISPER = 768


def folds_of(source: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(synthetic, fold, copy): which examples are synthetic or noise, each real example's
    speaker fold (-1 for the others), and its copy number (0 = as recorded; the trainer
    writes a clip's copies one after another)."""
    syn = np.isin(source, ["synthetic", "noise"])
    fold = np.array([-1 if s else speaker_fold(str(n), k) for n, s in zip(source, syn)])
    copy = np.zeros(len(source), int)
    for i in range(1, len(source)):
        if not syn[i] and source[i] == source[i - 1]:
            copy[i] = copy[i - 1] + 1
    return syn, fold, copy


def score(X, y, syn, fold, copy, k: int, l2: float, other: int) -> dict:
    tot = {"clean": [0, 0], "noisy": [0, 0], "other": [0, 0]}
    for f in range(k):
        tr, te = syn | (fold != f), (~syn) & (fold == f)
        r = fit(X[tr], y[tr], other + 1, l2=l2, iters=600, lr=0.01)
        pred = (((X[te] - r["mu"]) / r["sd"]) @ r["W"] + r["b"]).argmax(axis=1)
        yt, ct = y[te], copy[te]
        word = yt < other
        for key, m in (("clean", word & (ct == 0)), ("noisy", word & (ct > 0))):
            tot[key][0] += int((pred[m] == yt[m]).sum())
            tot[key][1] += int(m.sum())
        tot["other"][0] += int((pred[~word] == other).sum())
        tot["other"][1] += int((~word).sum())
    return tot


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True,
                    help="train_whisper_head --moonshine --features F (Whisper's and "
                         "Moonshine's pooled outputs)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l2", default="0.001,0.01", help="weight decays to try, comma-separated")
    a = ap.parse_args(argv)
    z = np.load(a.features)
    X, y, source = z["X"], z["y"], z["source"]
    if X.shape[1] != WHISPER + EXTRA_FEATURES["moonshine"]:
        raise SystemExit(f"{a.features}: {X.shape[1]} features, not Whisper's and Moonshine's "
                         f"({WHISPER + EXTRA_FEATURES['moonshine']}); make it with "
                         f"train_whisper_head --moonshine --features F")
    syn, fold, copy = folds_of(source, a.k)
    other = int(y.max())  # the trainer puts "other" last
    print(f"{len(y)} examples, {int((~syn).sum())} real; {a.k} speaker folds")
    print("| features | weight decay | clean words | noisy copies | other |")
    print("|---|---|---|---|---|")
    for name, cols in (("Whisper", slice(0, WHISPER)), ("Moonshine", slice(WHISPER, None)),
                       ("both", slice(None))):
        for l2 in (float(v) for v in a.l2.split(",")):
            t = score(X[:, cols], y, syn, fold, copy, a.k, l2, other)
            print(f"| {name} | {l2:g} | {t['clean'][0]} / {t['clean'][1]} | "
                  f"{100 * t['noisy'][0] / t['noisy'][1]:.1f} % | "
                  f"{100 * t['other'][0] / t['other'][1]:.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
