"""``assistant listen FILE.wav [--json] [--activation wake|always]``

Streams a WAV file (or the audio track of a video or other media file) through the CommandListener in chunks (as the speech node does)
and prints each recognised command, one per line, as it would reach the assistant:

    1.02-2.31 s  show.fascia  "assistant show fascia"  confidence 0.87

or with ``--json`` one JSON object per line with keys ``heard``, ``command``,
``start_s``, ``end_s``, ``confidence`` (plus ``needs_confirmation``).
With ``--unclear`` it also prints the commands asked for but not understood (the wake
phrase clearly heard, then words it could not act on: the assistant says "say again"):

    4.10-5.02 s  (not understood)  "assistant ..."  best guess show.nerve

(``--json``: ``{"unclear": true, "heard", "start_s", "end_s", "guess", "reason"}``).
Exit status: 0 done, 2 bad input (WAV or command file), 1 recognizer failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace

from .audio import AudioFileError, chunks, read_audio
from .commands import CommandFileError
from .engines import EngineError, vosk_model_problem
from .settings import SpeechSettings

log = logging.getLogger(__name__)


def format_heard(h, as_json: bool) -> str:
    if as_json:
        d = {"heard": h.heard, "command": h.command, "start_s": h.start_s,
             "end_s": h.end_s, "confidence": h.confidence,
             "needs_confirmation": h.needs_confirmation}
        return json.dumps({**d, "via": h.via} if h.via else d)
    flag = "  (needs confirmation)" if h.needs_confirmation else ""
    via = f"  (via {h.via})" if h.via else ""
    return (f"{h.start_s:.2f}-{h.end_s:.2f} s  {h.command}  \"{h.heard}\"  "
            f"confidence {h.confidence:.2f}{flag}{via}")


def format_unclear(u, as_json: bool) -> str:
    if as_json:
        return json.dumps({"unclear": True, "heard": u.heard, "start_s": u.start_s,
                           "end_s": u.end_s, "guess": u.guess, "reason": u.reason})
    guess = f"  best guess {u.guess}" if u.guess else ""
    heard = f"{u.heard} ..." if u.heard else "..."
    return f"{u.start_s:.2f}-{u.end_s:.2f} s  (not understood)  \"{heard}\"{guess}"


def add_pace_pauses_option(ap) -> None:
    """``--pace-pauses`` / ``--no-pace-pauses`` on an argparse parser: how the benchmarks and
    listen-eval clock the stream (``feed_live``'s ``pace_pauses``; paced by default since
    2026-12-07)."""
    ap.add_argument("--pace-pauses", action=argparse.BooleanOptionalAction, default=True,
                    help="time commands as the live node gives them (the default since "
                         "2026-12-07): from a pause at which Whisper's check starts, the audio "
                         "is handed over in real time, so the check runs while the hangover is "
                         "heard; --no-pace-pauses feeds it as fast as it is processed, which "
                         "counts all of that check after the close (the figures before; "
                         "docs/SPEECH.md, \"The live figures\")")


def positive_ms(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of ms, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 ms, got {v}")
    return v


def main(argv: list[str] | None = None, settings: SpeechSettings | None = None) -> int:
    """``settings``: the speech settings to listen with (``assistant listen`` passes
    config.yaml's ``speech:`` section, or ``assistant --config FILE``'s); the options below
    override them. Without: the built-in defaults."""
    ap = argparse.ArgumentParser(prog="assistant listen",
                                 description="Recognise voice commands in a WAV file, with the "
                                 "speech settings of config.yaml (assistant --config FILE "
                                 "listen ... for another).")
    ap.add_argument("wav", help="WAV file, or a video or other media file with an audio track "
                                "(any rate/channels; converted to 16 kHz mono)")
    ap.add_argument("--json", action="store_true", help="JSON lines output")
    ap.add_argument("--activation", choices=["wake", "always"],
                    help="wake: commands need the wake phrase; always: bare commands")
    ap.add_argument("--engine", choices=["kws", "pocketsphinx", "vosk"])
    ap.add_argument("--vosk-model-dir")
    ap.add_argument("--commands", help="command YAML (default speech/commands_en.yaml)")
    ap.add_argument("--unclear", action="store_true",
                    help="also print commands asked for but not understood (\"say again\")")
    ap.add_argument("--chunk-ms", type=positive_ms,
                    help="stream chunk size (default: speech.block_ms, 20)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every utterance")
    args = ap.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    s = settings or SpeechSettings()
    over = {k: v for k, v in (("activation", args.activation), ("engine", args.engine),
                              ("vosk_model_dir", args.vosk_model_dir),
                              ("commands_file", args.commands)) if v}
    s = replace(s, **over)
    problem = vosk_model_problem(s.vosk_model_dir) if args.engine == "vosk" else None
    if problem:  # asked for by name: measure that engine or nothing (the live system falls back)
        print(f"error: --engine vosk: {problem} (--vosk-model-dir, or speech.vosk_model_dir; "
              f"'assistant models fetch vosk-en' where there is internet)", file=sys.stderr)
        return 2
    try:
        samples, _info = read_audio(args.wav)
    except AudioFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .listener import CommandListener  # the recognizer loads only when needed
    try:
        listener = CommandListener(s)
    except CommandFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EngineError, ValueError) as exc:
        print(f"error: speech recognizer: {exc}", file=sys.stderr)
        return 1
    def out(heard) -> None:
        lines = [(u.end_s, format_unclear(u, args.json)) for u in listener.take_unclear()
                 if args.unclear]
        lines += [(h.end_s, format_heard(h, args.json)) for h in heard]
        for _, line in sorted(lines, key=lambda x: x[0]):
            print(line, flush=True)

    for chunk, t in chunks(samples, args.chunk_ms or s.block_ms):
        out(listener.feed(chunk, t))
    out(listener.flush())
    return 0


if __name__ == "__main__":
    sys.exit(main())
