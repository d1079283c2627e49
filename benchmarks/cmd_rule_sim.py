"""Simulate rule M7 (the command head alone where Whisper's check heard no command), M7b
(where it heard the wake phrase alone), M7w (M7 where Whisper refused only with the wake
phrase this sure: each ``--wake-grid`` value with each ``--grid`` value of M7) or M8 (in an
utterance that follows a wake phrase said alone) on the ``--dump`` of ``speech_bench.py`` runs
made with them off, as docs/SPEECH.md "Rule M7", "Rule M8" and "Rule M7w" report.

Each dumped utterance that Whisper's check ran on carries the classifier's probabilities and
the command head's; ``decision.cmd_fuse`` (the pipeline's own function) is called again on
it with ``min_cmd_head_unheard`` set, and whatever it now acts on is counted against what
was said: multi-word commands gained and lost per SNR, wrong commands added, and any act in
the parts where every act is false (read speech, monologue, noise) or where a multi-word act
is (the real single words). Prints one line per value; asserts nothing.

    python benchmarks/speech_bench.py --part all --split tune --dump tune.jsonl
    python benchmarks/speech_bench.py --part talk --split tune --dump talk.jsonl
    python benchmarks/cmd_rule_sim.py tune.jsonl talk.jsonl [--rule m7b|m8] [--grid 0.6 0.7 0.8]
    python benchmarks/cmd_rule_sim.py tune.jsonl talk.jsonl --rule m7w --grid 0.8 --wake-grid 0.98
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
from speech.decision import Decision, DecisionThresholds, cmd_fuse  # noqa: E402
from speech.settings import SpeechSettings  # noqa: E402


RULES = {"m7": "min_cmd_head_unheard", "m7b": "min_cmd_head_wake_alone",
         "m8": "min_cmd_head_joined", "m7w": "min_cmd_head_unheard"}
# rule M7w (on since 2026-12-07: M7 at 0.8 with a wake-phrase floor) is in the shipped
# thresholds: m7 simulates M7 as it was, without the floor; m7b and m8 leave M7 off, as the
# dumps they were chosen on had it (on a dump made with M7w on its acts are accepted already,
# so nothing changes); m7w takes the floor from --wake-grid
HELD = {"m7": {"min_wake_head_unheard": None}, "m7b": {"min_cmd_head_unheard": None},
        "m8": {"min_cmd_head_unheard": None}, "m7w": {}}


def new_act(row: dict, commands, th: DecisionThresholds) -> str | None:
    """The command the rule would now act on for this utterance, or None."""
    w = row.get("whisper") or {}
    if row["kind"] == "accept" or not w.get("cmd_probs") or not w.get("clf_all"):
        return None
    d = Decision(row["kind"], row.get("command"), row.get("heard") or "", row.get("post"),
                 row.get("reason") or "", wake=bool(row.get("wake")), wake_prob=row.get("wp"))
    m = cmd_fuse(d, w["clf_all"], w["cmd_probs"], commands, addressed=bool(w.get("addressed")),
                 th=th, unconfirmed=w.get("kind") not in ("accept", "sure"),
                 whisper_kind=w.get("kind"), joined=bool(row.get("joined")),
                 speech_s=w.get("speech_s"))
    return m[0].command if m is not None and m[0].kind == "accept" else None


def simulate(rows: list[dict], commands, th: DecisionThresholds) -> dict:
    by: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in rows:  # one spoken command (or clip, or text) per key
        by[(r["part"], r.get("snr"), r.get("voice"), r.get("cmd"), r.get("file"))].append(r)
    gained, lost, wrong, elsewhere = (collections.Counter() for _ in range(4))
    examples = []
    for (part, snr, _, cid, _), us in by.items():
        new = [new_act(u, commands, th) for u in us]
        if not any(new):
            continue
        if part != "multi":  # every act here is false (a single word is never multi-word)
            elsewhere[part] += sum(1 for c in new if c)
            examples += [f"{part}: {c} ({(u.get('reason') or '')[:60]})"
                         for u, c in zip(us, new) if c]
            continue
        before = [u["command"] for u in us if u["kind"] == "accept"]
        after = [u["command"] if u["kind"] == "accept" else c for u, c in zip(us, new)
                 if u["kind"] == "accept" or c]
        key = "quiet" if snr is None else f"{snr:g} dB"
        gained[key] += before != [cid] and after == [cid]
        lost[key] += before == [cid] and after != [cid]
        wrong[key] += sum(c != cid for c in new if c)
    return {"gained": dict(gained), "lost": dict(lost), "wrong_added": dict(wrong),
            "acts_elsewhere": dict(elsewhere), "examples": examples[:5]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dumps", nargs="+", type=Path, help="speech_bench.py --dump files")
    ap.add_argument("--grid", nargs="+", type=float, default=[0.6, 0.7, 0.8])
    ap.add_argument("--rule", choices=sorted(RULES), default="m7")
    ap.add_argument("--wake-grid", nargs="+", type=float, default=[0.95, 0.98, 0.99],
                    help="--rule m7w: the values of min_wake_head_unheard")
    a = ap.parse_args(argv)
    rows = [json.loads(line) for f in a.dumps for line in f.read_text().splitlines() if line]
    s = SpeechSettings()
    commands = load_commands(s.commands_file or None)  # the shipped command file
    base = DecisionThresholds.from_settings(s)
    print(f"{len(rows)} utterances from {', '.join(str(f) for f in a.dumps)}")
    wakes = a.wake_grid if a.rule == "m7w" else [None]
    for v in a.grid:
        for w in wakes:
            extra = {**HELD[a.rule], **({} if w is None else {"min_wake_head_unheard": w})}
            r = simulate(rows, commands, dataclasses.replace(base, **{RULES[a.rule]: v}, **extra))
            name = "" if w is None else f" min_wake_head_unheard={w}"
            print(f"{RULES[a.rule]}={v}{name}: {json.dumps(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
