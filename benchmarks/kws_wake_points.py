"""Wake-phrase operating points of the kws engine, from benchmark dumps: what a stricter
``min_kws_wake`` would cost in commands heard and save in false commands.

    .venv/bin/python benchmarks/speech_bench.py --part all --split test --dump all.jsonl
    .venv/bin/python benchmarks/speech_bench.py --part talk --split test --dump talk.jsonl
    .venv/bin/python benchmarks/kws_wake_points.py all.jsonl talk.jsonl [--w 0.35,0.5,0.7]

The dumps hold every utterance's decision at the shipped thresholds, with the wake
phrase's probability (``wp``) and whether a wake phrase said alone came just before
(``joined``, with that utterance's probability in the entry before). Raising the wake
threshold can only take wake evidence away, so a command accepted at the shipped
``min_kws_wake`` stays accepted at ``w`` when its evidence (``wp``, or the joined wake
phrase's probability) is at least ``w``; nothing rejected becomes accepted. (Not modelled:
a command no longer accepted moves the start of the next wake search back; a
second-order effect, checked by re-running the benchmark with ``--set min_kws_wake=W``.)

Printed per threshold, for the wake-activated parts only (real single words and noise
are heard with activation "always" and do not depend on it): SYNTHETIC multi-word
commands right per SNR, false commands in the SYNTHETIC monologue and in the hours of
read speech, and how often the wake phrase is found in that talk at all (utterances with
``wp >= w`` per hour: the wake detector's own false-alarm rate, far more events than the
false commands, so a steadier figure). Decision support research tool, not for clinical use.
"""
from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path


def load(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        with open(p) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def evidence(e: dict, prev: dict | None) -> float:
    """The wake evidence an accepted command had: its own wake probability, or that of a
    wake phrase said alone just before it."""
    wp = e.get("wp") or 0.0
    if e.get("joined") and prev is not None and prev.get("kind") == "wake_only":
        wp = max(wp, prev.get("conf") or 0.0)
    return wp


def accepted_at(entries: list[dict], w: float) -> list[str]:
    """Commands accepted from one stream's entries at wake threshold ``w``."""
    got = []
    for i, e in enumerate(entries):
        if e.get("kind") == "accept" and evidence(e, entries[i - 1] if i else None) >= w:
            got.append(e["command"])
    return got


def groups(dump: list[dict], part: str, key) -> "OrderedDict[tuple, list[dict]]":
    g: OrderedDict[tuple, list[dict]] = OrderedDict()
    for e in dump:
        if e.get("part") == part:
            g.setdefault(key(e), []).append(e)
    return g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dumps", nargs="+", type=Path)
    ap.add_argument("--w", default="0.35,0.45,0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--talk-hours", type=float, default=None,
                    help="hours of talk in the dump (default: from the utterance times)")
    args = ap.parse_args(argv)
    dump = load(args.dumps)
    if not any("wp" in e for e in dump):
        raise SystemExit("no wake probabilities in these dumps: make them with the kws engine "
                         "and this version of benchmarks/speech_bench.py")
    ws = [float(x) for x in args.w.split(",")]
    multi = groups(dump, "multi", lambda e: (e["snr"], e["voice"], e["cmd"]))
    mono = [e for e in dump if e.get("part") == "monologue" and e.get("act") == "wake"]
    talk = [e for e in dump if e.get("part") == "talk"]
    hours = args.talk_hours or (max((e["start"] + e["dur"] for e in talk), default=0) / 3600)
    snrs = sorted({k[0] for k in multi}, key=lambda s: -1e9 if s is None else -s)
    rows = []
    for w in ws:
        row = {"min_kws_wake": w}
        for snr in snrs:
            items = [(k, v) for k, v in multi.items() if k[0] == snr]
            ok = sum(accepted_at(v, w) == [k[2]] for k, v in items)
            row["multi " + ("quiet" if snr is None else f"{snr:g} dB")] = (
                f"{100 * ok / len(items):.1f} % ({ok}/{len(items)})")
        if mono:
            row["monologue false"] = len(accepted_at(mono, w))
        if talk:
            fc = accepted_at(talk, w)
            row["talk false commands"] = f"{len(fc)} ({len(fc) / hours:.2f}/h)"
            found = sum((e.get("wp") or 0) >= w or
                        (e.get("kind") == "wake_only" and (e.get("conf") or 0) >= w)
                        for e in talk)
            row["talk wake found /h"] = round(found / hours, 1)
        rows.append(row)
    print(f"talk hours {hours:.2f}, multi items {len(multi)}, monologue utterances {len(mono)}")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
