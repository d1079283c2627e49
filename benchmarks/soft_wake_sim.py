"""Rule J4's choice, simulated from a benchmark dump (docs/SPEECH.md "Rule J4"; asserts
nothing, changes nothing).

A soft wake phrase is an utterance decided "not a command" that the command head took for
the wake phrase (``decision.soft_wake`` on the dumped readings). For every multi-word item
of a ``speech_bench.py --part multi --dump`` (at 10 and 5 dB) in which one is followed,
within the wake phrase's hold (1.5 s), by an utterance on which nothing was accepted (a "reject",
on which J4 acts, or a wake phrase said alone, on which the rule as first written acted
too), the item's stream is rebuilt as the benchmark builds it (``multi_item``) and the shipped command
head reads it from the soft wake phrase's detected start to the next utterance's detected end
(the listener reads from the first sample kept to the last: pre-roll and hangover around
those). Prints each such item and, for each bar of ``--grid``, how many missed items the
window's first would have got right and how many commands it would have acted on wrongly
(a wrong command, or a second act in an item already right), as shipped and as first
written. ``--talk`` dumps (``--part
talk``): how many soft wake phrases the read speech held (each one a chance of a false act).

    python benchmarks/speech_bench.py --part multi --split tune --snrs 10,5 --dump tune.jsonl --set min_soft_wake_head=none
    python benchmarks/soft_wake_sim.py tune.jsonl --split tune --talk tune_talk.jsonl
    python benchmarks/soft_wake_sim.py dev.jsonl --voices en-gb-scotland+f1,en-029+f3,en-us-nyc+m7,en-gb-x-rp+m2,en-us+edward2,en-gb+klatt4
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import speech_bench as sb  # noqa: E402
from speech.commands import load_commands  # noqa: E402
from speech.decision import (SINGLE_WORDS, Decision, DecisionThresholds, soft_wake,  # noqa: E402
                             soft_window_act)

SR = 16000
GAP_S = 1.5  # speech.wake_join_gap_ms


def is_soft(row: dict, th: DecisionThresholds) -> bool:
    """Whether a dumped utterance would be held as a soft wake phrase (rule J4)."""
    w = row.get("whisper") or {}
    return soft_wake(Decision(row["kind"]), w.get("cmd_probs"), w.get("clf_all"),
                     speech_s=row["dur"], th=th)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", type=Path, help="a speech_bench.py --dump of --part multi")
    ap.add_argument("--split", choices=("tune", "test"), default="tune")
    ap.add_argument("--voices", default="", help="the dump's voices, in the order benchmarked "
                                                 "(instead of --split)")
    ap.add_argument("--grid", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    ap.add_argument("--talk", type=Path, nargs="*", default=[], help="--part talk dumps")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "speech")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/speech_bench_cache"))
    a = ap.parse_args(argv)
    from speech.whisper import shared_model
    from speech.whisper_head import CMD_HEAD_FILE, WhisperHead
    th = DecisionThresholds()
    cs = load_commands(None)
    ids = [c for c in sorted(cs.commands) if c not in SINGLE_WORDS]
    voices = a.voices.split(",") if a.voices else (
        sb.VOICES_TUNE if a.split == "tune" else sb.VOICES_TEST)
    noises = sb.load_noises(a.data, ap)
    a.cache.mkdir(parents=True, exist_ok=True)
    model, head = shared_model(), WhisperHead(CMD_HEAD_FILE)
    by = sb.read_multi_dump(a.dump, snrs=(10.0, 5.0))
    count: collections.Counter = collections.Counter()
    for (snr, voice, cmd), us in by.items():
        if voice not in voices:
            continue
        right = [u["command"] for u in us if u["kind"] == "accept"] == [cmd]
        for u, v in zip(us, us[1:]):
            if (not is_soft(u, th) or v["kind"] == "accept"
                    or v["start"] - (u["start"] + u["dur"]) > GAP_S):
                continue
            stream = sb.multi_item(cs, cmd, ids.index(cmd), voice, voices.index(voice), snr,
                                   noises, a.cache)[0]
            t0, t1 = u["start"], v["start"] + v["dur"]
            p = head(model.context_pooled(stream[int(t0 * SR):int(t1 * SR)])[1]).probs
            top = max(p, key=p.get)
            print(f"{snr:g} dB {voice} {cmd} {'right already' if right else 'missed'}; next "
                  f"{v['kind']} {v['dur']:.2f} s; window: {top} {p[top]:.2f}")
            for bar in a.grid:
                bth = DecisionThresholds(min_cmd_head_soft_window=bar)
                for how, kind in (("shipped", v["kind"]), ("first written", "reject")):
                    d = soft_window_act(Decision(kind), p, cs, th=bth)
                    if d is not None:
                        good = d.command == cmd and not right
                        count[(how, bar, f"{snr:g} dB", "gained" if good else "wrong")] += 1
    for how in ("shipped", "first written"):
        for bar in a.grid:
            print(f"{how}, bar {bar}: " + ", ".join(
                f"{k} {count[(how, bar, k, 'gained')]} gained / "
                f"{count[(how, bar, k, 'wrong')]} wrong" for k in ("10 dB", "5 dB")))
    for f in a.talk:
        n = 0
        for line in f.read_text().splitlines():
            r = json.loads(line)
            n += r.get("part") == "talk" and is_soft(r, th)
        print(f"{f}: {n} soft wake phrases in the read speech")
    return 0


if __name__ == "__main__":
    sys.exit(main())
