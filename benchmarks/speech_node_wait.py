"""How long live audio waits in the speech node before the recognizer gets it.

    .venv/bin/python benchmarks/speech_node_wait.py [--seconds 20] [--data ../shared/data/speech]

The speech benchmark (speech_bench.py) times a command from the end of speech as if each
audio block were handed to the recognizer the moment it has been spoken. In the speech
node the block is put on a queue by the microphone's thread (here: the WAV pacer, which
plays a file in real time the same way) and taken off by the node's loop, which also
waits on the bus. This starts a real bus (the proxy) and a real speech node playing REAL
Speech Commands words (with their room tone between them) as its live input, and records,
for every block, the time from its arrival on the queue to the start of its recognition,
with the node's old loop (a bus wait of up to 20 ms between looks at the queue) and the
current one (the block wakes the loop: ``BusClient.wake``). Also the CPU time of the
process (the node and the proxy) per second of audio. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from assistant.config import Settings  # noqa: E402
from speech.audio import read_wav, room_tone, strip_padding, write_wav  # noqa: E402
from speech.node import SpeechNode  # noqa: E402
from speech_live_latency import live_bus, wav_node  # noqa: E402


def words_stream(data: Path, seconds: float) -> np.ndarray:
    """REAL command words, each with 0.6 s of its own room tone after it, to ``seconds``."""
    files = sorted(glob.glob(str(data / "speech_commands" / "*" / "*.wav")))
    if not files:
        raise SystemExit(f"--data {data}: no speech_commands/*/*.wav")
    parts, n = [], 0
    for f in files[:: max(1, len(files) // 40)]:
        x = strip_padding(read_wav(f)[0])
        parts += [x, room_tone(x, 9600)]
        n += len(x) + 9600
        if n >= seconds * 16000:
            break
    return np.concatenate(parts)


class Timed(SpeechNode):
    """The speech node, noting when each block arrives and when its recognition starts;
    ``OLD_LOOP``: as before 2026-12-06, the block queued without waking the loop."""

    OLD_LOOP = False

    def setup(self) -> None:
        self.pushed: dict[float, float] = {}
        self.waits: list[float] = []
        super().setup()

    def _push(self, samples, t) -> None:
        self.pushed[t] = time.perf_counter()
        if self.OLD_LOOP:
            self.audio_q.put_nowait((samples, t))
        else:
            super()._push(samples, t)

    def _feed(self, samples, start_s) -> None:
        t0 = self.pushed.pop(start_s, None)
        if t0 is not None:
            self.waits.append(1000 * (time.perf_counter() - t0))
        super()._feed(samples, start_s)


def run(old_loop: bool, wav: Path, seconds: float) -> dict:
    node_cls = type("TimedNode", (Timed,), {"OLD_LOOP": old_loop})
    with live_bus() as ep, wav_node(node_cls, ep, wav) as node:
        deadline = time.monotonic() + seconds + 60
        while not hasattr(node, "pacer") or node.pacer is None:  # setup loads the recognizer
            if time.monotonic() > deadline:
                raise SystemExit("the speech node did not start")
            time.sleep(0.05)
        c0 = time.process_time()
        node.pacer.join(seconds + 30)
        cpu = time.process_time() - c0
    w = np.array(node.waits)
    return {"loop": "old (blocks wait out the bus wait, up to 20 ms)" if old_loop
            else "current (a block wakes the loop)",
            "blocks": len(w), "wait_ms_p50": round(float(np.percentile(w, 50)), 2),
            "wait_ms_p95": round(float(np.percentile(w, 95)), 2),
            "wait_ms_max": round(float(w.max()), 1),
            "cpu_s_per_audio_s": round(cpu / seconds, 3), "commands": node.heard_count}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "speech")
    a = ap.parse_args(argv)
    x = words_stream(a.data, a.seconds)
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "words.wav"
        write_wav(wav, x)
        seconds = len(x) / 16000
        out = [run(old, wav, seconds) for old in (True, False)]
    print(json.dumps({"audio_s": round(seconds, 1), "block_ms": Settings().speech.block_ms,
                      "runs": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
