"""REAL human recordings (../shared/data/speech, Speech Commands v0.02 test clips):
other words and background-only clips must not become commands. PocketSphinx is held
to this always listening (the hardest activation); the kws engine (the default) in its
default wake activation, and always listening on background-only clips (always
listening it takes about one other word in ten for a command: docs/SPEECH.md).
Accuracy is measured by benchmarks/speech_bench.py."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from speech.audio import chunks, read_wav
from speech.listener import CommandListener
from speech.settings import SpeechSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "speech_commands"


@pytest.mark.skipif(not DATA.is_dir(), reason="shared speech data not present")
@pytest.mark.parametrize("engine,activation,folder", [
    ("pocketsphinx", "always", "_unknown_"), ("pocketsphinx", "always", "_silence_"),
    ("kws", "wake", "_unknown_"), ("kws", "wake", "_silence_"),
    ("kws", "always", "_silence_")])
def test_real_non_commands_are_ignored(engine, activation, folder):
    base = CommandListener(SpeechSettings(engine=engine, activation=activation))
    files = sorted((DATA / folder).glob("*.wav"))
    assert len(files) >= 10
    fired = []
    for f in files:
        x, _ = read_wav(f)
        # the clip as a stream: its own background before and after (a quiet room)
        q = x[np.argmin([np.abs(x[i:i + 1600]).mean() for i in range(0, len(x) - 1600, 1600)])
              * 1600:][:1600]
        stream = np.concatenate([np.tile(q, 5), x, np.tile(q, 6)])
        base.engine.reset()
        lis = CommandListener(replace(base.settings), commands=base.commands, engine=base.engine)
        out = []
        for c, t in chunks(stream, 50):
            out += lis.feed(c, t)
        out += lis.flush()
        fired += [(f.name, h.heard) for h in out]
    assert fired == []
