"""Train the single-word head on Whisper's encoder (speech/whisper_head.py) and write
speech/whisper_head_en.npz (or, with ``--kind commands``, the command head).

    python -m speech.train_whisper_head --data ../shared/data/speech [--out FILE]
        [--real-speakers all|tune|fold:K:F] [--kind words|commands]

Numpy only (softmax regression, Adam); deterministic for a seed; about three minutes on one
core, most of it Whisper's encoder on the examples.

Examples, each cut as the listener cuts an utterance (150 ms before the speech, 50-300 ms
after it) and mixed with the real noise of the first 60 % of each noise file (the benchmark
draws its noise anywhere in them) at a random SNR, or kept as recorded:

* REAL Speech Commands clips (every speaker by default; ``--real-speakers tune`` keeps the
  benchmark's test half out, ``fold:K:F`` the speakers of fold F of K, as
  ``benchmarks/kws_speaker_folds.py``): the ten single words, ``_unknown_`` and
  ``_silence_`` as "other"; REAL noise alone as "other";
* SYNTHETIC eSpeak NG voices (the classifier's training voices, never the benchmark's test
  voices): 120 per word as the word, and 3000 "other": every multi-word command phrase, the
  wake phrase, other words, partial commands and operating-room talk (whole or cut).
  Without them (``--per-word 0 --n-other 0``) the head is a little better on held-out real
  words but has never heard a sentence: it names a single word in talk and in multi-word
  commands (docs/SPEECH.md, "The single-word head").

``--flite-per-word N --flite-other M`` add N examples of each single word and M "other" said
by Flite's voices (rule HF, docs/SPEECH.md: tried, not adopted; Debian ``flite``), after every
other example and from a random stream of their own, so those are unchanged.

``--kind commands`` trains the command head instead (speech/whisper_cmd_head_en.npz, every
command id, the wake phrase said alone and "other"; docs/SPEECH.md, "The command head"):
SYNTHETIC voices only (``build_commands``), so no real speaker is in it and every
real-word figure stays held out. Since rule HC2 (docs/SPEECH.md) it also learns from
``--cuts-per-command`` clips per multi-word command as the shipped listener itself cuts them
in noise (``build_cuts``: the follow-up after a wake phrase said alone, short and clipped at
10 dB, is what the head is asked about), each weighted ``--cut-weight``. The cuts depend on
the listener that makes them, so the shipped file's were made with the head before it
(commit d4b3310); ``--cut-features`` keeps them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .commands import SINGLE_WORDS, load_commands
from .kws import SR
from .whisper_head import EXTRA_FEATURES, OTHER, WAKE, pool

PRE_S = 0.15  # the endpointer's pre-roll
TAIL_S = (0.05, 0.3)  # what follows the speech in an utterance (hangover, its lag)


def speaker_fold(name: str, k: int = 2) -> int:
    """A speaker-level hash split of Speech Commands file names, independent of the
    tune/test one: 0..k-1 (benchmarks/kws_speaker_folds.py)."""
    spk = name.split("_nohash")[0].split("_")[-1]
    return int(hashlib.md5((spk + "inner").encode()).hexdigest(), 16) % k


def clip_index(name: str) -> int:
    """The repetition number of a Speech Commands file name (``..._nohash_<i>.wav``): the
    i-th recording of that word by that speaker (0 if the name has none)."""
    tail = name.rsplit("_nohash_", 1)[-1].split(".")[0] if "_nohash_" in name else ""
    return int(tail) if tail.isdigit() else 0


def keeper(spec: str):
    """File-name filter for the real speakers: 'all', 'tune', 'fold:K:F' (all but F) or
    'fold:K:F:N' (all but F, plus F's first N recordings of each word: a speaker enrolled,
    benchmarks/kws_speaker_folds.py --enrol)."""
    from .train_kws import split_of
    if spec == "all":
        return lambda n: True
    if spec == "tune":
        return lambda n: split_of(n) == "tune"
    parts = spec.split(":")
    if (len(parts) not in (3, 4) or parts[0] != "fold"
            or not all(p.isdigit() for p in parts[1:])):
        raise SystemExit(f"--real-speakers {spec!r}: want all, tune, fold:K:F or fold:K:F:N")
    k, f = int(parts[1]), int(parts[2])
    n_enrol = int(parts[3]) if len(parts) == 4 else 0
    return lambda n: speaker_fold(n, k) != f or clip_index(n) < n_enrol


def cut_real(x: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """A real clip as an utterance: (audio, its speech part for the SNR)."""
    from .audio import room_tone
    from .train_kws import speech_bounds
    a, b = speech_bounds(x)
    a0 = a - int(PRE_S * SR)
    b1 = b + int(rng.uniform(*TAIL_S) * SR)
    head = room_tone(x, -a0) if a0 < 0 else x[:0]
    tail = room_tone(x, b1 - len(x)) if b1 > len(x) else x[:0]
    return np.concatenate([head, x[max(0, a0): min(len(x), b1)], tail]), x[a:b]


class Talker:
    """Synthetic speech as the heads hear it: eSpeak NG with a random training voice (the
    classifier's, never the benchmark's), speed and pitch, cut as the listener cuts an
    utterance; and the words that are no command (CMU dictionary and common words)."""

    def __init__(self, rng, cache: str, commands, flite: bool = False) -> None:
        from .engines import cmudict_words
        from .train_kws import COMMON_WORDS, FLITE_VOICES, Synth, train_voices
        self.rng, self.synth = rng, Synth(Path(cache))
        self.voices = list(FLITE_VOICES) if flite else train_voices()
        self.wake = commands.wake_phrases[0]
        cmd_words = set(commands.words) | set(self.wake.split())
        self.cmu = sorted(w for w in cmudict_words() if w.isalpha() and 2 <= len(w) <= 12
                          and w not in cmd_words)
        self.other = [w for w in COMMON_WORDS if w not in cmd_words]

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def other_text(self, multi: list[str]) -> str:
        """What the single-word head's "other" examples say: a multi-word command phrase, the
        wake phrase, a dictionary or common word, a partial command, a wake sound-alike or
        operating-room talk."""
        from .train_kws import PARTIALS, TALK, WAKE_SOUNDALIKES
        r = self.rng.random()
        return (self.pick(multi) if r < 0.3 else self.wake if r < 0.4
                else self.pick(self.cmu) if r < 0.6 else self.pick(self.other) if r < 0.7
                else self.pick(PARTIALS) if r < 0.8 else self.pick(WAKE_SOUNDALIKES) if r < 0.85
                else self.pick(TALK))

    def say(self, text: str) -> np.ndarray:
        import subprocess
        v = self.pick(self.voices)
        s, p = int(self.rng.integers(110, 221)), int(self.rng.integers(15, 86))
        try:
            return self.synth(text, v, s, p)
        except subprocess.CalledProcessError:
            return self.synth(text, v.split("+")[0], s, p)

    def piece(self, x: np.ndarray) -> np.ndarray:
        """Long talk: a piece, as an always-listening cut makes it."""
        if len(x) <= int(2.5 * SR):
            return x
        a = int(self.rng.integers(0, len(x) - int(0.4 * SR)))
        return x[a: a + int(self.rng.uniform(0.4, 2.5) * SR)]

    def utter(self, x: np.ndarray) -> np.ndarray:
        pre = np.zeros(int(PRE_S * SR), np.int16)
        post = np.zeros(int(self.rng.uniform(*TAIL_S) * SR), np.int16)
        return np.concatenate([pre, x, post])


def build(args) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(audio, label, source) of every example; every real speaker's clips (``source`` is
    the file name for them: ``keeper`` chooses the speakers at fit time)."""
    import glob
    from .audio import read_wav
    from .train_kws import Mixer, speed
    rng = np.random.default_rng(args.seed)
    mixer = Mixer(Path(args.data) / "noise", rng)
    audio: list[np.ndarray] = []
    labels: list[str] = []
    source: list[str] = []

    def add(x, ref, label, src, room=True):
        audio.append(mixer(x, ref, room=room) if room is not None else x)
        labels.append(label)
        source.append(src)

    n_real = 0
    for w in list(SINGLE_WORDS) + ["_unknown_", "_silence_"]:
        for f in sorted(glob.glob(str(Path(args.data) / "speech_commands" / w / "*.wav"))):
            x0, _ = read_wav(f)
            lab = w if w in SINGLE_WORDS else OTHER
            for k in range(args.real_repeats):
                xs = x0  # --real-speed: the noisy copies played faster or slower
                if k and args.real_speed > 0 and w != "_silence_":
                    xs = speed(x0, float(rng.uniform(1 - args.real_speed, 1 + args.real_speed)))
                if w == "_silence_":
                    n = int(rng.uniform(0.3, 1.0) * SR)
                    off = int(rng.integers(0, max(1, len(x0) - n)))
                    x, ref = x0[off: off + n], np.full(SR, 1000, np.int16)
                else:
                    x, ref = cut_real(xs, rng)
                # as recorded first, then in noise (a real room already: no reverberation)
                add(x, ref, lab, os.path.basename(f), room=None if k == 0 else False)
                n_real += 1
    print(f"real: {n_real} examples", flush=True)

    commands = load_commands(args.commands or None)
    tk = Talker(rng, args.cache, commands)
    wake, say, utter = tk.wake, tk.say, tk.utter
    multi = [p for c in commands.commands.values() for p in c.phrases
             if p not in SINGLE_WORDS]

    t0 = time.time()
    for w in SINGLE_WORDS:
        for _ in range(args.per_word):
            s = say(w)
            add(utter(s), s, w, "synthetic")
    for _ in range(args.n_other):
        s = tk.piece(say(tk.other_text(multi)))
        add(utter(s), s, OTHER, "synthetic")
    for _ in range(args.n_noise):  # noise alone
        add(np.zeros(int(rng.uniform(0.3, 1.2) * SR), np.int16), np.full(SR, 1000, np.int16),
            OTHER, "noise")
    if args.flite_per_word or args.flite_other:  # rule HF: after everything else, own RNG
        fl = Talker(np.random.default_rng(args.seed + 7), args.cache, commands, flite=True)
        mixer.rng = fl.rng
        for w in SINGLE_WORDS:
            for _ in range(args.flite_per_word):
                s = fl.say(w)
                add(fl.utter(s), s, w, "synthetic")
        for _ in range(args.flite_other):
            s = fl.piece(fl.say(fl.other_text(multi)))
            add(fl.utter(s), s, OTHER, "synthetic")
    print(f"synthetic and noise: {len(audio) - n_real} examples, {time.time() - t0:.0f} s",
          flush=True)
    return audio, labels, source


def build_commands(args) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(audio, label, source) of the command head's examples: SYNTHETIC only (the
    classifier's training voices) in the real noise, so the real speakers stay held out
    for every benchmark. Each multi-word command ``--per-command`` times (a random phrase
    of it, half after the wake phrase in one breath, half alone as after a wake phrase
    said alone), each single word ``--per-word`` times (the same halves), the wake
    phrase alone ``--n-wake`` times, ``--n-other`` others (as the single-word head's, the
    multi-word phrases left out) and ``--n-noise`` noise alone."""
    from .train_kws import PARTIALS, TALK, WAKE_SOUNDALIKES, Mixer
    rng = np.random.default_rng(args.seed)
    mixer = Mixer(Path(args.data) / "noise", rng)
    commands = load_commands(args.commands or None)
    tk = Talker(rng, args.cache, commands)
    wake = tk.wake
    audio: list[np.ndarray] = []
    labels: list[str] = []

    def add(x, label):
        audio.append(mixer(tk.utter(x), x))
        labels.append(label)

    t0 = time.time()
    for cid in sorted(commands.commands):
        phrases = commands.commands[cid].phrases
        n = args.per_word if cid in SINGLE_WORDS else args.per_command
        for k in range(n):
            ph = phrases[int(rng.integers(len(phrases)))]
            add(tk.say(f"{wake}, {ph}" if k % 2 == 0 else ph), cid)
    for _ in range(args.n_wake):
        add(tk.say(wake), WAKE)
    for _ in range(args.n_other):
        r = rng.random()
        t = (tk.pick(tk.cmu) if r < 0.35 else tk.pick(tk.other) if r < 0.5
             else tk.pick(PARTIALS) if r < 0.65 else tk.pick(WAKE_SOUNDALIKES) if r < 0.75
             else tk.pick(TALK))
        add(tk.piece(tk.say(t)), OTHER)
    for _ in range(args.n_noise):
        audio.append(mixer(np.zeros(int(rng.uniform(0.3, 1.2) * SR), np.int16),
                           np.full(SR, 1000, np.int16)))
        labels.append(OTHER)
    print(f"synthetic and noise: {len(audio)} examples, {time.time() - t0:.0f} s", flush=True)
    return audio, labels, ["synthetic"] * len(audio)


CUT_SNRS = ((40.0, 0.2), (20.0, 0.2), (10.0, 0.3), (5.0, 0.2), (0.0, 0.1))  # (dB, p)
CUT_LEAD_S, CUT_TAIL_S = 0.6, 0.8  # as the benchmark's multi-word clips


def cut_label(s0: float, s1: float, wake_end: float, cmd: tuple[float, float],
              cid: str) -> str | None:
    """The label of an utterance whose speech runs ``s0``-``s1`` (s) in a clip "<wake
    phrase>, <command>" whose wake phrase ends at ``wake_end`` and whose command's speech
    runs ``cmd``: the command where the utterance holds >= 40 % of the command's speech;
    the wake phrase where it holds under 0.1 s of it and ends by the wake phrase's end +
    0.1 s; otherwise None (left out: a piece of either)."""
    ov = max(0.0, min(s1, cmd[1]) - max(s0, cmd[0]))
    if ov >= 0.4 * (cmd[1] - cmd[0]):
        return cid
    if ov < 0.1 and s1 <= wake_end + 0.1:
        return WAKE
    return None


def build_cuts(args) -> tuple[np.ndarray, list[str]]:
    """The command head's inputs as the listener itself cuts them (rule HC, docs/SPEECH.md):
    "<wake phrase>, <phrase>" for every multi-word command, ``--cuts-per-command`` clips each,
    SYNTHETIC training voices in the training part of the real noise at 40/20/10/5/0 dB,
    run through the shipped listener (wake activation). Every utterance on which the
    listener computes the command head gives one example: the pooled encoder output the
    head saw, labelled by time (``cut_label``). Returns (features, labels)."""
    import subprocess
    from .audio import chunks, mix
    from .engines import make_engine
    from .listener import CommandListener
    from .settings import SpeechSettings
    from .train_kws import Mixer, Synth, train_voices
    rng = np.random.default_rng(args.seed + 1)
    mixer = Mixer(Path(args.data) / "noise", rng)
    commands = load_commands(args.commands or None)
    synth, voices = Synth(Path(args.cache)), train_voices()
    wake = commands.wake_phrases[0]
    # rule HJ: with --cuts-joined the listener runs rule J2, so a command after a wake
    # phrase said alone gives the window the head reads there (the wake phrase's start to
    # the follow-up's end), labelled by the follow-up's times
    settings = SpeechSettings(activation="wake",
                              cmd_head_joined_wake=bool(getattr(args, "cuts_joined", False)))
    engine = make_engine(settings, commands)
    seen: dict[float, tuple[float, float, np.ndarray]] = {}  # one per utterance, the last

    def saw(u, pooled) -> None:
        seen[u.speech_start_s] = (u.speech_start_s, u.speech_end_s, np.array(pooled, np.float32))

    def say(ph: str, v: str, sp: int, pi: int) -> tuple[np.ndarray, ...]:
        """The clip, its wake phrase and its command, each said alone, by one voice."""
        return tuple(synth(t, v, sp, pi) for t in (f"{wake}, {ph}", wake, ph))

    ids = getattr(args, "cut_ids", None) or [c for c in sorted(commands.commands)
                                             if c not in SINGLE_WORDS]
    snrs, ps = zip(*CUT_SNRS)
    X: list[np.ndarray] = []
    labels: list[str] = []
    t0, n_clips = time.time(), 0
    for cid in ids:
        phrases = commands.commands[cid].phrases
        for _ in range(args.cuts_per_command):
            ph = phrases[int(rng.integers(len(phrases)))]
            v = voices[int(rng.integers(len(voices)))]
            sp, pi = int(rng.integers(110, 221)), int(rng.integers(15, 86))
            try:
                x, xw, xc = say(ph, v, sp, pi)
            except subprocess.CalledProcessError:  # a variant eSpeak NG lacks: its base voice
                x, xw, xc = say(ph, v.split("+")[0], sp, pi)
            lead, tail = int(CUT_LEAD_S * SR), int(CUT_TAIL_S * SR)
            body = np.concatenate([np.zeros(lead, np.int16), x, np.zeros(tail, np.int16)])
            snr = float(snrs[int(rng.choice(len(snrs), p=ps))])
            stream = mix(body, mixer.piece(len(body)), snr)
            seen.clear()
            # a fresh listener per clip, as the benchmark makes one
            lis = CommandListener(settings, commands=commands, engine=engine, log_size=None)
            lis.on_cmd_head = saw
            for c, t in chunks(stream, 20):
                lis.feed(c, t)
            lis.flush()
            wake_end = CUT_LEAD_S + len(xw) / SR
            cmd = (CUT_LEAD_S + (len(x) - len(xc)) / SR, CUT_LEAD_S + len(x) / SR)
            for s0, s1, f in seen.values():
                lab = cut_label(s0, s1, wake_end, cmd, cid)
                if lab is not None:
                    X.append(f)
                    labels.append(lab)
            n_clips += 1
        print(f"  cuts: {cid} done, {n_clips} clips, {len(labels)} examples, "
              f"{time.time() - t0:.0f} s", flush=True)
    return np.array(X, np.float32), labels


def features(audio: list[np.ndarray], model=None, moonshine: bool = False) -> np.ndarray:
    """Pooled encoder output of each example (speech.whisper_head.pool); with ``moonshine``,
    Moonshine tiny's pooled encoder output after it (speech/moonshine.py)."""
    from .whisper import WhisperTiny
    m = model or WhisperTiny()
    moon = None
    if moonshine:
        from .moonshine import MoonshineEncoder
        moon = MoonshineEncoder()
    t0 = time.time()
    out = np.zeros((len(audio), 2 * m.d + EXTRA_FEATURES["moonshine" if moon else ""]),
                   np.float32)
    for i, x in enumerate(audio):
        f = pool(m.encode(x))
        out[i] = f if moon is None else np.concatenate([f, moon.pooled(x)])
        if (i + 1) % 2000 == 0:
            print(f"  encoded {i + 1}/{len(audio)}, {time.time() - t0:.0f} s", flush=True)
    return out


def fit(X: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3,
        iters: int = 600, lr: float = 0.01, other_weight: float = 1.0, seed: int = 0,
        weights: np.ndarray | None = None) -> dict:
    """Softmax regression on standardised features, full-batch Adam, L2 on the weights;
    "other" (the last class) weighted by ``other_weight``, every other class by 1; each
    example also by ``weights`` when given."""
    rng = np.random.default_rng(seed)
    mu = X.mean(axis=0)
    sd = X.std(axis=0) + 1e-4
    Z = ((X - mu) / sd).astype(np.float64)
    n, d = Z.shape
    W = rng.normal(0, 0.01, (d, n_classes))
    b = np.zeros(n_classes)
    Y = np.eye(n_classes)[y]
    sw = np.where(y == n_classes - 1, other_weight, 1.0)
    if weights is not None:
        sw = sw * weights
    sw = sw / sw.sum()
    mW, vW, mb, vb = (np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b))
    for t in range(1, iters + 1):
        z = Z @ W + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - Y) * sw[:, None]
        gW = Z.T @ g + l2 * W
        gb = g.sum(axis=0)
        for m_, v_, gr, par in ((mW, vW, gW, W), (mb, vb, gb, b)):
            m_ *= 0.9
            m_ += 0.1 * gr
            v_ *= 0.999
            v_ += 0.001 * gr * gr
            par -= lr * (m_ / (1 - 0.9 ** t)) / (np.sqrt(v_ / (1 - 0.999 ** t)) + 1e-8)
    loss = float(-(sw * np.log(p[np.arange(n), y] + 1e-12)).sum())
    return {"mu": mu.astype(np.float32), "sd": sd.astype(np.float32),
            "W": W.astype(np.float32), "b": b.astype(np.float32), "loss": loss}


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(here.parents[1] / "shared" / "data" / "speech"))
    ap.add_argument("--kind", default="words", choices=["words", "commands"],
                    help="words: the single-word head (ten words and other); commands: the "
                         "command head (every command id, the wake phrase and other; "
                         "synthetic voices only)")
    ap.add_argument("--out", default="", help="default: speech/whisper_head_en.npz, "
                    "or speech/whisper_cmd_head_en.npz with --kind commands")
    ap.add_argument("--commands", default="", help="command file (default: the English one)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/usra-assistant/kws_synth"))
    ap.add_argument("--real-speakers", default="all",
                    help="all (default), tune (the benchmark's tune half) or fold:K:F (every "
                         "speaker but fold F of K: benchmarks/kws_speaker_folds.py)")
    ap.add_argument("--real-repeats", type=int, default=6,
                    help="each real clip as recorded and this many - 1 times in noise")
    ap.add_argument("--per-word", type=int, default=None,
                    help="synthetic examples per single word (default 120)")
    ap.add_argument("--per-command", type=int, default=300,
                    help="--kind commands: synthetic examples per multi-word command")
    ap.add_argument("--n-wake", type=int, default=900,
                    help="--kind commands: the wake phrase alone")
    ap.add_argument("--n-other", type=int, default=None,
                    help="synthetic 'other' examples (default 3000; --kind commands 6000)")
    ap.add_argument("--n-noise", type=int, default=None,
                    help="real noise alone, as 'other' (default 400; --kind commands 900)")
    ap.add_argument("--l2", type=float, default=None,
                    help="weight decay (default 1e-3; rule H3 in docs/SPEECH.md chose it for "
                         "--kind commands too)")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--other-weight", type=float, default=1.0)
    ap.add_argument("--features", default="", help="reuse/save the pooled features (.npz)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cuts-per-command", type=int, default=None,
                    help="--kind commands: also this many clips per multi-word command cut "
                         "by the listener itself (rule HC, docs/SPEECH.md; default 36; 0: none)")
    ap.add_argument("--cut-weight", type=float, default=5.0,
                    help="each listener-cut example's weight in the fit (default 5, rule HC)")
    ap.add_argument("--cuts-joined", action="store_true",
                    help="cut with rule J2 on: a command after a wake phrase said alone is "
                         "read from the wake phrase's start (rule HJ, docs/SPEECH.md)")
    ap.add_argument("--cut-features", default="",
                    help="reuse/save the listener-cut examples' features (.npz)")
    ap.add_argument("--real-speed", type=float, default=0.0,
                    help="play the noisy copies of real clips up to this much faster or "
                         "slower (0.15: x0.85-1.15; rule HS, docs/SPEECH.md); 0 = as recorded")
    ap.add_argument("--flite-per-word", type=int, default=0,
                    help="also this many examples of each single word said by Flite's voices "
                         "(Debian flite; rule HF, docs/SPEECH.md); 0 = eSpeak NG only")
    ap.add_argument("--flite-other", type=int, default=0,
                    help="also this many 'other' examples said by Flite's voices (rule HF)")
    ap.add_argument("--moonshine", action="store_true",
                    help="read Moonshine tiny's pooled encoder output after Whisper's "
                         "(speech/moonshine.py; docs/SPEECH.md, \"Moonshine's ears\")")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    cmds = args.kind == "commands"
    # --kind commands: three times stop 38's examples, weight decay 1e-3 (rule H3)
    args.l2 = args.l2 if args.l2 is not None else 1e-3
    args.per_word = args.per_word if args.per_word is not None else 120
    args.n_other = args.n_other if args.n_other is not None else (6000 if cmds else 3000)
    args.n_noise = args.n_noise if args.n_noise is not None else (900 if cmds else 400)
    # --kind commands: and the listener's own cuts, weighted 5 (rule HC2)
    args.cuts_per_command = (args.cuts_per_command if args.cuts_per_command is not None
                             else (36 if cmds else 0))
    if args.kind == "commands":
        classes = sorted(load_commands(args.commands or None).commands) + [WAKE, OTHER]
    else:
        classes = list(SINGLE_WORDS) + [OTHER]
    if not args.out:
        args.out = str(here / ("whisper_cmd_head_en.npz" if args.kind == "commands"
                               else "whisper_head_en.npz"))
    key = {k: v for k, v in vars(args).items()
           if k not in ("out", "l2", "iters", "other_weight", "features", "cache",
                        "real_speakers", "cuts_per_command", "cut_features", "cut_weight",
                        "cuts_joined")}
    if args.kind == "words":  # the single-word head's key as before these options
        key = {k: v for k, v in key.items() if k not in ("kind", "per_command", "n_wake")}
    if not args.moonshine:  # the key as before that option
        key.pop("moonshine")
    if not args.real_speed:  # likewise
        key.pop("real_speed")
    elif args.kind != "words":
        ap.error("--real-speed: only for the single-word head (--kind words)")
    elif not 0.0 < args.real_speed < 1.0:
        ap.error(f"--real-speed must be in [0, 1), got {args.real_speed:g}")
    if not (args.flite_per_word or args.flite_other):  # likewise
        key.pop("flite_per_word")
        key.pop("flite_other")
    elif args.kind != "words":
        ap.error("--flite-per-word / --flite-other: only for the single-word head (--kind words)")
    elif min(args.flite_per_word, args.flite_other) < 0:
        ap.error("--flite-per-word and --flite-other must be >= 0")
    elif shutil.which("flite") is None:
        ap.error("--flite-per-word / --flite-other need Flite (Debian package flite, "
                 "scripts/setup.sh train)")
    fp = Path(args.features) if args.features else None
    if fp and fp.is_file() and json.loads(str(np.load(fp)["key"])) == key:
        z = np.load(fp)
        X, y, src = z["X"], z["y"], [str(s) for s in z["source"]]
        print(f"features reused from {fp}: {len(y)} examples", flush=True)
    else:
        audio, labels, src = (build_commands if args.kind == "commands" else build)(args)
        X = features(audio, moonshine=args.moonshine)
        y = np.array([classes.index(lab) for lab in labels])
        if fp:
            np.savez(fp, X=X, y=y, source=np.array(src), key=json.dumps(key))
    keep = keeper(args.real_speakers)
    synthetic = np.array([s in ("synthetic", "noise") for s in src])
    use = synthetic | np.array([keep(s) for s in src])
    X, y, real = X[use], y[use], ~synthetic[use]
    if cmds and args.cuts_per_command > 0:
        ckey = json.dumps({"seed": args.seed, "cuts_per_command": args.cuts_per_command,
                           "commands": args.commands}
                          | ({"joined": True} if args.cuts_joined else {}))
        cp = Path(args.cut_features) if args.cut_features else None
        z = np.load(cp) if cp and cp.is_file() else None
        if z is not None and str(z["key"]) == ckey:
            Xc, yc = z["X"], z["y"]
            print(f"cut features reused from {cp}: {len(yc)} examples", flush=True)
        else:
            Xc, lc = build_cuts(args)
            yc = np.array([classes.index(lab) for lab in lc])
            if cp:
                np.savez(cp, X=Xc, y=yc, key=ckey)
        X, y = np.concatenate([X, Xc]), np.concatenate([y, yc])
        real = np.concatenate([real, np.zeros(len(yc), bool)])
        weights = np.concatenate([np.ones(len(y) - len(yc)), np.full(len(yc), args.cut_weight)])
    else:
        weights = None
    res = fit(X, y, len(classes), l2=args.l2, iters=args.iters, lr=0.01,
              other_weight=args.other_weight, seed=args.seed, weights=weights)
    pred = np.argmax(((X - res["mu"]) / res["sd"]) @ res["W"] + res["b"], axis=1)
    print(f"fit: loss {res['loss']:.4f}; training accuracy {np.mean(pred == y):.3f} "
          + (f" (real {np.mean(pred[real] == y[real]):.3f})" if real.any() else ""), flush=True)
    out = Path(args.out)
    np.savez(out, classes=np.array(classes), mu=res["mu"], sd=res["sd"], W=res["W"],
             b=res["b"], meta=json.dumps({**key, "real_speakers": args.real_speakers,
                                          "l2": args.l2, "iters": args.iters,
                                          "other_weight": args.other_weight,
                                          "extra_features": "moonshine" if args.moonshine
                                          else "",
                                          "cuts_per_command": args.cuts_per_command,
                                          "cut_weight": args.cut_weight,
                                          **({"cuts_joined": True} if args.cuts_joined
                                             else {}),
                                          "examples": int(len(y)), "real": int(real.sum())}))
    print(f"wrote {out} ({out.stat().st_size // 1024} kB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
