"""Does a change to the kws classifier's REAL training data help on real speakers it
never heard? Two-fold check inside the tune speaker half (the test half is untouched):
train on the synthetic features of a previous run plus the real clips of one fold of
tune speakers, then run the real listener on the other fold's clips.

    python benchmarks/kws_speaker_folds.py --features /tmp/kws/feat_v5.npz \
        --fold A --real-speed 0.15 --tag sp15

``--features`` is a ``python -m speech.train_kws --features F`` cache: its last
``info.n_real`` rows are the real examples and are replaced here. Prints the listener's
figures (clean, 20, 10, 5 dB) on the held-out fold. Used for docs/SPEECH.md
("speed perturbation of the real clips: no gain").
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
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
from speech.settings import SpeechSettings  # noqa: E402


def inner_fold(name: str) -> str:
    """A second speaker-level hash split, inside the tune half: "A" or "B"."""
    spk = name.split("_nohash")[0].split("_")[-1]
    return "A" if int(hashlib.md5((spk + "inner").encode()).hexdigest(), 16) % 2 == 0 else "B"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--data", type=Path, default=sb.DEFAULT_DATA)
    ap.add_argument("--fold", choices=["A", "B"], required=True, help="train on this fold")
    ap.add_argument("--real-speed", type=float, default=0.0)
    ap.add_argument("--real-repeats", type=int, default=12)
    ap.add_argument("--tag", default="run")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/kws_folds"))
    a = ap.parse_args(argv)
    z = np.load(a.features)
    X, y, classes = z["X"], z["y"], list(z["classes"])
    n_real = json.loads(str(z["info"]))["n_real"]
    cidx = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(1)
    mixer = tk.Mixer(a.data / "noise", rng)
    other = "B" if a.fold == "A" else "A"
    aud, lab = tk.real_examples(
        a.data, rng, mixer, a.real_repeats, (0.0, 0.45), a.real_speed,
        keep=lambda n: tk.split_of(n) == "tune" and inner_fold(n) == a.fold)
    Xr = tk.featurise(Embedder(threads=1), np.stack(aud))
    yr = np.array([cidx[w if w in cidx else tk.NONE] for w in lab])
    args = types.SimpleNamespace(epochs=40, batch=256, hidden=256, none_weight=0.25,
                                 threads=1, seed=0)
    res = tk.fit(np.concatenate([X[:-n_real], Xr]), np.concatenate([y[:-n_real], yr]),
                 len(classes), args)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    out = a.out_dir / f"{a.tag}{a.fold}.npz"
    np.savez(out, **res["arrays"])
    meta = json.loads((Path(tk.__file__).with_name("kws_en.json")).read_text())
    meta["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_suffix(".json").write_text(json.dumps(meta))
    sb.split_of = lambda n: "test" if (tk.split_of(n) == "tune" and inner_fold(n) == other) else "x"
    noises = [read_wav(f)[0].astype(np.float64)
              for f in sorted(glob.glob(str(a.data / "noise" / "*.wav")))]
    r = sb.Runner(SpeechSettings(kws_model=str(out)), 20)
    print(json.dumps({"train_fold": a.fold, "real_speed": a.real_speed, "real_examples": len(lab),
                      "held_out": sb.bench_words(r, a.data, "test", [20.0, 10.0, 5.0], noises)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
