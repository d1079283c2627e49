"""Which audio should the command head read for a command said after a wake phrase said
alone? (An exploration for docs/SPEECH.md "Rule M7w", "Left after it"; asserts nothing,
changes nothing.)

For every multi-word item of a ``speech_bench.py --part all|multi --dump`` whose follow-up
utterance (``joined``) the command head was asked about, the item's stream is rebuilt as the
benchmark builds it (``multi_item``: the same voice, speed, pitch, noise and SNR) and the
shipped command head is run on four windows of it, from the dumped utterance times (the
detected speech: a dump's ``start`` and ``dur`` leave out the pre-roll and the hangover):
the follow-up's speech, the same + 0.3 s, the held wake phrase's speech start to the
follow-up's speech end, and the same + 0.3 s. Prints, per SNR and window, how often the
head's first answer is the command said, at >= 0.6, and another command at >= 0.6.
The listener itself reads the utterance's samples (150 ms of pre-roll and the hangover
around the speech) or, at a pause, less ("Rule P"), so the first window's figures are not the
pipeline's ("dumped" in each --verbose line is); rule J2's setting
(``speech.cmd_head_joined_wake``) reads the held wake phrase's first sample to the
follow-up's last.

    python benchmarks/speech_bench.py --part all --split tune --dump tune_all.jsonl
    python benchmarks/joined_window.py tune_all.jsonl [--split tune] [--verbose]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import speech_bench as sb  # noqa: E402
from speech.commands import load_commands  # noqa: E402
from speech.decision import SINGLE_WORDS  # noqa: E402
from speech.whisper import shared_model  # noqa: E402
from speech.whisper_head import CMD_HEAD_FILE, WhisperHead  # noqa: E402

SR = 16000
WINDOWS = ("follow-up", "follow-up + 0.3 s", "wake phrase + follow-up",
           "wake phrase + follow-up + 0.3 s")


def windows(held: dict, follow: dict) -> dict[str, tuple[float, float]]:
    """The four stretches of the stream (seconds) the head is run on."""
    a, b = follow["start"], follow["start"] + follow["dur"]
    return dict(zip(WINDOWS, ((a, b), (a, b + 0.3), (held["start"], b),
                              (held["start"], b + 0.3))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", type=Path, help="a speech_bench.py --dump of --part all|multi")
    ap.add_argument("--split", choices=("tune", "test"), default="tune",
                    help="whose voices the dump holds (their order gives each item's audio)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "speech")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/speech_bench_cache"))
    ap.add_argument("--verbose", action="store_true", help="one line per item")
    a = ap.parse_args(argv)
    cs = load_commands(None)
    ids = [c for c in sorted(cs.commands) if c not in SINGLE_WORDS]
    voices = sb.VOICES_TUNE if a.split == "tune" else sb.VOICES_TEST
    noises = sb.load_noises(a.data, ap)
    a.cache.mkdir(parents=True, exist_ok=True)
    model, head = shared_model(), WhisperHead(CMD_HEAD_FILE)
    by = sb.read_multi_dump(a.dump)
    count: collections.Counter = collections.Counter()
    for (snr, voice, cmd), us in by.items():
        follow = [u for u in us if u.get("joined") and (u.get("whisper") or {}).get("cmd_probs")]
        if not follow or voice not in voices:
            continue
        held = [u for u in us if u["start"] < follow[0]["start"] and u["kind"] == "wake_only"]
        if not held:
            continue
        stream = sb.multi_item(cs, cmd, ids.index(cmd), voice, voices.index(voice), snr, noises,
                               a.cache)[0]
        key = "quiet" if snr is None else f"{snr:g} dB"
        line = {}
        for name, (t0, t1) in windows(held[-1], follow[0]).items():
            p = head(model.context_pooled(stream[int(t0 * SR):int(t1 * SR)])[1]).probs
            top = max(p, key=p.get)
            count[(key, name, "n")] += 1
            count[(key, name, "right")] += top == cmd
            count[(key, name, "right >= 0.6")] += top == cmd and p[top] >= 0.6
            count[(key, name, "other command >= 0.6")] += (top != cmd and top in cs.commands
                                                           and p[top] >= 0.6)
            line[name] = f"{top} {p[top]:.2f}"
        if a.verbose:
            acted = any(u["kind"] == "accept" and u["command"] == cmd for u in us)
            dumped = follow[0]["whisper"]["cmd_probs"].get(cmd, 0.0)
            print(f"{key} {voice} {cmd} {'acted on' if acted else 'MISSED'} "
                  f"(dumped {dumped:.2f}): {line}")
    for key in ("quiet", "20 dB", "10 dB", "5 dB", "0 dB"):
        for name in WINDOWS:
            if count[(key, name, "n")]:
                print(f"{key:6s} {name:32s} n {count[(key, name, 'n')]:3d}  first right "
                      f"{count[(key, name, 'right')]:3d}  right >= 0.6 "
                      f"{count[(key, name, 'right >= 0.6')]:3d}  another command >= 0.6 "
                      f"{count[(key, name, 'other command >= 0.6')]:2d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
