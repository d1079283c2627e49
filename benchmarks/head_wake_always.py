"""Single words said after the wake phrase while always listening ("assistant, yes"), with
the single-word head's veto and the fusion of the head with the classifier (rule F) off and
on: both ask the head about single words, and the head was trained on bare words, so this
checks that they do not refuse them when the wake phrase comes first. SYNTHETIC eSpeak NG
voices (no real recordings of the wake phrase exist here)::

    python benchmarks/head_wake_always.py
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.audio import chunks  # noqa: E402
from speech.commands import SINGLE_WORDS  # noqa: E402
from speech.listener import CommandListener  # noqa: E402
from speech.settings import SpeechSettings  # noqa: E402
from speech.synth import espeak, with_silence  # noqa: E402

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland+m3", "en-029+m5", "en-gb-x-rp+f2"]


def main() -> int:
    off = dict(min_fused_prob=None, min_fused_veto=None)
    for name, over in (("head veto and fusion off", dict(off, min_head_veto=None)),
                       ("head veto on, fusion off", off), ("as shipped", {})):
        s = replace(SpeechSettings(engine="kws"), activation="always", **over)
        right = n = 0
        for v in VOICES:
            for w in SINGLE_WORDS:
                x = with_silence(espeak(f"assistant, {w}", v), 0.5, 0.8)
                lis = CommandListener(s)
                out = [h for c, t in chunks(x, 20) for h in lis.feed(c, t)] + lis.flush()
                n += 1
                right += [h.command for h in out] == [w]
        print(f"{name}: {right} of {n} right", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
