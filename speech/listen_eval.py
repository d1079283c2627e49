"""``assistant listen-eval DIR [--activation wake|always] [--noise DIR --snr DB]
[--wake-prefix WAV] [--json FILE]``

Scores the recognizer on a lab's own recordings, as ``assistant seg-eval`` scores the
segmentation on its images: every audio file under ``DIR/<LABEL>/`` is streamed through the
listener (a fresh one per file, the speech settings of config.yaml) and what it acts on is
compared with the folder's label.

A folder's name is the command said in its files, as a command id (``show.fascia``, ``yes``)
or one of the command's phrases with spaces or underscores (``show fascia``,
``show_fascia``); or, for recordings in which no command is said, one of ``_none_``,
``_unknown_`` (other words), ``_silence_``, ``_noise_``, ``_talk_``. So Speech Commands'
layout (``yes/``, ``no/``, ..., ``_unknown_/``, ``_silence_/``) is read as it is. A file
counts as **right** when exactly its folder's command was acted on, **wrong** when another
command was, **missed** when none was; a file without a command counts when any command was
acted on. Files are padded with their own quietest 100 ms (0.5 s before, 0.6 s after, as the
benchmark does with 1 s clips). ``--noise DIR --snr DB`` mixes each file with a piece of the
noise recordings in DIR at DB against the file's speech power (``_silence_`` files: against a
typical clip's). For each command acted on as said it also gives the time from the end of the
speech (estimated from the recording's own energy) to the command, the file streamed as a live
one would be (each chunk processed once spoken, after the ones before it), on this host; the
p50 and p95 are printed. ``--wake-prefix WAV`` plays a recording of the wake phrase before
every file (scaled to the file's speech power, then 300 ms of its room tone; the SNR still
against the file), so recordings of bare words are scored in wake activation, the default;
their latency is timed from the end of the file's speech. Unreadable files are listed and the rest still scored; the exit
status is then 2 (also for a folder that names no command), else 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from .audio import (SAMPLE_RATE_HZ as SR, AudioFileError, active_power, cut_at_edge,
                    noise_piece, read_audio, room_tone, speech_end_s, strip_padding)
from .commands import CommandFileError, CommandSet
from .engines import EngineError
from .listen_cli import add_pace_pauses_option, positive_ms
from .settings import SpeechSettings

NO_COMMAND = ("_none_", "_unknown_", "_silence_", "_noise_", "_talk_")
LEAD_S, TAIL_S = 0.5, 0.6
SILENCE_REF_POWER = 1000.0 ** 2  # a typical clip's speech power, for _silence_ files
WAKE_GAP_S = 0.3  # --wake-prefix: the pause after the wake phrase (a comma's)


class EvalInputError(ValueError):
    """A folder or noise input the evaluation cannot use; the message names it."""


def label_of(folder: str, commands: CommandSet) -> str | None:
    """The command id a folder's recordings say, or None for a no-command folder."""
    if folder in NO_COMMAND:
        return None
    if folder in commands.commands:
        return folder
    cid = commands.lookup(folder.replace("_", " "))
    if cid is None:
        raise EvalInputError(
            f"folder {folder!r} names no command of {commands.path}: name it by a command id "
            f"(e.g. {sorted(commands.commands)[0]!r}), one of its phrases (spaces or "
            f"underscores), or one of {', '.join(NO_COMMAND)} for recordings without a command")
    return cid


def collect(root: Path, commands: CommandSet) -> list[tuple[Path, str, str | None]]:
    """(file, folder, expected command id or None) for every file in root's sub-folders."""
    if not root.is_dir():
        raise EvalInputError(f"{root} is not a folder")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = label_of(d.name, commands)
        out += [(f, d.name, label) for f in sorted(d.iterdir())
                if f.is_file() and not f.name.startswith(".")]
    if not out:
        raise EvalInputError(f"{root} holds no sub-folder with files (expected DIR/<LABEL>/*.wav)")
    return out


def load_noise(folder: Path) -> list[np.ndarray]:
    if not folder.is_dir():
        raise EvalInputError(f"--noise {folder} is not a folder")
    out = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            try:
                out.append(read_audio(str(f))[0])
            except AudioFileError as exc:
                raise EvalInputError(f"--noise: {exc}") from None
    out = [x for x in out if len(x) >= SR // 10]
    if not out:
        raise EvalInputError(f"--noise {folder} holds no readable recording of 0.1 s or more")
    return out


def speech_power(x: np.ndarray, folder: str) -> float:
    """The power a file's SNR and wake phrase refer to: its speech's (``active_power``), or a
    typical clip's for a ``_silence_`` file."""
    return SILENCE_REF_POWER if folder == "_silence_" else active_power(x)


def with_wake(x: np.ndarray, folder: str, wake: np.ndarray, gap_s: float = WAKE_GAP_S
              ) -> tuple[np.ndarray, float]:
    """A bare-word recording ``x`` with the wake-phrase recording ``wake`` said before it
    (pure): the wake phrase scaled to the recording's speech power (``_silence_`` files: a
    typical clip's, as the noise is mixed), ``gap_s`` of the recording's own room tone, then
    the recording. Returns (stream, where the recording starts in it, s): a lab's recordings
    of bare words (Speech Commands') scored in wake activation, the default."""
    if gap_s < 0:
        raise EvalInputError(f"the gap after the wake phrase must be >= 0 s, got {gap_s:g}")
    if len(wake) < SR // 10:
        raise EvalInputError(f"the wake-phrase recording is {len(wake) / SR:.3f} s long: "
                             f"it must hold at least 0.1 s")
    w = np.clip(wake.astype(np.float64) * np.sqrt(speech_power(x, folder) / active_power(wake)),
                -32768, 32767).astype(np.int16)
    gap = room_tone(x, int(round(gap_s * SR)))
    return np.concatenate([w, gap, x]), (len(w) + len(gap)) / SR


def load_wake(path: Path) -> np.ndarray:
    """--wake-prefix: the wake-phrase recording, 16 kHz mono, its file padding stripped."""
    try:
        x = strip_padding(read_audio(str(path))[0])
    except AudioFileError as exc:
        raise EvalInputError(f"--wake-prefix: {exc}") from None
    if len(x) < SR // 10 or not np.any(x):
        raise EvalInputError(f"--wake-prefix {path}: holds no wake phrase (under 0.1 s of "
                             f"sound)")
    return x


def padded(x: np.ndarray, folder: str, noises: list[np.ndarray] | None, snr_db: float | None,
           seed: int, power: float | None = None) -> np.ndarray:
    """The file as streamed: room tone before and after, and the noise at ``snr_db`` against
    ``power`` (default: the file's speech power, ``active_power``; ``_silence_`` files: a
    typical clip's)."""
    if not noises or snr_db is None:
        return np.concatenate([room_tone(x, int(LEAD_S * SR)), x, room_tone(x, int(TAIL_S * SR))])
    body = np.concatenate([np.zeros(int(LEAD_S * SR), np.int16), x,
                           np.zeros(int(TAIL_S * SR), np.int16)])
    piece = noise_piece(noises, len(body), seed)
    ref = power if power is not None else speech_power(x, folder)
    gain = np.sqrt(ref / (max((piece ** 2).mean(), 1e-9) * 10 ** (snr_db / 10)))
    return np.clip(body + gain * piece, -32768, 32767).astype(np.int16)


def streamed(x: np.ndarray, folder: str, noises: list[np.ndarray] | None, snr_db: float | None,
             seed: int, wake: np.ndarray | None = None, gap_s: float = WAKE_GAP_S
             ) -> tuple[np.ndarray, float]:
    """The file as the listener hears it (``padded``), after the wake phrase ``wake`` when
    given (``with_wake``; the SNR still against the file's speech). Returns (stream, where
    the file starts after the lead-in, s)."""
    if wake is None:
        return padded(x, folder, noises, snr_db, seed), 0.0
    said, start_s = with_wake(x, folder, wake, gap_s)
    return padded(said, folder, noises, snr_db, seed, power=speech_power(x, folder)), start_s


@dataclass
class Tally:
    files: int = 0
    right: int = 0
    wrong: int = 0
    missed: int = 0
    acted: int = 0  # no-command files: taken for a command


def score(expected: str | None, heard: list[str], t: Tally) -> str:
    """Count one file; returns its verdict."""
    t.files += 1
    if expected is None:
        t.acted += bool(heard)
        return "false command" if heard else "ignored"
    if heard == [expected]:
        t.right += 1
        return "right"
    if heard:
        t.wrong += 1
        return "wrong"
    t.missed += 1
    return "missed"


def pct(a: int, n: int) -> str:
    return f"{100.0 * a / n:.1f} %" if n else "-"


def settings_changed(s: SpeechSettings) -> dict:
    """The speech settings that differ from the shipped defaults (what a lab compares when it
    scores its recordings with and without an option), as JSON values."""
    base = SpeechSettings()
    out = {}
    for f in fields(s):
        v = getattr(s, f.name)
        if v != getattr(base, f.name):
            out[f.name] = (sorted(v) if isinstance(v, (frozenset, set))
                           else list(v) if isinstance(v, tuple) else v)
    return out


def main(argv: list[str] | None = None, settings: SpeechSettings | None = None) -> int:
    ap = argparse.ArgumentParser(prog="assistant listen-eval", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="folder of sub-folders named by the command said in their files")
    ap.add_argument("--activation", choices=["wake", "always"],
                    help="wake: the recordings say the wake phrase first; always: bare commands "
                         "(Speech Commands' words)")
    ap.add_argument("--engine", choices=["kws", "pocketsphinx", "vosk"])
    ap.add_argument("--commands", help="command YAML (default speech/commands_en.yaml)")
    ap.add_argument("--noise", help="folder of noise recordings to mix in (with --snr)")
    ap.add_argument("--snr", type=float, help="signal-to-noise ratio in dB (with --noise)")
    ap.add_argument("--json", help="also write the figures and every file's result here")
    ap.add_argument("--chunk-ms", type=positive_ms,
                    help="stream chunk size (default: speech.block_ms, 20)")
    ap.add_argument("--wake-prefix", metavar="WAV",
                    help="a recording of the wake phrase, played before every file (scaled to "
                         "its speech power, then a pause of its room tone): recordings of bare "
                         "words scored in wake activation, the default (implies --activation "
                         "wake unless given)")
    ap.add_argument("--wake-gap-ms", type=positive_ms, default=round(WAKE_GAP_S * 1000),
                    help="the pause after --wake-prefix's wake phrase (default %(default)s ms)")
    add_pace_pauses_option(ap)
    args = ap.parse_args(argv)
    if (args.noise is None) != (args.snr is None):
        ap.error("--noise and --snr go together")
    if args.wake_prefix and not args.activation:
        args.activation = "wake"
    s = settings or SpeechSettings()
    s = replace(s, **{k: v for k, v in (("activation", args.activation), ("engine", args.engine),
                                        ("commands_file", args.commands)) if v})
    from .engines import cmudict_words, make_engine
    from .commands import load_commands
    from .listener import CommandListener, feed_live
    try:
        commands = load_commands(s.commands_file or None,
                                 cmudict_words() if s.engine == "pocketsphinx" else None)
        items = collect(Path(args.dir), commands)
        noises = load_noise(Path(args.noise)) if args.noise else None
        wake = load_wake(Path(args.wake_prefix)) if args.wake_prefix else None
    except (CommandFileError, EvalInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        engine = make_engine(s, commands)
    except (EngineError, ValueError) as exc:
        print(f"error: speech recognizer: {exc}", file=sys.stderr)
        return 1

    per: dict[str, Tally] = {}
    rows, unreadable, latencies = [], [], []
    for k, (path, folder, expected) in enumerate(items):
        try:
            x = strip_padding(read_audio(str(path))[0])  # as a microphone would give it
        except AudioFileError as exc:
            unreadable.append(str(exc))
            continue
        stream, start_s = streamed(x, folder, noises, args.snr, k, wake, args.wake_gap_ms / 1000)
        lis = CommandListener(s, commands=commands, engine=engine, log_size=None)
        got = feed_live(lis, stream, args.chunk_ms or s.block_ms, args.pace_pauses)
        heard = [h for h, _ in got]
        ids = [h.command for h in heard]
        verdict = score(expected, ids, per.setdefault(folder, Tally()))
        row = {"file": str(path.relative_to(args.dir)), "expected": expected,
               "heard": ids, "words": [h.heard for h in heard], "verdict": verdict}
        if expected is not None:  # the recording may have cut the word: said apart
            row["cut_at_edge"] = cut_at_edge(x)
        if verdict == "right":
            row["latency_ms"] = round(1000 * (got[0][1] - LEAD_S - start_s - speech_end_s(x)),
                                      1)
            latencies.append(row["latency_ms"])
        rows.append(row)

    cmd = Tally(**{f: sum(getattr(t, f) for n, t in per.items() if n not in NO_COMMAND)
                   for f in ("files", "right", "wrong", "missed")})
    non = Tally(**{f: sum(getattr(t, f) for n, t in per.items() if n in NO_COMMAND)
                   for f in ("files", "acted")})
    cond = f"{args.snr:g} dB of {args.noise}" if args.noise else "as recorded (no noise added)"
    if wake is not None:
        cond += (f"; each file after the wake phrase of {args.wake_prefix} and "
                 f"{args.wake_gap_ms} ms")
    print(f"listen-eval: {len(rows)} files in {len(per)} folders of {args.dir}, activation "
          f"{s.activation}, engine {s.engine}, {cond}")
    print(f"{'folder':<22}{'files':>6}{'right':>7}{'wrong':>7}{'missed':>8}{'acted on':>10}")
    for name, t in sorted(per.items()):
        if name in NO_COMMAND:
            print(f"{name:<22}{t.files:>6}{'':>7}{'':>7}{'':>8}{t.acted:>10}")
        else:
            print(f"{name:<22}{t.files:>6}{t.right:>7}{t.wrong:>7}{t.missed:>8}")
    if cmd.files:
        print(f"commands: {cmd.files} files, right {cmd.right} ({pct(cmd.right, cmd.files)}), "
              f"wrong {cmd.wrong} ({pct(cmd.wrong, cmd.files)}), missed {cmd.missed} "
              f"({pct(cmd.missed, cmd.files)})")
    if non.files:
        print(f"without a command: {non.files} files, taken for a command {non.acted} "
              f"({pct(non.acted, non.files)})")
    lat = ({"p50": round(float(np.percentile(latencies, 50)), 1),
            "p95": round(float(np.percentile(latencies, 95)), 1), "n": len(latencies)}
           if latencies else None)
    if lat:
        print(f"end of speech to command (right ones; the end estimated from each recording's "
              f"energy): p50 {lat['p50']} ms, p95 {lat['p95']} ms (n {lat['n']}, this host"
              f"{', paced as live' if args.pace_pauses else ', unpaced'})")
    cut = [r for r in rows if r.get("cut_at_edge")]
    cut_tally = {"files": len(cut), "right": sum(r["verdict"] == "right" for r in cut)}
    if cut:
        whole = cmd.files - len(cut)
        print(f"command files that begin or end in their loudest sound (the recording may "
              f"have cut the word): {len(cut)}, right {cut_tally['right']}; the other {whole}: "
              f"right {cmd.right - cut_tally['right']} "
              f"({pct(cmd.right - cut_tally['right'], whole)})")
    if cmd.files and cmd.missed == cmd.files and s.activation == "wake":
        print("no command was acted on: do the recordings say the wake phrase first? "
              "(--activation always for bare commands, as in Speech Commands)")
    bad = [r for r in rows if r["verdict"] in ("wrong", "false command")]
    for r in bad[:30]:
        print(f"  {r['verdict']}: {r['file']}: expected {r['expected'] or 'no command'}, "
              f"acted on {', '.join(r['heard'])} (heard \"{' / '.join(r['words'])}\")")
    if len(bad) > 30:
        print(f"  ... and {len(bad) - 30} more (--json FILE lists every file)")
    for u in unreadable:
        print(f"unreadable, not scored: {u}", file=sys.stderr)
    changed = settings_changed(s)
    print("speech settings other than the defaults: "
          + (", ".join(f"{k}={v}" for k, v in changed.items()) or "none"))
    print("not for clinical use")
    if args.json:
        summary = {"dir": str(args.dir), "activation": s.activation, "engine": s.engine,
                   "noise": args.noise, "snr_db": args.snr,
                   "wake_prefix": args.wake_prefix,
                   "wake_gap_ms": args.wake_gap_ms if args.wake_prefix else None,
                   "commands": {k: getattr(cmd, k) for k in ("files", "right", "wrong", "missed")},
                   "without_command": {"files": non.files, "acted_on": non.acted},
                   "commands_cut_at_edge": cut_tally,
                   "latency_ms_end_of_speech_to_command": lat,
                   "latency_paced_as_live": args.pace_pauses,
                   "speech_settings_changed": changed,
                   "per_folder": {n: {k: getattr(t, k) for k in
                                      ("files", "right", "wrong", "missed", "acted")}
                                  for n, t in sorted(per.items())},
                   "unreadable": unreadable, "files": rows}
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 2 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
