"""``assistant enrol RECORDING --speaker NAME --out DIR [--words yes,no,...] [--times K]``

A site's operators, recorded once, are recognised better: one recording of each of the ten
single words from a speaker, added to the training set, raised that speaker's other
recordings from 87.5 to 91.3 % right clean and from 76.9 to 82.7 % at 10 dB, always
listening; more of their other words were acted on after the wake phrase (docs/SPEECH.md,
"A speaker the models have heard"). This tool turns one recording of an operator reading
the words into the clips the trainers read.

The operator reads ``--words`` (default: the ten single words, in the order printed by
``--prompts``) ``--times`` times over, each word alone with a pause of about a second after
it. The recording (a WAV, or any audio or video file with a sound track; any rate, mono or
stereo) is cut where the speech is (the listener's endpointer and voice model); there must
be exactly one stretch of speech per word said, else nothing is written and the error says
how many were found and where. Each word becomes a 1 s clip centred on its speech, written as
``DIR/speech_commands/<word>/<speaker>_nohash_<i>.wav`` (16 kHz mono, Speech Commands'
layout; ``i`` continues after the speaker's existing clips). Then, on a copy of the shared
data folder that holds these clips (and its ``noise/``)::

    python -m speech.train_kws --data DIR --out site/kws_en.npz
    python -m speech.train_whisper_head --data DIR --out site/whisper_head_en.npz

and set ``speech.kws_model`` and ``speech.whisper_head_file`` in config.yaml to them.
Exit status: 0 when the clips were written, 2 for an input it cannot use (named).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE_HZ as SR, AudioFileError, read_audio, room_tone, write_wav
from .commands import SINGLE_WORDS
from .settings import SpeechSettings
from .vad import endpointer_for

CLIP_S = 1.0  # Speech Commands' clip length
MIN_WORD_S = 0.08  # shorter is a click or a breath, not a word
NOT_SPEECH = 0.5  # a stretch the voice model never gives this much is noise, not a word
JOIN_GAP_S = 0.3  # pieces closer than this are one word (the closure before the burst of
# "up" or "stop" can end a stretch of speech; the pause between words is about a second)
SPEAKER = re.compile(r"^[A-Za-z0-9]+$")  # the trainers read the speaker from the file name


class EnrolError(ValueError):
    """An input the enrolment cannot use; the message names it and what was wrong."""


@dataclass(frozen=True)
class Clip:
    word: str
    start_s: float  # where the word's speech starts and ends in the recording
    end_s: float
    samples: np.ndarray  # CLIP_S of audio centred on the word


def word_spans(x: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) in seconds of each stretch of speech in the recording ``x`` (16 kHz mono
    int16), as the listener's endpointer cuts a stream; pieces less than JOIN_GAP_S
    apart are one stretch, and stretches shorter than MIN_WORD_S are dropped."""
    ep = endpointer_for(SpeechSettings(), max_utterance_ms=60_000)  # the listener's, unlimited
    utts = []
    step = SR // 50
    for i in range(0, len(x), step):
        utts += ep.feed(x[i:i + step], i / SR)
    utts += ep.flush()
    if ep.neural is not None:  # stretches the voice model heard no speech in are noise
        utts = [u for u in utts if (u.voice_prob or 0.0) >= NOT_SPEECH]
    spans: list[tuple[float, float]] = []
    for u in utts:
        if spans and u.speech_start_s - spans[-1][1] < JOIN_GAP_S:
            spans[-1] = (spans[-1][0], u.speech_end_s)
        else:
            spans.append((u.speech_start_s, u.speech_end_s))
    return [(a, b) for a, b in spans if b - a >= MIN_WORD_S]


def cut_words(x: np.ndarray, words: list[str], source: str = "the recording") -> list[Clip]:
    """The recording ``x`` of ``words`` read in order, one per pause, cut into 1 s clips
    centred on each word's speech (pure). Raises EnrolError naming ``source`` when the
    number of stretches of speech is not the number of words, or one is longer than a clip
    (two words run together)."""
    if not words:
        raise EnrolError("no words to enrol")
    spans = word_spans(x)
    if len(spans) != len(words):
        at = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in spans[:40])
        raise EnrolError(
            f"{source}: {len(spans)} stretches of speech found ({at or 'none'}), but "
            f"{len(words)} words were to be read; read each word alone with a pause of about "
            f"a second after it, and nothing else")
    n = int(CLIP_S * SR)
    pad = room_tone(x, n)
    padded = np.concatenate([pad, x, pad])
    clips = []
    for w, (a, b) in zip(words, spans):
        if b - a > CLIP_S:
            raise EnrolError(f"{source}: the speech at {a:.2f}-{b:.2f} s, read as {w!r}, "
                             f"lasts {b - a:.2f} s: longer than a {CLIP_S:g} s clip (two words "
                             f"without a pause between them?)")
        start = int(round((a + b) / 2 * SR)) - n // 2 + n  # in the padded recording
        clips.append(Clip(w, a, b, padded[start:start + n].copy()))
    return clips


def next_index(folder: Path, speaker: str) -> int:
    """The first free repetition number for ``speaker`` in ``folder``."""
    taken = [int(m.group(1)) for p in folder.glob(f"{speaker}_nohash_*.wav")
             if (m := re.fullmatch(rf"{re.escape(speaker)}_nohash_(\d+)\.wav", p.name))]
    return max(taken, default=-1) + 1


def check_speaker(speaker: str) -> None:
    if not SPEAKER.match(speaker):
        raise EnrolError(f"--speaker {speaker!r}: use letters and digits only (the trainers "
                         f"read the speaker from the file name)")


def write_clips(clips: list[Clip], out: Path, speaker: str) -> list[Path]:
    """Each clip as ``out/speech_commands/<word>/<speaker>_nohash_<i>.wav``, after the
    speaker's clips already there. Returns the files written."""
    check_speaker(speaker)
    written = []
    for c in clips:
        folder = out / "speech_commands" / c.word
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{speaker}_nohash_{next_index(folder, speaker)}.wav"
        write_wav(path, c.samples)
        written.append(path)
    return written


def parse_words(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in SINGLE_WORDS]
    if bad or not words:
        raise EnrolError(f"--words {text!r}: each must be one of the single words the models "
                         f"learn from real speakers ({', '.join(SINGLE_WORDS)})"
                         + (f"; not {', '.join(bad)}" if bad else ""))
    return words


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="assistant enrol", description=__doc__.split("\n\n")[1])
    ap.add_argument("recording", nargs="?", help="the operator reading the words (WAV, or any "
                    "audio/video file with a sound track)")
    ap.add_argument("--speaker", help="the operator's id: letters and digits")
    ap.add_argument("--out", type=Path, help="the data folder to add the clips to")
    ap.add_argument("--words", default=",".join(SINGLE_WORDS),
                    help="the words in the order read (default: the ten single words)")
    ap.add_argument("--times", type=int, default=1, help="the list was read this many times")
    ap.add_argument("--prompts", action="store_true",
                    help="print what to read, one word a line, and stop")
    a = ap.parse_args(argv)
    try:
        words = parse_words(a.words)
        if a.times < 1:
            raise EnrolError(f"--times must be at least 1, got {a.times}")
        said = words * a.times
        if a.prompts:
            print("\n".join(said))
            return 0
        if not a.recording or not a.speaker or a.out is None:
            raise EnrolError("give the recording, --speaker and --out (or --prompts)")
        check_speaker(a.speaker)  # before the recording is read
        try:
            x, _ = read_audio(a.recording)
        except AudioFileError as exc:
            raise EnrolError(str(exc)) from None
        clips = cut_words(x, said, source=str(a.recording))
        written = write_clips(clips, a.out, a.speaker)
    except EnrolError as exc:
        print(f"assistant enrol: {exc}", file=sys.stderr)
        return 2
    for c, p in zip(clips, written):
        print(f"{c.word:6s} {c.start_s:7.2f}-{c.end_s:.2f} s -> {p}")
    print(f"{len(written)} clips written for speaker {a.speaker}. Retrain on a data folder that "
          f"holds them and the shared noise/ (docs/SPEECH.md, \"A speaker the models have "
          f"heard\").")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
