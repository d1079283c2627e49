"""What the wrong multi-word commands of the speech benchmark would do to a session.

The speech benchmark counts a command acted on but not said as wrong. What it costs
depends on the state the speaker was in: "record start" heard for "record stop" while
recording changes nothing, "hide nerve" heard for "show nerve" hides something. This
replays each wrong command of a ``speech_bench.py --part multi --dump FILE`` through the
assistant's own logic (``assistant.logic.reduce``), in the state in which what was said
makes sense (recording for "record stop", frozen for "unfreeze", the layer hidden for
"show <layer>", ...), with the opposite offer on and off (``offer_opposite``,
``logic.opposite_offer``), and sorts the outcomes:

* ``changed``: the session changed in a way not asked for (a layer, the recording, ...);
* ``answered``: a different question answered (quality for depth, ...), nothing changed;
* ``offered_said``: nothing changed, and the assistant offered exactly what was said
  ("already recording. stop recording? say yes or no"): one "yes" puts it right;
* ``asked``: a confirmation for a command not said (answered "no", nothing changes);
* ``acknowledged``: nothing changed; only acknowledged ("already frozen").

    python benchmarks/speech_bench.py --part multi --split test --dump /tmp/multi.jsonl
    python benchmarks/toggle_offer.py /tmp/multi.jsonl
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.logic import State, initial_state, reduce  # noqa: E402
from assistant.logic_settings import AssistantSettings  # noqa: E402
from assistant.messages import SpeechCommand  # noqa: E402

#: what the user sees change (not timers, logs or the last words heard)
VISIBLE = ("layers", "overlay_on", "frozen", "recording", "muted", "injecting", "block",
           "panel", "depth_hint")


def state_meant(said: str, settings: AssistantSettings) -> State:
    """The state in which saying ``said`` changes something (the initial one otherwise)."""
    s = initial_state(settings)
    rep = dataclasses.replace
    if said == "unfreeze":
        return rep(s, frozen=True)
    if said == "record_stop":
        return rep(s, recording=True)
    if said == "injection_stop":
        return rep(s, injecting=True, injection_start_s=0.0)
    if said == "unmute":
        return rep(s, muted=True)
    if said.startswith("show."):
        layer = said.split(".", 1)[1]
        names = list(s.layers) if layer == "all" else [layer]
        return rep(s, layers={**s.layers, **{n: False for n in names}})
    return s


def outcome(said: str, acted: str, settings: AssistantSettings) -> str:
    s0 = state_meant(said, settings)
    msg = SpeechCommand(command=acted, heard=acted, confidence=1.0, start_s=0.0, end_s=0.5)
    s1, _ = reduce(s0, msg, None, 1.0)
    if any(getattr(s0, f) != getattr(s1, f) for f in VISIBLE):
        return "changed"
    if s1.pending is not None:
        return "offered_said" if s1.pending.command == said else "asked"
    if acted in ("quality_score", "needle_depth", "where_target", "help", "repeat"):
        return "answered"
    return "acknowledged"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", type=Path, help="speech_bench.py --part multi --dump FILE")
    args = ap.parse_args(argv)
    pairs = []
    for line in args.dump.read_text().splitlines():
        row = json.loads(line)
        if row.get("part") == "multi" and row["kind"] == "accept" and row["command"] != row["cmd"]:
            pairs.append((row["snr"], row["cmd"], row["command"]))
    if not pairs:
        print(f"{args.dump}: no wrong multi-word commands (is it a --part multi dump?)")
        return 1
    out: dict = {"dump": str(args.dump), "wrong_commands": len(pairs)}
    for on in (False, True):
        settings = AssistantSettings(offer_opposite=on)
        counts = collections.Counter(outcome(said, acted, settings) for _, said, acted in pairs)
        out[f"offer_opposite={str(on).lower()}"] = dict(sorted(counts.items()))
    out["pairs"] = dict(collections.Counter(f"{s} -> {a}" for _, s, a in pairs).most_common())
    by_snr = collections.Counter("quiet" if snr is None else f"{snr:g} dB" for snr, _, _ in pairs)
    out["by_snr"] = dict(by_snr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
