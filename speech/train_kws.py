"""Train the neural command classifier (speech/kws.py) and write speech/kws_en.npz.

    python -m speech.train_kws --data ../shared/data/speech [--out speech/kws_en.npz]

Needs PyTorch (training only: ``bash scripts/setup.sh train``). Deterministic for a seed.

Training data (nothing is copied into the repository):

* SYNTHETIC voices: every phrase of the command file and the wake phrase, spoken by
  eSpeak NG voices at random speeds and pitches, alone or after the wake phrase;
  "none" examples: other words (CMU dictionary, common words), partial commands,
  sound-alikes of the wake phrase and sentences of operating-room talk written here
  (not the benchmark's monologue). The voice variants of the benchmark's test split
  (``benchmarks/speech_bench.py`` VOICES_TEST) are never used here.
* REAL recordings: ``<data>/speech_commands``, every speaker by default
  (``--real-speakers all``: the real-word figures are then speaker-fold
  cross-validation, ``benchmarks/kws_speaker_folds.py --over all``) or only the
  ``tune`` speaker half (``--real-speakers tune``: the benchmark's test half stays
  held out), and the first 60 % of each real noise file (the benchmark draws its
  noise anywhere in the files).

Every example is mixed with real noise at a random SNR (or kept quiet), given a random
level and a random microphone-like band limit, and cut so that the classifier window
ends 0-300 ms after the end of speech (``--tail-max``; the listener averages the
windows ending 40-240 ms after its end of speech).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from .audio import active_power, read_wav
from .synth import cached, espeak
from .commands import SINGLE_WORDS, load_commands
from .kws import (NONE, SR, WAKE, WINDOW, WINDOW_AUDIO, WINDOW_SAMPLES, Embedder,
                  samples_for, window_features)

LOOKAHEAD = WINDOW_AUDIO - WINDOW_SAMPLES  # audio after the window end the mel needs

# eSpeak NG voices for training: the accents, times voice variants NOT in the
# benchmark's test split (f3, m2, m7, f1, Andrea and plain en-gb are test voices).
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m3", "m4", "m5", "m6", "m8", "f2", "f4", "f5", "Alex", "Alicia",
            "Annie", "Andy", "adam", "anika", "belinda", "benjamin", "caleb", "david",
            "ed", "edward", "iven", "john", "linda", "max", "michel", "norbert", "paul",
            "quincy", "rob", "robert", "shelby", "steph", "travis", "victor", "zac",
            "klatt", "klatt2", "klatt3", "grandma", "grandpa", "aunty", "boris", "Denis",
            "Gene", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Tweaky",
            "announcer", "whisper"]

COMMON_WORDS = """the a an and or but if then than that this these those there here what
which who whom whose when where why how all any both each few more most other some such
only own same so too very can will just should now is are was were be been being have has
had do does did doing would could might must shall may one two three four five six seven
eight nine ten zero hundred thousand first second third bed bird cat dog happy house
marvin sheila tree wow learn follow forward backward visual okay alright sure thanks
thank please sorry hello morning evening night today tomorrow yesterday week month year
time day patient doctor nurse surgeon theatre table light monitor screen probe gel drape
glove mask gown trolley bed chair door window wall floor ceiling water coffee tea lunch
dinner blood pressure heart rate oxygen breathing pain arm shoulder leg knee hip chest
back neck hand finger foot nice good bad great fine small big little large long short
high low hot cold warm fast slow early late new old young ready wait look see watch
listen hear think know want need like love help give take make let put keep turn move
bring pass hold open close push pull check call tell ask answer talk speak write read
note spot stock top shop drop lot got not yet yep nope now know snow slow oh off-white
offer often ongoing only lift light bright write ride wide side upper under dawn town
sound round ground gone dough goat ghost stop-watch stopping step shown show-off
hideous hidden height high-rise showing shower shadow fashion nation nervous vessels
muscular bony needles quality scores deeper targets freezer frozen recorder record
recordings injected mark marked next text previous obvious pecan axle femur""".split()

PARTIALS = ["show", "hide", "mark", "start", "quality", "image", "record", "needle",
            "block", "next", "previous", "pecs", "injection", "target", "where is",
            "find", "depth", "score", "show me", "hide and seek", "show time",
            "stop it", "go on then", "turn left here", "all right", "right now",
            "up and down", "on and off", "yes please", "no thanks", "freeze frame"]

# (not "assistants" or "assistance": too close to the wake phrase to call "none")
WAKE_SOUNDALIKES = ["assist", "assisted", "consistent", "insistent", "persistent",
                    "resistant", "distant", "existent", "system", "instant", "sister",
                    "assessment", "as instant", "a sister", "a system", "resisting",
                    "insisted", "assign", "assistive", "this is it", "a distance"]

TALK = """Can you hand me the sterile cover for the probe please
I think the patient is a little anxious this morning
We are running about twenty minutes behind schedule
The anaesthetic chart is on the trolley next to the machine
Let me know when the surgeon is ready to start
Could you dim the lights just a little bit
He has no allergies as far as we know
The last block went really well yesterday
Make sure the monitor is facing the right way
I will need another ten millilitres of local anaesthetic
Can somebody find the ultrasound gel
The theatre list has changed again
She had breakfast at six so she should be fine
Please put the bed down a bit
We can start the infusion after the block
Is the registrar coming in today
That looks like a good view of the plexus
Tell me if you feel any tingling in your fingers
The blood pressure cuff is on the other arm
We need to sign the checklist before we start
Have you seen the new ultrasound machine in theatre four
It was a long night on call
Do you want to do this one or shall I
The patient in bay three is asking for water
Pass me the needle and the extension tubing
I have done about fifty of these blocks now
The car park was full again this morning
Let's wait for the consultant before we begin
Can you hold the arm in that position for a moment
The scrub nurse will be here in five minutes
What time is the next case scheduled
I left my glasses in the coffee room
The oxygen saturation is ninety eight percent
Did anyone order the bloods for the next patient
We had a meeting about the rota last week
Move the screen a little to the left please
You are doing really well just keep still
That was a lovely holiday in the mountains
The printer is out of paper again
Shall we have lunch after this case""".splitlines()


def split_of(name: str) -> str:
    """Speaker-level split of a Speech Commands file name: "tune" or "test" (the
    benchmark tunes on one half and reports on the other)."""
    spk = name.split("_nohash")[0].split("_")[-1]
    return "tune" if int(hashlib.md5(spk.encode()).hexdigest(), 16) % 2 == 0 else "test"


#: Flite's voices (Debian package flite, training only): clustergen voices built from
#: recordings of real people (CMU ARCTIC awb, rms, slt; kal), closer to natural speech
#: than eSpeak NG's formant synthesis. Not used by the benchmark.
FLITE_VOICES = ["flite:awb", "flite:rms", "flite:slt", "flite:kal16"]


def train_voices() -> list[str]:
    return [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]


class Synth:
    """eSpeak NG (or Flite) to 16 kHz int16, trimmed, cached on disk (``speech.synth.cached``:
    written whole before another trainer or benchmark can read it)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def __call__(self, text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
        key = hashlib.sha1(f"{text}|{voice}|{speed}|{pitch}".encode()).hexdigest()[:16]

        def write(tmp: Path) -> None:
            if voice.startswith("flite:"):
                wav = tmp.with_suffix(".wav")
                # speed 110-220 wpm -> duration stretch; pitch 15-85 -> mean F0 85-200 Hz
                subprocess.run(["flite", "-voice", voice[6:], "--setf",
                                f"duration_stretch={160 / speed:.3f}", "--setf",
                                f"int_f0_target_mean={85 + (pitch - 15) * 1.65:.0f}",
                                "-t", text, "-o", str(wav)], check=True, capture_output=True)
                x, _ = read_wav(wav)
                wav.unlink()
            else:
                x = espeak(text, voice, speed, pitch)
            np.save(tmp, trim(x))

        return cached(self.cache / f"{key}.npy", np.load, write)


def trim(x: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading/trailing silence (10 ms frames more than floor_db below the peak)."""
    if len(x) < 160:
        return x[:0]
    a, b = speech_bounds(x, floor_db)
    return x[a:b]


def speech_bounds(x: np.ndarray, floor_db: float = 25.0) -> tuple[int, int]:
    """First and last sample of speech in a real clip (frames within floor_db of the peak)."""
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    e = 10 * np.log10((f * f).mean(axis=1) + 1)
    idx = np.nonzero(e > e.max() - floor_db)[0]
    if len(idx) == 0:
        return 0, len(x)
    return idx[0] * 160, (idx[-1] + 1) * 160


class Mixer:
    """Real noise (training part of each file), random SNR, level and band limit."""

    def __init__(self, noise_dir: Path, rng: np.random.Generator, part: float = 0.6,
                 reverb: float = 0.0) -> None:
        self.p_reverb = reverb
        self.noises = []
        for f in sorted(glob.glob(str(noise_dir / "*.wav"))):
            x, _ = read_wav(f)
            self.noises.append(x[: int(len(x) * part)].astype(np.float64))
        if not self.noises:
            raise SystemExit(f"no noise WAVs in {noise_dir}")
        self.rng = rng

    def piece(self, n: int) -> np.ndarray:
        src = self.noises[int(self.rng.integers(len(self.noises)))]
        off = int(self.rng.integers(0, max(1, len(src) - n)))
        p = src[off: off + n]
        return np.pad(p, (0, n - len(p)), mode="wrap") if len(p) < n else p

    def reverb(self, y: np.ndarray) -> np.ndarray:
        """A room: exponentially decaying noise impulse response (RT60 0.15-0.7 s)."""
        from scipy.signal import fftconvolve
        rng = self.rng
        rt60 = float(rng.uniform(0.15, 0.7))
        n = int(rt60 * SR)
        t = np.arange(n) / SR
        h = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60)
        h[0] = 0.0
        h *= float(rng.uniform(0.2, 0.8)) / (np.sqrt((h ** 2).sum()) + 1e-9)
        h[0] = 1.0
        return fftconvolve(y, h)[: len(y)]

    def __call__(self, x: np.ndarray, speech_ref: np.ndarray | None,
                 room: bool = True) -> np.ndarray:
        rng = self.rng
        y = x.astype(np.float64)
        if room and self.p_reverb > 0 and rng.random() < self.p_reverb:
            y = self.reverb(y)
        r = rng.random()
        if r < 0.15:
            snr = 40.0
        elif r < 0.3:
            snr = 20.0
        else:
            snr = float(rng.uniform(-3, 20))
        nz = self.piece(len(y))
        ps = active_power(speech_ref) if speech_ref is not None and len(speech_ref) else 1e6
        g = np.sqrt(ps / ((nz ** 2).mean() + 1e-9) / 10 ** (snr / 10))
        y = y + g * nz + rng.normal(0, 2.0, len(y))  # a microphone is never digital zero
        if rng.random() < 0.4:  # band limit like a cheap microphone / phone
            from scipy.signal import butter, sosfilt
            lo = float(rng.uniform(80, 300))
            hi = float(rng.uniform(3000, 7500))
            sos = butter(2, [lo, hi], btype="band", fs=SR, output="sos")
            y = sosfilt(sos, y)
        peak = np.abs(y).max() + 1e-9
        level = 10 ** (rng.uniform(-30, -1) / 20) * 32767 / peak
        return np.clip(np.round(y * level), -32768, 32767).astype(np.int16)


def place(parts: list[np.ndarray], gap: tuple[float, float], rng, tail: tuple[float, float]
          ) -> tuple[np.ndarray, int]:
    """Concatenate speech parts with random gaps; left-pad to the window; return the
    window audio (ending ``tail`` s after the last part) and the speech length."""
    seq: list[np.ndarray] = []
    for i, p in enumerate(parts):
        if i:
            seq.append(np.zeros(int(rng.uniform(*gap) * SR), np.int16))
        seq.append(p)
    body = np.concatenate(seq) if seq else np.zeros(0, np.int16)
    t = np.zeros(int(rng.uniform(*tail) * SR), np.int16)
    x = np.concatenate([body, t])[-WINDOW_SAMPLES:]
    if len(x) < WINDOW_SAMPLES:
        x = np.concatenate([np.zeros(WINDOW_SAMPLES - len(x), np.int16), x])
    return np.concatenate([x, np.zeros(LOOKAHEAD, np.int16)]), len(body)


def build(args) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    rng = np.random.default_rng(args.seed)
    commands = load_commands(args.commands or None)
    classes = [NONE, WAKE] + sorted(commands.commands)
    cidx = {c: i for i, c in enumerate(classes)}
    wake = commands.wake_phrases[0]
    synth = Synth(Path(args.cache))
    voices = train_voices()
    mixer = Mixer(Path(args.data) / "noise", rng, reverb=args.reverb)

    use_flite = args.flite > 0 and shutil.which("flite") is not None
    if args.flite > 0 and not use_flite:
        print("flite not installed (Debian package flite): eSpeak NG voices only", flush=True)

    def rvoice():
        if use_flite and rng.random() < args.flite:
            v = FLITE_VOICES[int(rng.integers(len(FLITE_VOICES)))]
        else:
            v = voices[int(rng.integers(len(voices)))]
        return v, int(rng.integers(110, 221)), int(rng.integers(15, 86))

    def say(text):
        v, s, p = rvoice()
        try:
            return synth(text, v, s, p)
        except subprocess.CalledProcessError:  # a variant an accent lacks: default voice
            return synth(text, v.split("+")[0], s, p)

    # words for "none": CMU dictionary words (not command or wake words) + common words
    from .engines import cmudict_words
    cmd_words = set(commands.words) | set(wake.split())
    cmu = sorted(w for w in cmudict_words() if w.isalpha() and 2 <= len(w) <= 12
                 and w not in cmd_words)
    other = [w for w in COMMON_WORDS if w not in cmd_words]

    X_audio: list[np.ndarray] = []
    y: list[int] = []
    refs: list[np.ndarray] = []
    # the classifier's windows end this long after the end of speech (the listener
    # averages those ending 40-240 ms after the endpointer's end, which lags in noise)
    tail = (0.0, args.tail_max)

    def add(parts, label, ref=None, gap=(0.05, 0.5), tail_=tail):
        x, _ = place(parts, gap, rng, tail_)
        X_audio.append(mixer(x, ref if ref is not None else parts[-1]))
        y.append(cidx[label])

    def context():
        """What may precede in the window: nothing, or other speech after a pause."""
        r = rng.random()
        if r < 0.6:
            return []
        if r < 0.8:
            return [say(" ".join(rng.choice(other, int(rng.integers(2, 6)))))]
        return [say(TALK[int(rng.integers(len(TALK)))])]

    t0 = time.time()
    n_per = args.per_phrase
    for cid, cmd in sorted(commands.commands.items()):
        for i in range(n_per * (2 if cid in SINGLE_WORDS else 1)):
            ph = cmd.phrases[i % len(cmd.phrases)]
            s = say(ph)
            if rng.random() < 0.5:
                add(context() + [say(wake), s], cid, ref=s, gap=(0.05, 0.6))
            else:
                add(context() + [s], cid, ref=s, gap=(0.3, 1.0))
    print(f"commands: {len(y)} examples, {time.time() - t0:.0f} s", flush=True)
    phrases = [p for c in commands.commands.values() for p in c.phrases]
    for i in range(args.per_phrase * 8):
        w = say(wake)
        if rng.random() < 0.5:  # the window ends at the start of the command that follows
            nxt = say(phrases[int(rng.integers(len(phrases)))])
            nxt = nxt[: int(rng.uniform(0.0, 0.3) * SR)]
            add(context() + [w, nxt], WAKE, ref=w, gap=(0.05, 0.4), tail_=(0.0, 0.02))
        else:
            add(context() + [w], WAKE, ref=w, gap=(0.3, 1.0))
    # none: other words, partial commands, wake sound-alikes, talk, noise
    for i in range(args.n_none):
        r = rng.random()
        if r < 0.35:
            parts = [say(cmu[int(rng.integers(len(cmu)))])]
        elif r < 0.5:
            parts = [say(other[int(rng.integers(len(other)))])]
        elif r < 0.62:
            parts = [say(PARTIALS[int(rng.integers(len(PARTIALS)))])]
        elif r < 0.72:
            parts = [say(WAKE_SOUNDALIKES[int(rng.integers(len(WAKE_SOUNDALIKES)))])]
        elif r < 0.9:
            parts = [say(TALK[int(rng.integers(len(TALK)))])]
        else:
            parts = [say(" ".join(rng.choice(other, int(rng.integers(2, 8)))))]
        if r >= 0.72 and rng.random() < 0.5:  # the window ends in the middle of the talk
            x = parts[0]
            cut = int(rng.integers(min(len(x), SR // 2), len(x) + 1))
            parts = [x[:cut]]
        add(context() + parts, NONE, ref=parts[-1], gap=(0.3, 1.0))
    for i in range(args.n_none // 6):  # noise alone
        x = np.zeros(WINDOW_AUDIO, np.int16)
        X_audio.append(mixer(x, np.full(SR, 1000, np.int16)))
        y.append(cidx[NONE])
    print(f"synthetic: {len(y)} examples, {time.time() - t0:.0f} s", flush=True)

    aud, lab = real_part(args)
    X_audio += aud
    y += [cidx[w if w in cidx else NONE] for w in lab]
    info = {"n_examples": len(y), "n_real": len(lab), "real": real_key(args),
            "voices": len(voices) + (len(FLITE_VOICES) if use_flite else 0)}
    return np.stack(X_audio), np.array(y), classes, info


def real_key(args) -> dict:
    """What the real examples depend on (a feature cache with other real examples gets
    them rebuilt, the synthetic part reused)."""
    return {"speakers": args.real_speakers, "repeats": args.real_repeats,
            "speed": args.real_speed, "tail_max": args.tail_max, "seed": args.seed}


def real_part(args) -> tuple[list[np.ndarray], list[str]]:
    """The REAL Speech Commands windows (own random stream, so they can be rebuilt on a
    cached synthetic part): the tune speaker half, or every speaker with
    ``--real-speakers all``."""
    rng = np.random.default_rng(args.seed + 1000)
    mixer = Mixer(Path(args.data) / "noise", rng)
    keep = (lambda n: True) if args.real_speakers == "all" else \
        (lambda n: split_of(n) == "tune")
    aud, lab, _ = real_examples(Path(args.data), rng, mixer, args.real_repeats,
                                (0.0, args.tail_max), args.real_speed, keep)
    print(f"real: {len(lab)} examples ({args.real_repeats} per clip, "
          f"{args.real_speakers} speakers)", flush=True)
    return aud, lab


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch and formants move with it, as with a
    shorter or longer vocal tract: a cheap new speaker; Ko et al. 2015)."""
    from scipy.signal import resample_poly
    down = int(round(100 * factor))
    y = resample_poly(x.astype(np.float64), 100, down)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def real_examples(data: Path, rng, mixer: "Mixer", repeats: int, tail: tuple[float, float],
                  max_speed: float = 0.0, keep=lambda name: split_of(name) == "tune"
                  ) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Windows of the real Speech Commands clips whose file name ``keep`` accepts (the
    tune speaker half): each clip as recorded and ``repeats - 1`` times mixed with noise,
    those played up to ``max_speed`` faster or slower when it is not 0. Returns the
    windows, their labels (the folder names: ``_unknown_`` and ``_silence_`` for none)
    and the file name each came from."""
    audio: list[np.ndarray] = []
    labels: list[str] = []
    names: list[str] = []
    for w in list(SINGLE_WORDS) + ["_unknown_", "_silence_"]:
        for f in sorted(glob.glob(str(data / "speech_commands" / w / "*.wav"))):
            if not keep(os.path.basename(f)):
                continue
            x0, _ = read_wav(f)
            for k in range(repeats):
                x = x0
                if k and max_speed > 0 and w != "_silence_":
                    x = speed(x0, float(rng.uniform(1 - max_speed, 1 + max_speed)))
                a, b = speech_bounds(x)
                if w == "_silence_":
                    clip = x
                    ref = np.full(SR, 1000, np.int16)
                else:
                    clip, ref = x[: b], x[a:b]
                pre = np.tile(x[:1600], 20)[: 2 * SR]
                tail_n = int(rng.uniform(*tail) * SR)
                post = np.tile(x[-1600:], 2)[:tail_n] if b + tail_n > len(x) else x[b: b + tail_n]
                if w == "_silence_":
                    post = x[:0]
                win = np.concatenate([pre, clip, post])[-WINDOW_SAMPLES:]
                more = x[b + len(post): b + len(post) + LOOKAHEAD] if w != "_silence_" else x[:0]
                if len(more) < LOOKAHEAD:
                    more = np.concatenate([more, np.tile(x[-1600:], 2)[: LOOKAHEAD - len(more)]])
                win = np.concatenate([win, more])
                if k == 0:  # as recorded
                    audio.append(win.astype(np.int16))
                else:  # a real room already: no added reverberation
                    audio.append(mixer(win, ref, room=False))
                labels.append(w)
                names.append(os.path.basename(f))
    return audio, labels, names


def featurise(emb: Embedder, audio: np.ndarray) -> np.ndarray:
    out = np.zeros((len(audio), WINDOW, 96), np.float32)
    t0 = time.time()
    for i, x in enumerate(audio):
        out[i] = window_features(emb, x)
        if i % 3000 == 0:
            print(f"  features {i}/{len(audio)} {time.time() - t0:.0f} s", flush=True)
    return out


def fit(X: np.ndarray, y: np.ndarray, n_classes: int, args) -> dict:
    import torch
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    Xf = X.reshape(len(X), -1)
    mean = Xf.mean(axis=0)
    std = Xf.std(axis=0) + 1e-3
    Xt = torch.tensor((Xf - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(y))
    nval = len(y) // 10
    va, tr = idx[:nval], idx[nval:]
    h = args.hidden
    arch = getattr(args, "arch", "mlp")
    if arch == "tcn":
        net = _Tcn(X.shape[1], X.shape[2], h, n_classes)
    elif arch == "mlp":
        net = torch.nn.Sequential(
            torch.nn.Dropout(0.1), torch.nn.Linear(Xt.shape[1], h), torch.nn.ReLU(),
            torch.nn.Dropout(0.3), torch.nn.Linear(h, h), torch.nn.ReLU(),
            torch.nn.Dropout(0.3), torch.nn.Linear(h, n_classes))
    else:
        raise ValueError(f"arch must be 'mlp' or 'tcn', got {arch!r}")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    # "none" outnumbers each command many times over: weight it down so the network
    # does not learn "when unsure, none" (the decision thresholds handle rejection)
    cw = torch.ones(n_classes)
    cw[0] = args.none_weight
    lossf = torch.nn.CrossEntropyLoss(weight=cw, label_smoothing=0.05)
    steps = args.epochs * (len(tr) // args.batch + 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for ep in range(args.epochs):
        net.train()
        perm = rng.permutation(tr)
        for i in range(0, len(perm), args.batch):
            b = perm[i: i + args.batch]
            opt.zero_grad()
            loss = lossf(net(Xt[b]), yt[b])
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            pv = net(Xt[va]).argmax(1).numpy()
        acc = float((pv == y[va]).mean())
        if ep % 5 == 0 or ep == args.epochs - 1:
            print(f"epoch {ep}: loss {loss.item():.3f} val acc {acc:.3f}", flush=True)
    arrs = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    if arch == "tcn":
        arrs.update(net.arrays())
    else:
        lin = [m for m in net if isinstance(m, torch.nn.Linear)]
        arrs["n_layers"] = np.array(len(lin))
        for i, m in enumerate(lin):
            arrs[f"w{i}"] = m.weight.detach().numpy().T.astype(np.float32)
            arrs[f"b{i}"] = m.bias.detach().numpy().astype(np.float32)
    return {"arrays": arrs, "val_acc": acc}


def _Tcn(window: int, dim: int, hidden: int, n_classes: int):
    """Two valid 1-D convolutions (kernel 3) along the embedding sequence, then the max and
    the mean over time, then a linear layer: the same evidence scores the same wherever
    it falls in the window. ``arrays()`` gives speech/kws.py's numpy form (im2col)."""
    import torch

    class Tcn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = torch.nn.Conv1d(dim, hidden, 3)
            self.c1 = torch.nn.Conv1d(hidden, hidden, 3)
            self.out = torch.nn.Linear(2 * hidden, n_classes)
            self.d_in, self.d = torch.nn.Dropout(0.1), torch.nn.Dropout(0.3)

        def forward(self, x):
            x = x.view(len(x), window, dim).transpose(1, 2)
            h = torch.relu(self.c0(self.d_in(x)))
            h = torch.relu(self.c1(self.d(h)))
            h = torch.cat([h.amax(2), h.mean(2)], 1)
            return self.out(self.d(h))

        def arrays(self) -> dict:
            def conv(c):  # (out, in, k) -> (k * in, out): rows ordered time step, channel
                w = c.weight.detach().numpy()
                return w.transpose(2, 1, 0).reshape(-1, w.shape[0]).astype(np.float32)
            return {"arch": np.array("tcn"),
                    "cw0": conv(self.c0), "cb0": self.c0.bias.detach().numpy().astype(np.float32),
                    "cw1": conv(self.c1), "cb1": self.c1.bias.detach().numpy().astype(np.float32),
                    "w0": self.out.weight.detach().numpy().T.astype(np.float32),
                    "b0": self.out.bias.detach().numpy().astype(np.float32)}

    return Tcn()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--data", default=str(here.parents[1] / "shared" / "data" / "speech"))
    ap.add_argument("--out", default=str(here / "kws_en.npz"))
    ap.add_argument("--commands", default="", help="command file (default: the English one)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/usra-assistant/kws_synth"))
    ap.add_argument("--per-phrase", type=int, default=60,
                    help="synthetic examples per command (single words get twice as many)")
    ap.add_argument("--n-none", type=int, default=9000)
    ap.add_argument("--real-repeats", type=int, default=12)
    ap.add_argument("--tail-max", type=float, default=0.3,
                    help="training windows end 0 to this many seconds after the speech")
    ap.add_argument("--real-speakers", choices=["tune", "all"], default="all",
                    help="real Speech Commands speakers trained on: every one (default; "
                         "the real-word figures are then speaker-fold cross-validation, "
                         "benchmarks/kws_speaker_folds.py --over all) or the tune half "
                         "only (the test half stays held out)")
    ap.add_argument("--real-speed", type=float, default=0.0,
                    help="play the noisy copies of real clips up to this much faster or "
                         "slower (0.15: x0.85-1.15); 0 = as recorded")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--arch", choices=["mlp", "tcn"], default="mlp",
                    help="mlp: two dense layers over the whole window; tcn: two 1-D "
                         "convolutions along time, max and mean over time")
    ap.add_argument("--none-weight", type=float, default=0.25)
    # Tried, not shipped (docs/SPEECH.md): --flite 0.3 --reverb 0.5 gave more real single
    # words right on the tune split but more other words accepted and fewer synthetic
    # multi-word commands. The defaults reproduce the shipped classifier.
    ap.add_argument("--flite", type=float, default=0.0,
                    help="share of synthetic examples spoken by Flite's voices (0: eSpeak only)")
    ap.add_argument("--reverb", type=float, default=0.0,
                    help="share of synthetic examples given a simulated room")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", default="", help="reuse/save features (.npz) here")
    args = ap.parse_args(argv)

    t0 = time.time()
    if args.features and Path(args.features).exists():
        z = np.load(args.features, allow_pickle=False)
        X, y, classes = z["X"], z["y"], list(z["classes"])
        info = json.loads(str(z["info"]))
        if info.get("real") != real_key(args):
            # same synthetic part, other real examples: rebuild those only
            n = info["n_real"]
            aud, lab = real_part(args)
            cidx = {c: i for i, c in enumerate(classes)}
            X = np.concatenate([X[: len(X) - n], featurise(Embedder(threads=args.threads),
                                                           np.stack(aud))])
            y = np.concatenate([y[: len(y) - n], [cidx[w if w in cidx else NONE] for w in lab]])
            info = {**info, "n_examples": len(y), "n_real": len(lab), "real": real_key(args)}
    else:
        audio, y, classes, info = build(args)
        emb = Embedder(threads=args.threads)
        X = featurise(emb, audio)
        if args.features:
            np.savez(args.features, X=X, y=y, classes=np.array(classes),
                     info=json.dumps(info))
    print(f"{len(y)} examples, {len(classes)} classes, {time.time() - t0:.0f} s", flush=True)
    res = fit(X, y, len(classes), args)
    out = Path(args.out)
    np.savez(out, **res["arrays"])
    commands = load_commands(args.commands or None)
    meta = {
        "model": "command classifier over speech embeddings (speech/kws.py)",
        "not_for_clinical_use": True,
        "classes": classes,
        "window": WINDOW,
        "window_samples": WINDOW_SAMPLES,
        "embedding_samples": samples_for(1),
        "feature_models": "openwakeword==0.5.1 melspectrogram.onnx + embedding_model.onnx "
                          "(Google speech_embedding, Apache-2.0)",
        "commands_file": str(commands.path),
        "commands_sha256": hashlib.sha256(Path(commands.path).read_bytes()).hexdigest(),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "training": {**info, "args": {k: v for k, v in vars(args).items()
                                      if k not in ("data", "cache", "features", "out")},
                     "synthetic_voices": "eSpeak NG, accents x variants not in the "
                                         "benchmark's test split",
                     "real_data": f"Speech Commands v0.02 (CC-BY 4.0, Pete Warden), "
                                  f"{'every speaker' if args.real_speakers == 'all' else 'tune speaker half'}; "
                                  "background noise of the same set, first 60% of each file",
                     "val_acc_synthetic_mix": round(res["val_acc"], 4),
                     "seconds": round(time.time() - t0)},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB) and its manifest", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
