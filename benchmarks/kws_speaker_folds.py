"""Speaker-level cross-validation of the kws classifier on REAL speech: train on the
synthetic features of a previous run plus the real clips of all folds but one, then run
the real listener on the held-out fold's clips (speakers it never heard).

Two uses:

* ``--over tune`` (default, ``--k 2``): a check inside the tune speaker half, the test
  half untouched, for choosing a change before the test split is run::

      python benchmarks/kws_speaker_folds.py --features /tmp/kws/feat_v5.npz \\
          --fold A --real-speed 0.15 --tag sp15

* ``--over all --k 4 --fold all``: the estimate for a classifier trained on every real
  speaker (``python -m speech.train_kws --real-speakers all``, the shipped one): no
  speaker is left for a held-out test, so its real-word accuracy is estimated by training
  on three quarters of the speakers and listening to the fourth, four times::

      python benchmarks/kws_speaker_folds.py --features /tmp/kws/feat_v8.npz \\
          --over all --k 4 --fold all --tag cv4

``--features`` is a ``python -m speech.train_kws --features F`` cache: its last
``info.n_real`` rows are the real examples and are replaced here. Prints the listener's
figures (clean, 20, 10, 5 dB) on each held-out fold, as JSON lines, then their sum.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import speech_bench as sb  # noqa: E402
from speech import train_kws as tk  # noqa: E402
from speech.audio import read_wav  # noqa: E402
from speech.kws import Embedder  # noqa: E402
from speech.listen_cli import add_pace_pauses_option  # noqa: E402
from speech.settings import SpeechSettings  # noqa: E402


from speech.train_whisper_head import clip_index, speaker_fold  # noqa: E402  (k=2: the inner folds
# "A" = 0 and "B" = 1 used inside the tune half)


def in_set(name: str, over: str) -> bool:
    return over == "all" or tk.split_of(name) == over


def held_out_score(a, Xs, ys, n_classes, Xr, yr, folds, fold: int, noises,
                   lat: dict[str, list[float]] | None = None, enrolled=None) -> dict:
    """Train on the synthetic part (Xs, ys) plus every real clip not in fold ``fold``;
    the listener's figures on that fold (its words' latencies appended to ``lat``)."""
    keep = None if folds is None else (folds != fold) | (enrolled < a.enrol)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    out = a.out_dir / f"{a.tag}{fold}.npz"
    if not (a.reuse and out.is_file()):
        args = types.SimpleNamespace(epochs=40, batch=256, hidden=a.hidden, none_weight=0.25,
                                     threads=1, seed=0, arch=a.arch)
        res = tk.fit(np.concatenate([Xs, Xr[keep]]), np.concatenate([ys, yr[keep]]),
                     n_classes, args)
        np.savez(out, **res["arrays"])
        meta = json.loads((Path(tk.__file__).with_name("kws_en.json")).read_text())
        meta["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        out.with_suffix(".json").write_text(json.dumps(meta))
    sb.split_of = lambda n: ("test" if in_set(n, a.over) and speaker_fold(n, a.k) == fold
                             and clip_index(n) >= a.enrol else "x")
    over = sb.parse_sets(a.set)  # as speech_bench.py --set
    if a.head_features:  # the single-word head, retrained without the held-out speakers
        from speech import train_whisper_head as th
        head = a.out_dir / f"{a.tag}head{fold}.npz"
        if not (a.reuse and head.is_file()):
            th.main(["--data", str(a.data), "--features", a.head_features, "--out", str(head),
                     "--real-speakers", f"fold:{a.k}:{fold}" + (f":{a.enrol}" if a.enrol else "")]
                    + a.head_args.split())
        over["whisper_head_file"] = str(head)
    r = sb.Runner(SpeechSettings(kws_model=str(out), kws_none_scale=a.none_scale, **over), 20,
                  a.pace_pauses)
    res = sb.bench_words(r, a.data, "test", [20.0, 10.0, 5.0], noises, lat,
                         wake_voices=((sb.VOICES_TUNE if a.wake_voices == "tune" else sb.VOICES_TEST)
                                      if a.wake_prefix else None), cache=a.cache,
                         wake_gap_s=a.wake_gap_ms / 1000)
    if a.dump:  # every utterance's decision, as speech_bench.py --dump, with its fold
        with open(a.dump, "a") as f:
            for d in r.dump:
                f.write(json.dumps({**d, "fold": fold}) + "\n")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--data", type=Path, default=sb.DEFAULT_DATA)
    ap.add_argument("--over", choices=["tune", "test", "all"], default="tune",
                    help="the speakers folded (default: the tune half)")
    ap.add_argument("--k", type=int, default=2, help="number of speaker folds")
    ap.add_argument("--fold", default="A",
                    help="the fold held out: 0..k-1, 'all' for each in turn; with k=2 "
                         "'A' trains on fold A and holds out B (as before), 'B' the reverse")
    ap.add_argument("--real-speed", type=float, default=0.0)
    ap.add_argument("--real-repeats", type=int, default=12)
    ap.add_argument("--tail-max", type=float, default=0.3,
                    help="real training windows end 0 to this many seconds after the speech "
                         "(train_kws's default; the tune-half figures in docs/SPEECH.md "
                         "before classifier v9 used 0.45)")
    ap.add_argument("--none-scale", type=float, default=1.0,
                    help="the listener's kws_none_scale (1: as trained)")
    ap.add_argument("--reuse", action="store_true",
                    help="score an existing OUT_DIR/TAG<fold>.npz instead of training it again "
                         "(e.g. to try --none-scale values on the same fold models)")
    ap.add_argument("--arch", choices=["mlp", "tcn"], default="mlp", help="train_kws --arch")
    ap.add_argument("--hidden", type=int, default=256, help="train_kws --hidden")
    ap.add_argument("--set", action="append", default=[],
                    help="override a SpeechSettings field, e.g. --set second_opinion=false")
    ap.add_argument("--dump", type=Path,
                    help="append every held-out utterance's decision here (JSON lines)")
    ap.add_argument("--head-features", default="",
                    help="train the single-word head of each fold without its speakers "
                         "(python -m speech.train_whisper_head --features F, --over all)")
    ap.add_argument("--head-args", default="", help="more train_whisper_head arguments")
    ap.add_argument("--wake-prefix", action="store_true",
                    help="score the held-out words in wake activation (the default): each "
                         "after a SYNTHETIC wake phrase in the test voices (speech_bench.py "
                         "--words-wake)")
    ap.add_argument("--wake-voices", choices=["test", "tune"], default="test",
                    help="--wake-prefix: speech_bench.py's eSpeak voices for the wake phrase")
    ap.add_argument("--wake-gap-ms", type=int, default=round(sb.WAKE_GAP_S * 1000),
                    help="--wake-prefix: the pause after the wake phrase (default %(default)s)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/speech_bench_cache"),
                    help="--wake-prefix: eSpeak NG cache")
    add_pace_pauses_option(ap)
    ap.add_argument("--enrol", type=int, default=0,
                    help="a speaker heard before: each held-out speaker's first N recordings "
                         "of a word (Speech Commands' _nohash_<i>, i < N) join the training "
                         "of the classifier and the head, and only the others are scored "
                         "(docs/SPEECH.md, 'A speaker the models have heard')")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/kws_folds"))
    a = ap.parse_args(argv)
    if a.k < 2:
        ap.error(f"--k must be at least 2, got {a.k}")
    if a.enrol < 0:
        ap.error(f"--enrol must be >= 0, got {a.enrol}")
    if a.wake_prefix:
        a.cache.mkdir(parents=True, exist_ok=True)
    if a.fold == "all":
        held = list(range(a.k))
    elif a.fold in ("A", "B") and a.k == 2:
        held = [1 if a.fold == "A" else 0]  # named by the fold trained on
    elif a.fold.isdigit() and int(a.fold) < a.k:
        held = [int(a.fold)]
    else:
        ap.error(f"--fold must be 0..{a.k - 1} or 'all' (or A/B with --k 2), got {a.fold!r}")
    z = np.load(a.features)
    X, y, classes = z["X"], z["y"], list(z["classes"])
    n_real = json.loads(str(z["info"]))["n_real"]
    Xs, ys = X[: len(X) - n_real], y[: len(y) - n_real]  # the synthetic part
    Xr = yr = folds = enrolled = None
    if not (a.reuse and all((a.out_dir / f"{a.tag}{f}.npz").is_file() for f in held)):
        cidx = {c: i for i, c in enumerate(classes)}
        rng = np.random.default_rng(1)
        mixer = tk.Mixer(a.data / "noise", rng)
        aud, lab, names = tk.real_examples(a.data, rng, mixer, a.real_repeats,
                                           (0.0, a.tail_max), a.real_speed,
                                           keep=lambda n: in_set(n, a.over))
        Xr = tk.featurise(Embedder(threads=1), np.stack(aud))
        yr = np.array([cidx[w if w in cidx else tk.NONE] for w in lab])
        folds = np.array([speaker_fold(n, a.k) for n in names])
        enrolled = np.array([clip_index(n) for n in names])  # --enrol: < N joins training
    noises = [read_wav(f)[0].astype(np.float64)
              for f in sorted(glob.glob(str(a.data / "noise" / "*.wav")))]
    total: dict[str, dict[str, list[int]]] = {}
    lat: dict[str, list[float]] = {}  # every fold's words, pooled
    for fold in held:
        res = held_out_score(a, Xs, ys, len(classes), Xr, yr, folds, fold, noises, lat,
                             enrolled)
        print(json.dumps({"over": a.over, "k": a.k, "held_out_fold": fold,
                          "activation": f"wake (synthetic wake phrase, {a.wake_voices} voices, "
                          f"{a.wake_gap_ms} ms, first)" if a.wake_prefix else "always",
                          "none_scale": a.none_scale,
                          "real_speed": a.real_speed, "held_out": res}), flush=True)
        for cond, v in res.items():
            if cond.startswith("latency"):
                continue
            t = total.setdefault(cond, {})
            for key, text in v.items():  # "74.5% (79/106)" or "n/a"
                m = re.search(r"\((\d+)/(\d+)\)", text)
                if m:
                    t.setdefault(key, [0, 0])
                    t[key][0] += int(m.group(1))
                    t[key][1] += int(m.group(2))
    if len(held) > 1:
        print(json.dumps({"over": a.over, "k": a.k, "folds": held,
                          "none_scale": a.none_scale, "paces_pauses": a.pace_pauses, "sum": {
            cond: {key: f"{n}/{d} ({100 * n / max(d, 1):.1f} %)" for key, (n, d) in v.items()}
            for cond, v in total.items()},
            "latency_ms_end_of_speech_to_command": sb.latency_summary(lat)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
