"""End of speech to command message, through the live speech node and the bus.

    .venv/bin/python benchmarks/speech_live_latency.py [--per-voice 10] [--snrs quiet,20]
        [--background per-command|steady] [--model-only]

speech_bench.py times a command on the stream's clock with a model of a live listener
(each audio block handed over the moment it has been spoken). This measures the product
itself: a real bus (the proxy), a real speech node whose input is a WAV played in real
time in ``speech.block_ms`` blocks (as a microphone delivers them), and a subscriber
process-side receiving its SpeechCommand messages. One stream per condition: SYNTHETIC
test voices of the benchmark saying "assistant, <phrase>" (multi-word commands; each with
0.6 s before and 0.8 s after it), mixed with the REAL noise (quiet = 40 dB down, or the
given SNR). Latency = arrival of the SpeechCommand minus the wall time at which the end
of the speech was played. The same stream through the benchmark's model
(``speech.listener.feed_live``) is timed too, for comparison. Runs in real time (about
3.5 s per command). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import speech_bench as sb  # noqa: E402
from assistant import messages as m  # noqa: E402
from assistant.bus import BusClient, Endpoints, Proxy  # noqa: E402
from assistant.config import Settings  # noqa: E402
from speech.audio import (active_power, noise_piece, read_wav, speech_end_s,  # noqa: E402
                          write_wav)
from speech.commands import SINGLE_WORDS, load_commands  # noqa: E402
from speech.listen_cli import add_pace_pauses_option  # noqa: E402
from speech.listener import CommandListener, feed_live  # noqa: E402
from speech.node import SpeechNode  # noqa: E402

SR = 16000


def build(per_voice: int, snr: float | None, noises, cache: Path,
          background: str = "per-command"):
    """One stream of commands; [(command id, end of speech in media seconds)]. With
    ``background`` "per-command" each command brings its own noise, as the per-command
    benchmark mixes it (another recording and level every 3.4 s); "steady": one room (see
    :func:`steady`)."""
    cs = load_commands()
    ids = [c for c in sorted(cs.commands) if c not in SINGLE_WORDS]
    parts, clean, items, t = [], [], [], 0.0
    for vi, voice in enumerate(sb.VOICES_TEST):
        for j in range(per_voice):
            ci = (vi * 7 + j * 5) % len(ids)  # spread over the command list
            # as the benchmark makes it, one at a time: 0.6 s before, 0.8 s after
            stream, x, lead, _ = sb.multi_item(cs, ids[ci], ci, voice, vi, snr, noises, cache)
            parts.append(stream)
            clean.append((x, lead, len(stream)))
            items.append((ids[ci], t + lead / SR + speech_end_s(x)))
            t += len(stream) / SR
    if background == "steady":
        return steady(clean, snr, noises), items
    return np.concatenate(parts), items


def steady(clean, snr: float | None, noises) -> np.ndarray:
    """The same commands at the same times in a steady background: the noise recordings in
    turn, each for an equal share of the commands and continuous through it, at one level;
    every command scaled to ``snr`` over that level (None: quiet, 40 dB)."""
    snr = sb.QUIET_SNR_DB if snr is None else snr
    ref = float(np.median([active_power(x) for x, _, _ in clean]))
    per = -(-len(clean) // len(noises))
    out = []
    for f, noise in enumerate(noises):
        share = clean[f * per:(f + 1) * per]
        if not share:
            break
        nz = noise_piece([noise], sum(n for _, _, n in share), seed=f)
        nz *= np.sqrt(ref / 10 ** (snr / 10) / (float((nz ** 2).mean()) + 1e-9))
        pos = 0
        for x, lead, n in share:
            seg = nz[pos:pos + n].copy()
            seg[lead:lead + len(x)] += np.sqrt(ref / active_power(x)) * x.astype(np.float64)
            out.append(seg)
            pos += n
    y = np.concatenate(out)
    peak = float(np.abs(y).max())
    if peak > 32000:  # in range; the SNR unchanged
        y *= 32000 / peak
    return np.round(y).astype(np.int16)


@contextmanager
def live_bus():
    """A real bus (the proxy) on ipc endpoints in a temporary folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="usra-live-") as d:
        ep = Endpoints(pub=f"ipc://{d}/pub", sub=f"ipc://{d}/sub")
        proxy = Proxy(ep).start()
        try:
            yield ep
        finally:
            proxy.stop()


@contextmanager
def wav_node(node_cls, ep: Endpoints, wav: Path, over: dict | None = None):
    """A speech node of ``node_cls`` on the bus at ``ep``, playing ``wav`` in real time as
    its live input (speech settings ``over`` changed), run in its own thread; stopped after."""
    base = Settings()
    settings = replace(base, speech=replace(base.speech, input=str(wav), **(over or {})))
    node = node_cls(settings, ep)
    th = threading.Thread(target=node.run, daemon=True)
    th.start()
    try:
        yield node
    finally:
        node._stop.set()
        th.join(10)


class LiveNode(SpeechNode):
    """The speech node, noting the wall time at which its WAV input started playing."""

    def _pace_wav(self, samples) -> None:
        self.t_play = time.monotonic()  # the pacer's own start follows within microseconds
        super()._pace_wav(samples)


def match(items, got) -> list[float]:
    """Latency (ms) of each item whose own command came first within 2 s of its end."""
    lat = []
    for cid, end in items:
        hits = [(t, c) for t, c in got if end - 0.5 <= t <= end + 2.0]
        if hits and hits[0][1] == cid:
            lat.append(hits[0][0] - end)
    return lat


def live(stream: np.ndarray, items, wav: Path, over: dict) -> tuple[list[float], int]:
    write_wav(wav, stream)
    with live_bus() as ep:
        sub = BusClient(ep, "lab", ("speech_cmd", "speech_unclear"))
        probe = BusClient(ep, "probe", ())
        deadline = time.monotonic() + 10
        while True:  # the subscription is live once a probe message comes through
            probe.publish(m.SpeechCommand(command="probe", heard="", confidence=0, start_s=0,
                                          end_s=0))
            if sub.recv(50) is not None:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the bus did not come up")
        sub.drain()
        got, seen = [], set()
        end_wall = None
        with wav_node(LiveNode, ep, wav, over) as node:
            while True:
                r = sub.recv(100)
                now = time.monotonic()
                if r is not None:
                    h, msg = r
                    if h.msg_id not in seen and isinstance(msg, (m.SpeechCommand,
                                                                 m.SpeechUnclear)):
                        seen.add(h.msg_id)
                        sub.publish(m.Ack(to=h.source.split(":")[0]), parent_id=h.msg_id)
                        if isinstance(msg, m.SpeechCommand):
                            got.append((now - node.t_play, msg.command))
                pacer = getattr(node, "pacer", None)
                if pacer is not None and not pacer.is_alive() and end_wall is None:
                    end_wall = now
                if end_wall is not None and now - end_wall > 2.0:
                    break
        for c in (sub, probe):
            c.close()
    return [1000 * x for x in match(items, got)], len(got)


def modelled(stream: np.ndarray, items, chunk_ms: int, over: dict,
             pace_pauses: bool = False) -> list[float]:
    s = replace(Settings().speech, **over)
    lis = CommandListener(s)
    got = [(emitted, h.command) for h, emitted in feed_live(lis, stream, chunk_ms,
                                                            pace_pauses)]
    return [1000 * x for x in match(items, got)]


def summary(v: list[float], n: int) -> dict:
    if not v:
        return {"right": 0, "of": n}
    return {"right": len(v), "of": n, "p50": round(float(np.percentile(v, 50)), 1),
            "p95": round(float(np.percentile(v, 95)), 1), "max": round(max(v), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-voice", type=int, default=10, help="commands per test voice")
    ap.add_argument("--snrs", default="quiet,20")
    ap.add_argument("--data", type=Path, default=sb.DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/speech_bench_cache"))
    ap.add_argument("--set", action="append", default=[],
                    help="override a speech setting, e.g. --set vad_neural_reset_ms=3000")
    ap.add_argument("--background", choices=("per-command", "steady"), default="per-command",
                    help="per-command: each command with its own noise recording and level, "
                         "as the per-command benchmark; steady: one room, the recordings in "
                         "turn at one level")
    add_pace_pauses_option(ap)
    ap.add_argument("--model-only", action="store_true",
                    help="only the benchmark's model of the stream (no real-time node run)")
    a = ap.parse_args(argv)
    over = sb.parse_sets(a.set)
    noises = [read_wav(f)[0].astype(np.float64)
              for f in sorted(glob.glob(str(a.data / "noise" / "*.wav")))]
    if not noises:
        ap.error(f"--data {a.data}: no noise recordings in {a.data / 'noise'}")
    a.cache.mkdir(parents=True, exist_ok=True)
    block = Settings().speech.block_ms
    out, pooled_live, pooled_model, n_all = {}, [], [], 0
    with tempfile.TemporaryDirectory() as d:
        for cond in [c for c in a.snrs.split(",") if c]:
            snr = None if cond == "quiet" else float(cond)
            stream, items = build(a.per_voice, snr, noises, a.cache, a.background)
            lv, n_msgs = ([], 0) if a.model_only else live(stream, items,
                                                           Path(d) / f"{cond}.wav", over)
            md = modelled(stream, items, block, over, a.pace_pauses)
            pooled_live += lv
            pooled_model += md
            n_all += len(items)
            out[cond] = {"live_node": summary(lv, len(items)), "commands_received": n_msgs,
                         "benchmark_model": summary(md, len(items))}
    out["pooled"] = {"live_node": summary(pooled_live, n_all),
                     "benchmark_model": summary(pooled_model, n_all)}
    print(json.dumps({"block_ms": block, "data": "SYNTHETIC test voices, REAL noise",
                      "background": a.background, "model_paces_pauses": a.pace_pauses,
                      "settings_overrides": over, **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
