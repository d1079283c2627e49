"""How Whisper tiny.en and Moonshine tiny hear the ten single-word commands said by REAL
people (docs/SPEECH.md, "Moonshine's ears"): each model's first decoder step, read as the
probability of each of the ten words (closed set, no "other"), and its own transcript.

    python benchmarks/closed_set_words.py [--data ../shared/data/speech] [--snrs 20,10,5]
        [--fold-heads DIR]   # also the single-word heads DIR/n64_head<F>.npz, speakers held out
        [--head-features F]  # or those heads trained here from F, a train_whisper_head
                             # --features cache (its first 768 columns: Whisper's)

Each Speech Commands clip (its file padding stripped) is mixed with a piece of the shared
noise at the SNR (as ``speech_bench.py`` mixes its words) and cut as the listener cuts an
utterance: 150 ms before the speech, 200 ms after. Per condition it prints how many of the
200 command words each reading names first: Whisper, Moonshine, the held-out head (with
``--fold-heads``: ``kws_speaker_folds.py``'s, by each clip's speaker fold; with
``--head-features``: the same recipe, ``train_whisper_head.fit`` on the cache without the
fold's speakers, as ``head_features_cv.py`` trains them), their
log-probabilities summed; and the first word of each model's greedy transcript. Moonshine's
decoder is read from the same pinned wheel as its encoder (speech/moonshine.py); this is a
measurement, not part of the product.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from speech.audio import noise_piece, read_wav, strip_padding  # noqa: E402
from speech.commands import SINGLE_WORDS  # noqa: E402
from speech.train_kws import speech_bounds  # noqa: E402
from speech.train_whisper_head import fit, speaker_fold  # noqa: E402
from speech.whisper import EOT, NO_TIMESTAMPS, SOT, Cache, WhisperTiny  # noqa: E402
from speech.whisper_head import OTHER, WhisperHead  # noqa: E402
from speech_bench import mix  # noqa: E402
from head_features_cv import WHISPER, folds_of  # noqa: E402

WORDS = list(SINGLE_WORDS)
BOS, EOS = 1, 2  # Moonshine's
SPACE = "\u2581".encode()


def moonshine_vocab(path: Path) -> list[bytes]:
    """tokenizer.bin of the wheel: each token as a length byte and its bytes."""
    d, i, out = path.read_bytes(), 0, []
    while i < len(d):
        n = d[i]
        out.append(d[i + 1: i + 1 + n])
        i += 1 + n
    return out


class MoonshineDecoder:
    """Moonshine tiny's merged decoder (ONNX Runtime format): the first step's log
    probabilities, and a greedy transcript."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from speech.moonshine import MoonshineEncoder, encoder_path
        d = encoder_path().parent
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.enc = MoonshineEncoder()
        self.dec = ort.InferenceSession(str(d / "decoder_model_merged.ort"), so,
                                        providers=["CPUExecutionProvider"])
        self.vocab = moonshine_vocab(d / "tokenizer.bin")
        self.index = {b: i for i, b in enumerate(self.vocab)}
        self.layers = sum(1 for i in self.dec.get_inputs() if i.name.endswith("decoder.key"))

    def word_ids(self, word: str) -> list[int]:
        return [self.index[SPACE + w.encode()] for w in (word.capitalize(), word)]

    def _step(self, enc, ids, past):
        feed = {"encoder_attention_mask": np.ones(enc.shape[:2], np.int64),
                "input_ids": np.array([ids], np.int64), "encoder_hidden_states": enc}
        if past is None:
            z = np.zeros((1, 8, 0, enc.shape[2] // 8), np.float32)
            feed.update({f"past_key_values.{n}.{a}.{b}": z for n in range(self.layers)
                         for a in ("decoder", "encoder") for b in ("key", "value")})
        else:
            feed.update(past)
        feed["use_cache_branch"] = np.array([past is not None])
        outs = self.dec.run(None, feed)
        names = [o.name.replace("present", "past_key_values") for o in self.dec.get_outputs()]
        new = dict(zip(names[1:], outs[1:]))
        if past is not None:  # the cache branch gives no encoder keys: keep the first step's
            new.update({k: v for k, v in past.items() if ".encoder." in k})
        z = outs[0][0, -1].astype(np.float64)
        z -= z.max()
        return z - np.log(np.exp(z).sum()), new

    def run(self, x: np.ndarray, max_tokens: int = 8) -> tuple[np.ndarray, str]:
        enc = self.enc.encode(x)[None]
        lp, past = self._step(enc, [BOS], None)
        first, out, t = lp, [], int(lp.argmax())
        while t != EOS and len(out) < max_tokens:
            out.append(t)
            lp, past = self._step(enc, [t], past)
            t = int(lp.argmax())
        text = b"".join(self.vocab[t] if t > 258 else bytes([t - 3]) for t in out if t > 2)
        return first, text.decode("utf-8", "replace").replace("\u2581", " ").strip()


def whisper_run(m: WhisperTiny, x: np.ndarray, max_tokens: int = 8):
    """Whisper's first-step log probabilities, its greedy transcript and pooled output
    (the numpy reference model: its decoder steps take any vocabulary)."""
    xkv, pooled = m.context_pooled(x)
    (c,), lp = m.step([Cache()], [[SOT, NO_TIMESTAMPS]], xkv)
    first, out, t = lp[0].astype(np.float64), [], int(lp[0].argmax())
    while t != EOT and len(out) < max_tokens:
        out.append(t)
        (c,), lp = m.step([c], [[t]], xkv)
        t = int(lp[0].argmax())
    return first, m.tokenizer.decode(out).strip(), pooled


def heads_from_features(path: str, k: int = 4) -> list:
    """The k fold heads of the shipped recipe (Whisper's columns, weight decay 1e-3, 600
    iterations), each trained without one speaker fold: functions pooled -> probabilities."""
    z = np.load(path)
    X, y, source = z["X"][:, :WHISPER], z["y"], z["source"]
    syn, fold, _ = folds_of(source, k)
    heads = []
    for f in range(k):
        tr = syn | (fold != f)
        r = fit(X[tr], y[tr], int(y.max()) + 1, l2=1e-3, iters=600, lr=0.01)

        def probs(p, r=r):
            s = ((p - r["mu"]) / r["sd"]) @ r["W"] + r["b"]
            e = np.exp(s - s.max())
            return e / e.sum()
        heads.append(probs)
    return heads


def first_word(text: str) -> str:
    w = re.sub(r"[^a-z ]", "", text.lower()).split()
    return w[0] if w else ""


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(here.parents[2] / "shared" / "data" / "speech"))
    ap.add_argument("--snrs", default="20,10,5")
    ap.add_argument("--fold-heads", default="", help="DIR of n64_head<F>.npz (4 folds)")
    ap.add_argument("--head-features", default="",
                    help="train_whisper_head --features F cache: train the 4 fold heads here")
    a = ap.parse_args(argv)
    data = Path(a.data)
    files = [(w, f) for w in WORDS + ["_unknown_"]
             for f in sorted(glob.glob(str(data / "speech_commands" / w / "*.wav")))]
    if not files:
        raise SystemExit(f"{data}/speech_commands: no Speech Commands clips")
    noises = [read_wav(f)[0] for f in sorted(glob.glob(str(data / "noise" / "*.wav")))]
    wm, mm = WhisperTiny(), MoonshineDecoder()
    w_ids = []
    for w in WORDS:  # Whisper's single-token spellings of the word
        ids = [t[0] for t in (wm.tokenizer.encode(s) for s in (" " + w.capitalize(), " " + w,
                                                                 w.capitalize())) if len(t) == 1]
        w_ids.append(ids)
    m_ids = [mm.word_ids(w) for w in WORDS]
    if a.fold_heads:
        heads = [lambda p, h=WhisperHead(Path(a.fold_heads) / f"n64_head{f}.npz"):
                 np.array([h(p).probs[c] for c in WORDS]) for f in range(4)]
    elif a.head_features:
        heads = [lambda p, h=h: h(p)[:len(WORDS)] for h in heads_from_features(a.head_features)]
    else:
        heads = None

    def closed(lp, ids):
        s = np.array([np.logaddexp.reduce(lp[i]) for i in ids])
        return s - np.logaddexp.reduce(s)

    print("| the ten words (200 REAL clips) | Whisper | Moonshine | " + ("head | " if heads else "")
          + "Whisper + Moonshine | " + ("head + Whisper | head + Moonshine | all three | "
                                         if heads else "")
          + "Whisper's transcript, first word | Moonshine's | other words taken for one (W / M) |")
    print("|---" * (7 + 4 * bool(heads)) + "|")
    for snr in [None] + [float(v) for v in a.snrs.split(",") if v]:
        n = 0
        cnt = {k: 0 for k in ("w", "m", "h", "wm", "hw", "hm", "all", "wt", "mt", "wo", "mo")}
        for k, (w, f) in enumerate(files):
            x0 = strip_padding(read_wav(f)[0])
            x = x0 if snr is None else mix(x0, noise_piece(noises, len(x0), seed=k * 31 + len(w)),
                                           snr)
            b0, b1 = speech_bounds(x0)
            u = x[max(0, b0 - 2400): min(len(x), b1 + 3200)]
            wl, wt, pooled = whisper_run(wm, u)
            ml, mt = mm.run(u)
            if w == "_unknown_":
                cnt["wo"] += first_word(wt) in WORDS
                cnt["mo"] += first_word(mt) in WORDS
                continue
            n += 1
            i = WORDS.index(w)
            W, M = closed(wl, w_ids), closed(ml, m_ids)
            cnt["w"] += int(W.argmax() == i)
            cnt["m"] += int(M.argmax() == i)
            cnt["wm"] += int((W + M).argmax() == i)
            if heads:
                H = np.log(heads[speaker_fold(os.path.basename(f), 4)](pooled) + 1e-9)
                H -= np.logaddexp.reduce(H)
                cnt["h"] += int(H.argmax() == i)
                cnt["hw"] += int((H + W).argmax() == i)
                cnt["hm"] += int((H + M).argmax() == i)
                cnt["all"] += int((W + M + H).argmax() == i)
            cnt["wt"] += first_word(wt) == w
            cnt["mt"] += first_word(mt) == w
        cond = "clean" if snr is None else f"{snr:g} dB"
        cells = [cnt["w"], cnt["m"]] + ([cnt["h"]] if heads else []) + [cnt["wm"]] + (
            [cnt["hw"], cnt["hm"], cnt["all"]] if heads else []) + [cnt["wt"], cnt["mt"], f"{cnt['wo']} / {cnt['mo']}"]
        print(f"| {cond} | " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"(of {n} command words; the other words: {len(files) - n} clips; {OTHER!r} is not "
          f"among the choices)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
