"""Simulate rule J3 (after a wake phrase said alone, where nothing was acted on, the command
head on the wake phrase and the follow-up together as the last resort) from two
``speech_bench.py --dump`` runs of the same items: one of the shipped defaults (J3 off) and
one with rule J2 on (``--set cmd_head_joined_wake=true``), whose dumped ``cmd_probs`` for a
follow-up are the head's on exactly the window J3 reads. As docs/SPEECH.md "Rules HJ and J3"
reports.

For every follow-up (``joined``) of the shipped run on which nothing was accepted and the
head was asked, ``decision.joined_window_act`` (the pipeline's own function) is called with
the J2 run's probabilities of the same utterance, at each ``--grid`` value; an act is counted
per SNR as a gain (the command said, where the item had no right act), a double (the command
said, acted on already) or wrong, and any act in read speech (``--part talk`` dumps) as
false. Prints one line per value; asserts nothing. Later utterances of an item are not
re-decided (an act could change what follows it), so the figures are an estimate.

    python benchmarks/speech_bench.py --part multi --split tune --snrs 10,5 --dump ship.jsonl
    python benchmarks/speech_bench.py --part multi --split tune --snrs 10,5 --dump j2.jsonl \\
        --set cmd_head_joined_wake=true
    python benchmarks/speech_bench.py --part talk --split tune --dump talk.jsonl
    python benchmarks/speech_bench.py --part talk --split tune --dump talk_j2.jsonl \\
        --set cmd_head_joined_wake=true
    python benchmarks/joined_window_sim.py ship.jsonl j2.jsonl --talk talk.jsonl talk_j2.jsonl
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speech.commands import load_commands  # noqa: E402
from speech.decision import Decision, DecisionThresholds, joined_window_act  # noqa: E402


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pairs(ship: list[dict], j2: list[dict]):
    """(shipped record, J2 record) of the same utterance: the two runs cut the stream alike
    (J2 changes no endpointing), so the records line up one to one."""
    if len(ship) != len(j2) or any(
            abs(a["start"] - b["start"]) > 1e-6 or a.get("voice") != b.get("voice")
            or a.get("cmd") != b.get("cmd") for a, b in zip(ship, j2)):
        raise SystemExit("the two dumps do not hold the same utterances in the same order")
    return zip(ship, j2)


def acts(ship: list[dict], j2: list[dict], t: float, commands) -> list[tuple[dict, str]]:
    """(shipped record, command) for each follow-up rule J3 at ``t`` acts on."""
    th = dataclasses.replace(DecisionThresholds(), min_cmd_head_joined_window=t)
    out = []
    for a, b in pairs(ship, j2):
        probs = (b.get("whisper") or {}).get("cmd_probs")
        if not a.get("joined") or a["kind"] == "accept" or not probs:
            continue
        d = Decision(a["kind"], command=a.get("command"), reason=a.get("reason", ""),
                     wake=bool(a.get("wake")), joined=True)
        got = joined_window_act(d, probs, commands, speech_s=a["dur"], th=th)
        if got is not None:
            out.append((a, got.command))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ship", help="--part multi|all dump, the shipped defaults")
    ap.add_argument("j2", help="the same run with cmd_head_joined_wake=true")
    ap.add_argument("--talk", nargs=2, metavar=("SHIP", "J2"), default=None,
                    help="--part talk dumps, the same two ways")
    ap.add_argument("--grid", type=float, nargs="+", default=[0.7, 0.8, 0.9])
    args = ap.parse_args(argv)
    commands = load_commands()
    ship = [r for r in read(args.ship) if r.get("part") == "multi"]
    j2 = [r for r in read(args.j2) if r.get("part") == "multi"]
    talk = ((read(args.talk[0]), read(args.talk[1])) if args.talk else None)
    right = collections.defaultdict(set)  # snr -> items with a right act already
    for r in ship:
        if r["kind"] == "accept" and r.get("command") == r.get("cmd"):
            right[r.get("snr")].add((r.get("voice"), r.get("cmd")))
    for t in args.grid:
        row: dict = collections.defaultdict(lambda: collections.Counter())
        seen = set()
        for a, c in acts(ship, j2, t, commands):
            snr, item = a.get("snr"), (a.get("voice"), a.get("cmd"))
            kind = ("wrong" if c != a.get("cmd") else
                    "double" if item in right[snr] or (snr, item) in seen else "gain")
            seen.add((snr, item))
            row[str(snr)][kind] += 1
        line = {"value": t, "multi": {k: dict(v) for k, v in sorted(row.items())}}
        if talk is not None:
            line["read_speech_acts"] = [c for _, c in acts(*talk, t, commands)]
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
