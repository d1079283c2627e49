"""Speech command benchmark: accuracy, false activations, latency and speed.

Data (nothing is copied into the repository):
* REAL human recordings: ``<data>/speech_commands/WORD/*.wav`` (Speech Commands v0.02
  test clips: 10 command words, ``_unknown_`` other words, ``_silence_``), clean and
  mixed with the REAL noise of ``<data>/noise`` at 20/10/5/0 dB SNR.
* SYNTHETIC voices: multi-word commands ("assistant, show fascia") and a long
  non-command monologue spoken by eSpeak NG voices (voices, speeds, pitches), mixed
  with the real noise. Figures from these are labelled "synthetic".

Splits: clips and voices are split in two halves; thresholds are tuned on ``tune`` and
reported on ``test`` (``--split``).

    nice -n 5 python benchmarks/speech_bench.py --part all --split test
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.audio import (SAMPLE_RATE_HZ, cut_at_edge, mix,  # noqa: E402
                          noise_piece, read_wav, speech_end_s, strip_padding, to_internal)
from speech.commands import SINGLE_WORDS, load_commands  # noqa: E402
from speech.listen_eval import LEAD_S, WAKE_GAP_S, streamed  # noqa: E402
from speech.engines import cmudict_words, make_engine  # noqa: E402
from speech.listen_cli import add_pace_pauses_option  # noqa: E402
from speech.listener import CommandListener, feed_live  # noqa: E402
from speech.settings import SpeechSettings  # noqa: E402
from speech.synth import cached, espeak  # noqa: E402
from speech.train_kws import split_of  # noqa: E402

SR = SAMPLE_RATE_HZ
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"

# eSpeak NG voices (language + variant). Two disjoint halves: tune / test.
VOICES_TUNE = ["en-us", "en-gb+f3", "en-gb-scotland+m3", "en-us-nyc+f2", "en-029+m5",
               "en-gb-x-rp+f4"]
VOICES_TEST = ["en-us+f3", "en-gb", "en-gb-x-gbclan+m2", "en-us+m7", "en-gb-x-gbcwmd+f1",
               "en-us+Andrea"]

# Ordinary talk with no command in it (no wake word; single command words only inside
# longer sentences). Written for this benchmark.
MONOLOGUE = """\
Good morning everyone, let's get started with the list for today.
The first patient is a sixty two year old man for a shoulder arthroscopy.
He had a small heart attack about five years ago and takes aspirin every day.
Could somebody check whether the consent form has been signed.
I think the surgeon wants to start a little earlier than planned.
We should put the monitor on the other side of the bed.
Can you pass me the gel and a couple of sterile covers please.
The blood pressure is a bit high, probably because he is nervous.
Let's give him a small dose of midazolam before we begin.
Do you want the lights a bit lower so you can see the screen better.
My daughter started school last week and she loves it already.
We went to the coast at the weekend and the weather was lovely.
The traffic on the way in this morning was absolutely terrible.
Has anyone seen the blue trolley, it was here a minute ago.
The coffee machine on the second floor is broken again.
I need to leave at five today because of a meeting at the hospital.
The next case is a knee replacement, probably a femoral approach for that one.
Please write down the time when the surgeon makes the first cut.
It looks like the probe cable is a bit tangled behind the machine.
Could you move the table up a little, it's too low for me.
That's fine, we can keep going while the scrub nurse gets ready.
Did you read the new guideline about fasting before surgery.
I'm not sure the printer in the office is working today.
We'll see the results of the audit at the department meeting next month.
The patient says he feels a little cold, can we get another blanket.
There is a training session on ultrasound for the new residents on Thursday.
She turned left at the end of the corridor and went down the stairs.
It was the right decision to wait for the blood results.
The kettle is on if anybody wants a cup of tea.
Let me know when the anaesthetic machine check is done.
I'll go and find the registrar, he was in theatre three.
We usually stop the blood thinners two days before this operation.
The screen is quite bright, turn it down a bit if you can.
Thank you, that was really helpful.
Okay, let's see what the next one looks like.
Pass me that syringe, the ten millilitre one.
How long has he been waiting in the anaesthetic room.
He told me he had never had an operation before.
The recovery nurse will call us when the bed is ready.
Alright, we are almost done here.
"""

COMMAND_WORDS = list(SINGLE_WORDS)
QUIET_SNR_DB = 40.0


# ----------------------------------------------------------------------------- audio helpers

def synth(text: str, voice: str, speed: int, pitch: int, cache: Path) -> np.ndarray:
    """eSpeak NG's 16 kHz audio of ``text``, cached in ``cache`` by text, voice, speed and
    pitch (``speech.synth.cached``: written whole before any run can read it)."""
    key = hashlib.sha1(f"{text}|{voice}|{speed}|{pitch}".encode()).hexdigest()[:16]
    return cached(cache / f"{key}.wav", lambda p: read_wav(p)[0],
                  lambda tmp: espeak(text, voice, speed, pitch, out_wav=tmp))


# ----------------------------------------------------------------------------- running

class Runner:
    def __init__(self, settings: SpeechSettings, chunk_ms: int,
                 pace_pauses: bool = False) -> None:
        self.settings = settings
        self.chunk_ms = chunk_ms
        self.pace_pauses = pace_pauses  # speech.listener.feed_live
        known = cmudict_words() if settings.engine == "pocketsphinx" else None
        self.commands = load_commands(settings.commands_file or None, known)
        self.engine = make_engine(settings, self.commands)
        self.audio_s = 0.0
        self.wall_s = 0.0
        self.end_ms: list[float] = []  # engine time after the end of speech, per utterance
        self.dump: list[dict] = []

    def run(self, x: np.ndarray, activation: str, tag: dict | None = None):
        """Feed a stream as a live one; returns [(Heard, emitted_at_s, 0.0)]: the time the
        command came out on the stream's clock, as a live listener would give it. Each
        chunk arrives when its last sample has been spoken and is processed once the
        chunks before it are done: work that takes longer than the audio it covers (a
        decode at a pause) delays what follows, and that delay counts. With pace_pauses,
        the hangover after a pause goes in real time while Whisper's check runs (feed_live)."""
        s = replace(self.settings, activation=activation)
        lis = CommandListener(s, commands=self.commands, engine=self.engine, log_size=None)
        t0, stats = time.perf_counter(), {}
        out = [(h, emitted, 0.0)
               for h, emitted in feed_live(lis, x, self.chunk_ms, self.pace_pauses, stats)]
        self.wall_s += time.perf_counter() - t0 - stats.get("slept_s", 0.0)
        self.audio_s += len(x) / SR
        self.end_ms += [r.decode_ms for r in lis.log if r.decode_ms > 0]
        self.last_unclear = sum(r.unclear for r in lis.log)  # "say again" prompts
        # commands acted on through PocketSphinx's second opinion (speech/decision.py)
        self.last_second = [r.decision.command for r in lis.log if r.decision.kind == "accept"
                            and r.decision.reason.startswith("second opinion")]
        self.last_pairs = []  # (dump row, utterance log) of this stream's utterances
        if tag is not None:
            if not lis.log:  # nothing heard at all: the item still counts (as missed)
                self.dump.append({**tag, "kind": "nothing", "command": None, "heard": "",
                                  "lr": None, "post": None, "unc": None, "wake": False})
            for r in lis.log:
                d = r.decision
                self.dump.append({**tag, **dump_row(r), "lr": d.lr_per_frame,
                                  "gpf": d.grammar_per_frame, "unc": d.uncovered_ms})
                self.last_pairs.append((self.dump[-1], r))
        return out


def dump_row(u) -> dict:
    """One utterance's decision (a listener ``UtteranceLog``), as a --dump line."""
    d = u.decision
    return {"kind": d.kind, "command": d.command, "heard": d.heard, "reason": d.reason,
            "post": d.posterior, "wake": d.wake, "dur": round(u.end_s - u.start_s, 3),
            "conf": d.confidence, "wp": d.wake_prob, "joined": d.joined,
            "start": round(u.start_s, 3), "unclear": u.unclear, "whisper": u.whisper,
            "vp": u.voice_prob}


def pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:5.1f}% ({a}/{b})" if b else "n/a"


def kws_real_speakers(meta: dict) -> str:
    """Which real speakers the kws classifier (its manifest ``meta``) heard in training:
    "tune" or "all" (a manifest from before the option: "tune")."""
    real = meta.get("training", {}).get("real", {})
    return real.get("speakers", "tune") if isinstance(real, dict) else "tune"


def latency_summary(lat: dict[str, list[float]]) -> dict:
    """p50 / p95 / n of end-of-speech-to-command times per condition, and of the quiet
    (or clean) and 20 dB ones pooled (the goal's condition)."""
    out = {k: {"p50": round(float(np.percentile(v, 50)), 1),
               "p95": round(float(np.percentile(v, 95)), 1), "n": len(v)}
           for k, v in lat.items() if v}
    both = [t for k, v in lat.items() if k in ("quiet", "clean", "20 dB") for t in v]
    if both:
        out["quiet+20 dB"] = {"p50": round(float(np.percentile(both, 50)), 1),
                              "p95": round(float(np.percentile(both, 95)), 1), "n": len(both)}
    return out


def wake_prefix_for(k: int, voices: list[str], cache: Path) -> np.ndarray:
    """The wake phrase said before the ``k``-th real clip when real words are scored in
    wake activation: eSpeak NG's "assistant" in ``voices[k % len]`` (SYNTHETIC), speed and
    pitch varied with k as in multi_item, without the digital silence eSpeak writes around
    it (up to 0.4 s: it would lengthen the pause after it; listen-eval's load_wake alike)."""
    return strip_padding(synth("assistant", voices[k % len(voices)], 140 + 10 * (k % 6),
                               30 + 8 * (k % 5), cache))


def bench_words(r: Runner, data: Path, split: str, snrs, noises,
                lat_all: dict[str, list[float]] | None = None,
                wake_voices: list[str] | None = None, cache: Path | None = None,
                wake_gap_s: float = WAKE_GAP_S) -> dict:
    """REAL human single words (--activation always). The time from the end of speech
    to the command of each word acted on as said (the end estimated from the clean
    recording's energy, ``speech_end_s``, so approximate) is summarised in the result's
    ``latency_ms_end_of_speech_to_command`` and added to ``lat_all`` (per condition), to
    pool over several calls. With ``wake_voices`` the words are scored in wake activation
    (the default) instead: each clip after a SYNTHETIC wake phrase (wake_prefix_for, cached
    in ``cache``; speech.listen_eval.with_wake, ``wake_gap_s`` of room tone between), the SNR
    against the word."""
    res = {}
    lat_here: dict[str, list[float]] = {}
    files = {w: sorted(glob.glob(str(data / "speech_commands" / w / "*.wav")))
             for w in COMMAND_WORDS + ["_unknown_", "_silence_"]}
    for snr in [None] + list(snrs):
        ok = n = wrong = fa_unk = n_unk = fa_sil = n_sil = 0
        ok_cut = n_cut = 0  # words the recording cut (speech.audio.cut_at_edge)
        lat = lat_here.setdefault("clean" if snr is None else f"{snr:g} dB", [])
        for w, fs in files.items():
            for k, f in enumerate(fs):
                if split != "all" and split_of(os.path.basename(f)) != split:
                    continue
                x = strip_padding(read_wav(f)[0])  # no file padding: as a microphone gives it
                seed = k * 31 + len(w)
                # "assistant, <word>" with --words-wake (listen-eval --wake-prefix); its room
                # tone around it, or the noise at the SNR (as listen-eval streams it)
                wake = wake_prefix_for(seed, wake_voices, cache) if wake_voices else None
                stream, start_s = streamed(x, w, noises, snr, seed, wake, wake_gap_s)
                got = r.run(stream, "wake" if wake_voices else "always",
                            {"part": "words", "snr": snr, "word": w,
                             "file": os.path.basename(f)})
                cmds = [h.command for h, _, _ in got]
                if w == "_unknown_":
                    n_unk += 1
                    fa_unk += bool(cmds)
                elif w == "_silence_":
                    n_sil += 1
                    fa_sil += bool(cmds)
                else:
                    n += 1
                    ok += cmds == [w]
                    if cut_at_edge(x):
                        n_cut += 1
                        ok_cut += cmds == [w]
                    wrong += bool(cmds) and cmds != [w]  # acted on, but not as said
                    if cmds == [w]:
                        lat.append(1000 * (got[0][1] - LEAD_S - start_s - speech_end_s(x))
                                   + got[0][2])
                        acc = [row for row, _ in r.last_pairs if row["kind"] == "accept"]
                        if acc:  # --dump: each word's time, to pool over runs
                            acc[-1]["lat_ms"] = round(lat[-1], 1)
        key = "clean" if snr is None else f"{snr} dB"
        res[key] = {"commands_right": pct(ok, n), "wrong_command": pct(wrong, n),
                    "unknown_accepted": pct(fa_unk, n_unk),
                    "silence_accepted": pct(fa_sil, n_sil),
                    "right_of_whole_words": pct(ok - ok_cut, n - n_cut),
                    "right_of_words_the_recording_cut": pct(ok_cut, n_cut)}
    res["latency_ms_end_of_speech_to_command"] = latency_summary(lat_here)
    if lat_all is not None:
        for k, v in lat_here.items():
            lat_all.setdefault(k, []).extend(v)
    return res


def bench_noise(r: Runner, data: Path) -> dict:
    """REAL noise files alone, as long streams, always-listening."""
    total_s, fa = 0.0, 0
    for f in sorted(glob.glob(str(data / "noise" / "*.wav"))):
        x, _ = read_wav(f)
        for gain in (1.0, 4.0):  # as recorded and 12 dB louder
            y = np.clip(x.astype(np.float64) * gain, -32768, 32767).astype(np.int16)
            fa += len(r.run(y, "always", {"part": "noise", "file": os.path.basename(f)}))
            total_s += len(y) / SR
    return {"noise_minutes": round(total_s / 60, 1), "false_commands": fa,
            "per_hour": round(fa * 3600 / total_s, 1)}


def load_noises(data: Path, ap: argparse.ArgumentParser) -> list[np.ndarray]:
    """The real noise recordings under ``data``/noise (float64), or the parser's error
    naming the folder (here and in the scripts that rebuild this benchmark's items)."""
    noises = [read_wav(f)[0].astype(np.float64)
              for f in sorted(glob.glob(str(data / "noise" / "*.wav")))]
    if not noises:
        ap.error(f"--data {data}: no noise recordings in {data / 'noise'} "
                 "(the shared speech data: ../shared/data/speech)")
    return noises


def read_multi_dump(path: Path, snrs=None) -> dict[tuple, list[dict]]:
    """A ``--dump``'s multi-word items: (snr, voice, command) -> its utterances' rows, in the
    order decided (only the SNRs in ``snrs``, None for every one; quiet is None)."""
    by: dict[tuple, list[dict]] = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r.get("part") == "multi" and (snrs is None or r.get("snr") in snrs):
            by.setdefault((r["snr"], r["voice"], r["cmd"]), []).append(r)
    return by


def multi_item(cs, cid: str, ci: int, voice: str, vi: int, snr: float | None, noises,
               cache: Path) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Command ``cid`` (the ``ci``-th multi-word one) said by voice ``vi``: "assistant,
    <phrase>" with 0.6 s before and 0.8 s after it, in the real noise at ``snr`` (None:
    quiet). Returns (stream, the speech alone, samples before it, the phrase); phrase,
    speed and pitch follow from the two indices."""
    phrases = cs.commands[cid].phrases
    phrase = phrases[(vi + ci) % len(phrases)]
    speed = 140 + 10 * ((vi * 7 + ci) % 6)
    pitch = 30 + 8 * ((vi * 3 + ci) % 6)
    x = synth(f"{cs.wake_phrases[0]}, {phrase}", voice, speed, pitch, cache)
    lead, tail = int(0.6 * SR), int(0.8 * SR)
    body = np.concatenate([np.zeros(lead, np.int16), x, np.zeros(tail, np.int16)])
    nz = noise_piece(noises, len(body), seed=vi * 1000 + ci)
    # "quiet" = the real noise 40 dB down: eSpeak writes exact digital zeros between
    # words, which no microphone ever delivers
    return mix(body, nz, QUIET_SNR_DB if snr is None else snr), x, lead, phrase


def bench_multi(r: Runner, voices: list[str], snrs, noises, cache: Path,
                max_cmds: int) -> dict:
    """SYNTHETIC voices: "assistant, <phrase>" for every command (wake activation)."""
    cs = r.commands
    ids = [c for c in sorted(cs.commands) if c not in SINGLE_WORDS][:max_cmds]
    res = {}
    lat_all: dict[str, list[float]] = {}
    for snr in [None] + list(snrs):
        lat = lat_all.setdefault("quiet" if snr is None else f"{snr:g} dB", [])
        ok = n = asked = wrong = second_ok = second_wrong = 0
        errors: list[str] = []
        for vi, voice in enumerate(voices):
            for ci, cid in enumerate(ids):
                stream, x, lead, phrase = multi_item(cs, cid, ci, voice, vi, snr, noises,
                                                     cache)
                got = r.run(stream, "wake", {"part": "multi", "snr": snr, "voice": voice,
                                             "cmd": cid})
                cmds = [h.command for h, _, _ in got]
                n += 1
                wrong += sum(c != cid for c in cmds)  # acted on, not what was said
                second_ok += sum(c == cid for c in r.last_second)
                second_wrong += sum(c != cid for c in r.last_second)
                if cmds == [cid]:
                    ok += 1
                    end = lead / SR + speech_end_s(x)
                    h, emitted, ms = got[0]
                    lat.append(1000 * (emitted - end) + ms)
                    acc = [(row, u) for row, u in r.last_pairs if row["kind"] == "accept"]
                    if acc:  # --dump: which path the slow ones took, and where the time went
                        row, u = acc[-1]
                        row["lat_ms"] = round(lat[-1], 1)
                        row["close_ms"] = round(1000 * (u.closed_at_s - end), 1)
                        row["decode_ms"] = round(u.decode_ms, 1)
                else:
                    errors.append(f"{voice}/{phrase}->{cmds}")
                    asked += (not cmds) and r.last_unclear > 0
        key = f"quiet ({QUIET_SNR_DB:.0f} dB)" if snr is None else f"{snr} dB"
        # of the commands not acted on, how many got a "say again" instead of silence
        res[key] = {"commands_right": pct(ok, n), "wrong_commands_acted_on": wrong,
                    "missed_but_asked_again": pct(asked, n - ok),
                    "via_second_opinion": {"right": second_ok, "wrong": second_wrong},
                    "errors": errors[:6]}
    res["latency_ms_end_of_speech_to_command"] = latency_summary(lat_all)
    return res


def bench_monologue(r: Runner, voices: list[str], noises, cache: Path, snr: float | None,
                    passes: int) -> dict:
    """SYNTHETIC voices reading ordinary non-command text, as one long stream."""
    lines = [ln for ln in MONOLOGUE.splitlines() if ln.strip()]
    parts = []
    rng = np.random.default_rng(7)
    for p in range(passes):
        for i, line in enumerate(lines):
            v = voices[(i + p) % len(voices)]
            x = synth(line, v, 150 + 10 * ((i + p) % 5), 35 + 6 * ((i * 3 + p) % 5), cache)
            parts.append(x)
            parts.append(np.zeros(int(SR * rng.uniform(0.3, 1.5)), np.int16))
    body = np.concatenate(parts)
    nz = noise_piece(noises, len(body), seed=99)
    stream = mix(body, nz, QUIET_SNR_DB if snr is None else snr)
    minutes = len(stream) / SR / 60
    res = {"minutes": round(minutes, 1), "snr_db": snr}
    for act in ("wake", "always"):
        got = r.run(stream, act, {"part": "monologue", "act": act})
        # 0 events in T hours: the 95 % upper bound of the rate is 3/T per hour
        res[act] = {"false_commands": len(got), "per_hour": round(len(got) * 60 / minutes, 1),
                    "per_hour_95pct_upper_if_zero": round(3 * 60 / minutes, 1),
                    "say_again_prompts": r.last_unclear,
                    "heard": [f"{h.heard}->{h.command}" for h, _, _ in got][:8]}
    return res


TALK_FILES = ["Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.2", "GFDL-1.3", "GPL-1",
              "GPL-2", "GPL-3", "LGPL-2", "LGPL-2.1", "LGPL-3", "MPL-1.1", "MPL-2.0"]


def talk_sentences(folder: Path, max_words: int = 25) -> list[str]:
    """Read-speech text: the licence texts every Debian machine has (no wake phrase in
    them; plenty of command words inside sentences: show, stop, on, off, up, yes...), or,
    in a folder holding none of them, its ``*.txt`` files in name order (another text, such
    as ``--write-reference-text``'s)."""
    out = []
    files = [folder / n for n in TALK_FILES if (folder / n).is_file()]
    for f in files or sorted(folder.glob("*.txt")):
        text = re.sub(r"\s+", " ", f.read_text(errors="replace"))
        for sent in re.split(r"(?<=[.;:!?])\s+", text):
            words = re.sub(r"[^A-Za-z0-9' ,-]+", " ", sent).split()
            for i in range(0, len(words), max_words):
                piece = " ".join(words[i:i + max_words])
                if len(piece) > 1:
                    out.append(piece)
    return out


def latency_note_for(s: SpeechSettings) -> str | None:
    """What a command head file set by hand does to the latency, or None: with
    ``whisper_cmd_head_file`` set (and not ``cmd_head_sure``) the listener also runs the head
    on every multi-word command the classifier was sure of, for the diagnostics
    (listener.py ``_cmd_head_sure``): an encoder pass more, about 20 ms (docs/SPEECH.md,
    "Rule H3")."""
    if not s.whisper_cmd_head_file or s.cmd_head_sure:
        return None
    return ("whisper_cmd_head_file set: every multi-word command the classifier was sure of "
            "also ran the command head for the diagnostics (one encoder pass more), so the "
            "latency here is higher than with that file copied over the shipped one")


def write_reference_text(folder: Path) -> Path:
    """A read-speech text no rule was tuned on: the language reference of the Python running
    this (``pydoc_data.topics``, every topic in name order; 65,000 words in 3.11)."""
    from pydoc_data import topics
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "python-reference.txt"
    p.write_text("\n\n".join(topics.topics[k] for k in sorted(topics.topics)))
    return p


def write_docstring_text(folder: Path) -> Path:
    """Another: the docstrings of the standard modules that import here and of their public
    names of more than 8 words (105,830 words in 3.11.7)."""
    import importlib
    import inspect
    import warnings
    folder.mkdir(parents=True, exist_ok=True)
    skip = {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "lib2to3", "ensurepip",
            "venv", "pydoc_data", "distutils"}  # distutils: setuptools may stand in for it
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in sorted(m for m in sys.stdlib_module_names
                        if not m.startswith("_") and m not in skip):
            try:
                mod = importlib.import_module(n)
            except Exception:  # not built here (a module for another platform)
                continue
            if inspect.getdoc(mod):
                out.append(inspect.getdoc(mod))
            for k, v in sorted(vars(mod).items()):
                doc = (None if k.startswith("_") or getattr(v, "__module__", None) != n
                       else inspect.getdoc(v))
                if doc and len(doc.split()) > 8:
                    out.append(doc)
    p = folder / "stdlib-docstrings.txt"
    p.write_text("\n\n".join(out))
    return p


def write_man_text(folder: Path, words: int = 60000, per_page: int = 250,
                   man_dir: Path | None = None, section: str = "1") -> Path:
    """Another read-speech text no rule was tuned on (rules H3 and W2 in docs/SPEECH.md): the
    manual pages of ``section`` installed here (``man_dir``, by default
    /usr/share/man/manSECTION), taken evenly through their file-name order (one in every
    len/400, and not the Google Cloud SDK's thousands of section-1 pages, so not one
    program family), each rendered by ``man`` as plain text without its header and footer
    lines and cut at ``per_page`` words (so one long page cannot fill it), until ``words``
    words. Needs ``man``; the pages differ between machines, so how many were read and the
    first and last are printed."""
    import shutil
    import subprocess
    man_dir = man_dir or Path(f"/usr/share/man/man{section}")
    if shutil.which("man") is None:
        raise SystemExit("--write-man-text: the man command is not installed here")
    pages = sorted(man_dir.glob(f"*.{section}*"))
    if not pages:
        raise SystemExit(f"--write-man-text: no section-{section} pages in {man_dir}")
    # not the Google Cloud SDK's 16,000 subcommand pages (most of section 1 where installed)
    pages = [p for p in pages if not p.name.startswith("gcloud")]
    pages = pages[::max(1, len(pages) // 400)]
    env = {**os.environ, "MANWIDTH": "2000", "MAN_KEEP_FORMATTING": "0"}
    out, n, used = [], 0, []
    for page in pages:
        r = subprocess.run(["man", "-P", "cat", "-E", "ascii", str(page)], capture_output=True,
                           text=True, env=env, errors="replace")
        text = re.sub(r".\x08", "", r.stdout)  # overstrike (bold, underline) as plain letters
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        body = " ".join(" ".join(lines[1:-1]).split()[:per_page])  # not the header, footer
        if r.returncode != 0 or not body:
            continue
        out.append(body)
        used.append(page.name)
        n += len(body.split())
        if n >= words:
            break
    if not out:
        raise SystemExit(f"--write-man-text: man rendered none of the pages in {man_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "man-pages.txt"
    p.write_text("\n\n".join(out))
    print(f"{len(used)} pages, {n} words, {used[0]} .. {used[-1]}", file=sys.stderr)
    return p


def bench_talk(r: Runner, voices: list[str], noises, cache: Path, snr: float,
               folder: Path, activation: str, max_minutes: float) -> dict:
    """SYNTHETIC voices reading hours of ordinary text (no command in it) as one
    continuous stream with the real noise at ``snr`` dB: false commands per hour."""
    sents = talk_sentences(folder)
    if not sents:
        return {"error": f"no text found in {folder}"}
    s = replace(r.settings, activation=activation)
    lis = CommandListener(s, commands=r.commands, engine=r.engine, log_size=None)
    rng = np.random.default_rng(11)
    t = 0.0
    n = SR * r.chunk_ms // 1000
    heard: list[str] = []
    t0 = time.perf_counter()
    for i, line in enumerate(sents):
        v = voices[i % len(voices)]
        x = synth(line, v, 140 + 10 * (i % 6), 30 + 8 * ((i * 5) % 6), cache)
        body = np.concatenate([x, np.zeros(int(SR * rng.uniform(0.3, 1.5)), np.int16)])
        seg = mix(body, noise_piece(noises, len(body), seed=1000 + i), snr)
        for j in range(0, len(seg), n):
            heard += [f"{h.heard}->{h.command}" for h in lis.feed(seg[j:j + n], t + j / SR)]
        t += len(seg) / SR
        if t / 60 >= max_minutes:
            break
    heard += [f"{h.heard}->{h.command}" for h in lis.flush()]
    r.wall_s += time.perf_counter() - t0
    # every utterance, for --dump (wake-phrase operating points)
    r.dump += [{"part": "talk", "snr": snr, **dump_row(u)} for u in lis.log]
    r.audio_s += t
    hours = t / 3600
    unclear = [u for u in lis.log if u.unclear]  # a "say again" nobody asked for
    return {"hours": round(hours, 2), "sentences": i + 1, "snr_db": snr,
            "activation": activation, "false_commands": len(heard),
            "say_again_prompts": len(unclear),
            "say_again_per_hour": round(len(unclear) / hours, 2),
            "per_hour": round(len(heard) / hours, 2),
            "per_hour_95pct_upper": round((3.0 if not heard else
                                           _poisson_upper95(len(heard))) / hours, 2),
            "heard": heard[:12]}


def _poisson_upper95(k: int) -> float:
    """One-sided 95 % upper confidence bound of a Poisson mean after k events."""
    from scipy.stats import chi2
    return float(chi2.ppf(0.95, 2 * (k + 1)) / 2)


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` overrides of SpeechSettings fields, typed as the field's
    default ("none" for an optional field left unset, "a,b" for a tuple)."""
    over = {}
    for kv in items:
        k, v = kv.split("=", 1)
        default = getattr(SpeechSettings(), k)
        if v.lower() == "none":
            over[k] = None
        elif isinstance(default, bool):
            over[k] = v.lower() in ("1", "true", "yes")
        elif isinstance(default, tuple):  # a list of names: "a,b" ("" for none)
            over[k] = tuple(x for x in v.split(",") if x)
        else:
            over[k] = (float if default is None else type(default))(v)
    return over


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--part", default="all",
                    choices=["all", "words", "noise", "multi", "monologue", "talk"])
    ap.add_argument("--talk-dir", type=Path, default=Path("/usr/share/common-licenses"),
                    help="--part talk: folder of the licence texts read aloud")
    ap.add_argument("--talk-minutes", type=float, default=240.0)
    ap.add_argument("--write-reference-text", type=Path, metavar="DIR",
                    help="write Python's language reference to DIR/python-reference.txt (a "
                         "read-speech text for --talk-dir DIR) and exit")
    ap.add_argument("--write-docstring-text", type=Path, metavar="DIR",
                    help="write the standard library's docstrings to "
                         "DIR/stdlib-docstrings.txt and exit")
    ap.add_argument("--write-man-text", type=Path, metavar="DIR",
                    help="write the manual pages of --man-section installed here to "
                         "DIR/man-pages.txt (60,000 words) and exit")
    ap.add_argument("--man-section", default="1", choices=[str(i) for i in range(1, 10)],
                    help="--write-man-text: which section (default 1)")
    ap.add_argument("--talk-activation", default="wake", choices=["wake", "always"])
    ap.add_argument("--split", default="test", choices=["tune", "test", "all"])
    ap.add_argument("--voices", default="",
                    help="comma-separated eSpeak NG voices for the synthetic parts instead of "
                         "the split's (e.g. a third set to design a rule on, keeping TEST "
                         "unread); the real words still follow --split")
    ap.add_argument("--words-wake", action="store_true",
                    help="score the real words in wake activation (the default) instead of "
                         "always listening: each after the wake phrase in the split's voices "
                         "(SYNTHETIC wake phrase, REAL word)")
    ap.add_argument("--snrs", default="20,10,5,0")
    ap.add_argument("--engine", default=SpeechSettings().engine,
                    choices=["kws", "pocketsphinx", "vosk"])
    ap.add_argument("--chunk-ms", type=int, default=20)
    add_pace_pauses_option(ap)
    ap.add_argument("--max-cmds", type=int, default=100)
    ap.add_argument("--monologue-passes", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/speech_bench_cache"))
    ap.add_argument("--set", action="append", default=[],
                    help="override a SpeechSettings field, e.g. --set min_lr_per_frame=-30")
    ap.add_argument("--dump", type=Path, help="write every utterance decision (JSON lines)")
    args = ap.parse_args(argv)
    if args.write_reference_text:
        print(write_reference_text(args.write_reference_text))
        return 0
    if args.write_docstring_text:
        print(write_docstring_text(args.write_docstring_text))
        return 0
    if args.write_man_text:
        print(write_man_text(args.write_man_text, section=args.man_section))
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    over = parse_sets(args.set)
    settings = replace(SpeechSettings(engine=args.engine), **over)
    snrs = [float(s) for s in args.snrs.split(",") if s]
    noises = load_noises(args.data, ap)
    voices = ([v for v in args.voices.split(",") if v] if args.voices else
              {"tune": VOICES_TUNE, "test": VOICES_TEST, "all": VOICES_TUNE + VOICES_TEST}[args.split])
    r = Runner(settings, args.chunk_ms, args.pace_pauses)
    out: dict = {"engine": r.engine.name, "split": args.split, "chunk_ms": args.chunk_ms,
                 "settings_overrides": over}
    out["paces_pauses"] = args.pace_pauses
    if args.voices:
        out["voices"] = voices
    if note := latency_note_for(settings):
        out["latency_note"] = note
    if args.part in ("all", "words"):
        key = "real_single_words_after_wake" if args.words_wake else "real_single_words_always"
        out[key] = bench_words(r, args.data, args.split, snrs, noises,
                               wake_voices=voices if args.words_wake else None,
                               cache=args.cache)
        if r.engine.name == "kws" and kws_real_speakers(r.engine.model.meta) == "all":
            out[key]["note"] = (
                "IN-SAMPLE: this kws classifier was trained on every real speaker; the "
                "held-out estimate is benchmarks/kws_speaker_folds.py --over all")
    if args.part in ("all", "noise"):
        out["real_noise_only_always"] = bench_noise(r, args.data)
    if args.part in ("all", "multi"):
        out["synthetic_multiword_wake"] = bench_multi(r, voices, snrs, noises, args.cache,
                                                      args.max_cmds)
    if args.part in ("all", "monologue"):
        out["synthetic_monologue_10dB"] = bench_monologue(r, voices, noises, args.cache, 10.0,
                                                          args.monologue_passes)
    if args.part == "talk":  # hours of audio: not part of "all"
        out["synthetic_read_speech_10dB"] = bench_talk(
            r, voices, noises, args.cache, 10.0, args.talk_dir, args.talk_activation,
            args.talk_minutes)
    out["real_time_factor_one_core"] = round(r.wall_s / max(r.audio_s, 1e-9), 4)
    if r.end_ms:
        out["decode_ms_after_endpoint"] = {
            "p50": round(float(np.percentile(r.end_ms, 50)), 1),
            "p95": round(float(np.percentile(r.end_ms, 95)), 1), "n": len(r.end_ms)}
    out["audio_minutes_processed"] = round(r.audio_s / 60, 1)
    print(json.dumps(out, indent=1))
    if args.dump:
        with open(args.dump, "w") as f:
            for d in r.dump:
                f.write(json.dumps(d) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
