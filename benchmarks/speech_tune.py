"""Choose decision thresholds from a dump of ``speech_bench.py --split tune --dump``.

The dump must be made with the decision tests opened up (``--set min_lr_per_frame=-1e9
--set min_word_posterior=0 --set max_uncovered_ms=100000``) so that every candidate
survives to be judged here. Prints, for a grid of (likelihood ratio, posterior,
uncovered speech) thresholds, the tune-split figures, best first under the false
activation limits. Report figures on the test split, not these.

    python benchmarks/speech_tune.py /tmp/d_tune.jsonl

For the kws engine, dump with ``--set min_kws_prob=0`` and run with ``--kws``: a grid of
(single-word, multi-word) class-probability thresholds.
"""
from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict


def evaluate(rows, lr_min, post_min, unc_max, lr_single=None):
    """``lr_min`` for utterances of two or more words, ``lr_single`` for one word."""
    lr_single = lr_min if lr_single is None else lr_single

    def ok(r):
        th = lr_single if len((r["heard"] or "").split()) == 1 else lr_min
        return (r["kind"] == "accept" and r["lr"] is not None and r["lr"] >= th
                and (r["post"] or 0) >= post_min and (r["unc"] or 0) <= unc_max)

    return summarise(rows, ok)


def summarise(rows, ok):
    """Benchmark figures of a dump when ``ok(row)`` says which candidates are accepted."""
    words = defaultdict(list)
    multi = defaultdict(list)
    mono = defaultdict(int)
    noise = 0
    for r in rows:
        acc = ok(r)
        if r["part"] == "words":
            words[(r["snr"], r["word"], r["file"])].append(r["command"] if acc else None)
        elif r["part"] == "multi":
            multi[(r["snr"], r["voice"], r["cmd"])].append(r["command"] if acc else None)
        elif r["part"] == "monologue" and acc:
            mono[r["act"]] += 1
        elif r["part"] == "noise" and acc:
            noise += 1
    out = {}
    for snr in sorted({k[0] for k in words}, key=lambda s: -1 if s is None else -s):
        right = n = unk = nunk = sil = nsil = 0
        for (s, w, f), cmds in words.items():
            if s != snr:
                continue
            got = [c for c in cmds if c]
            if w == "_unknown_":
                nunk += 1
                unk += bool(got)
            elif w == "_silence_":
                nsil += 1
                sil += bool(got)
            else:
                n += 1
                right += got == [w]
        out[f"words {snr}"] = (right / max(n, 1), unk / max(nunk, 1), sil / max(nsil, 1))
    for snr in sorted({k[0] for k in multi}, key=lambda s: -1 if s is None else -s):
        right = n = 0
        for (s, v, c), cmds in multi.items():
            if s == snr:
                n += 1
                right += [x for x in cmds if x] == [c]
        out[f"multi {snr}"] = right / max(n, 1)
    out["mono"] = dict(mono)
    out["noise"] = noise
    return out


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    rows = [json.loads(line) for f in argv for line in open(f)]
    grid = itertools.product([-1e9, -20, -15, -10, -5, -2, 0, 2, 5],
                             [-1e9, -20, -15, -10, -5, 0, 5, 10],
                             [0, 0.7, 0.8, 0.85],
                             [100000, 600, 400, 300, 200])
    res = []
    for lr, lr1, post, unc in grid:
        e = evaluate(rows, lr, post, unc, lr1)
        w = e.get("words None", (0, 1, 1))
        w10 = e.get("words 10.0", (0, 1, 1))
        feasible = (w[1] <= 0.03 and w[2] <= 0.01 and w10[1] <= 0.03 and w10[2] <= 0.01
                    and e["mono"].get("wake", 0) == 0)
        score = w[0] + e.get("multi 10.0", 0) + w10[0] - 0.01 * e["mono"].get("always", 0) \
            - 0.01 * e["noise"]
        res.append((feasible, score, (lr, lr1, post, unc), e))
    res.sort(key=lambda r: (not r[0], -r[1]))
    for feasible, score, th, e in res[:25]:
        print(feasible, round(score, 3), th, json.dumps(e))



# ----------------------------------------------------------------------------- kws engine

SINGLE = {"yes", "no", "stop", "go", "up", "down", "left", "right", "on", "off"}


def evaluate_kws(rows, t_single: float, t_multi: float):
    """The figures of ``evaluate`` for the kws engine's probability thresholds: a command
    counts as accepted when its class probability (``post``) reaches the threshold of its
    kind (one of the ten single words, or a longer command)."""
    def ok(r):
        th = t_single if r["command"] in SINGLE else t_multi
        return r["kind"] == "accept" and (r["post"] or 0) >= th

    return summarise(rows, ok)


def main_kws(argv):
    rows = [json.loads(line) for f in argv for line in open(f)]
    grid = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    for ts in grid:
        for tm in grid:
            e = evaluate_kws(rows, ts, tm)
            print(ts, tm, json.dumps(e))


# ----------------------------------------------------------------------------- confidence model

def joined(r) -> bool:
    """A command accepted in wake mode without its own wake phrase followed a wake
    phrase said alone (the only way past the wake test)."""
    wake_mode = r["part"] == "multi" or (r["part"] == "monologue" and r.get("act") == "wake")
    return bool(wake_mode and not r["wake"])


def features(r) -> list[float]:
    """Same features, same order, as speech.decision.confidence_features."""
    single = float(len((r["heard"] or "").split()) == 1)
    return [r["lr"], r["post"], (r["unc"] or 0.0) / 100.0, r["gpf"] / 10.0, r["dur"],
            single, r["lr"] * single, float(joined(r))]


def fit_confidence(rows, l2: float = 1e-3, iters: int = 3000):
    """Logistic regression: P(the accepted command is the one said) from the decoder's
    features. Positives: accepted candidates whose command is right; negatives: wrong
    commands, unknown words, silence, noise and monologue. Returns raw-feature weights
    and bias (standardisation folded in)."""
    import numpy as np
    X, y = [], []
    for r in rows:
        if r["kind"] != "accept" or r["lr"] is None:
            continue
        if r["part"] == "words":
            lab = r["command"] == r["word"]
        elif r["part"] == "multi":
            lab = r["command"] == r["cmd"]
        else:
            lab = False
        X.append(features(r))
        y.append(float(lab))
    X, y = np.array(X), np.array(y)
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(Z @ w + b)))
        g = p - y
        w -= 0.1 * (Z.T @ g / len(y) + l2 * w)
        b -= 0.1 * g.mean()
    return [round(float(v), 5) for v in w / sd], round(float(b - (w * mu / sd).sum()), 5)


def main_fit(argv):
    rows = [json.loads(line) for f in argv for line in open(f)]
    w, b = fit_confidence(rows)
    print(json.dumps({"confidence_weights": w, "confidence_bias": b}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fit"]:
        main_fit(sys.argv[2:])
    elif sys.argv[1:2] == ["--kws"]:
        main_kws(sys.argv[2:])
    else:
        main()
