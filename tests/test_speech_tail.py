"""Rule T (speech/decision.py not_speech): an utterance in which the neural voice model
heard no speech is not decoded, nor the tail of a word that the endpointer cut off (the
burst of "up" after its closure), which the classifier otherwise takes for a second
command. Real audio through the real listener."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from speech.audio import chunks, read_wav
from speech.decision import DecisionThresholds, not_speech
from speech.listener import CommandListener
from speech.settings import SpeechSettings
from speech.synth import espeak, with_silence
from speech.vad import neural_vad_path

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "speech_commands"
needs_vad = pytest.mark.skipif(neural_vad_path() is None, reason="Silero VAD not installed")
OFF = dict(min_voice_prob=None, tail_voice_prob=None)
DROPPED = ("the voice model heard no speech", "the tail of the previous utterance")


def listen(x: np.ndarray, **over) -> tuple[list[str], list]:
    s = replace(SpeechSettings(engine="kws"), activation="always", **over)
    lis = CommandListener(s)
    out = []
    for c, t in chunks(x, 20):
        out += lis.feed(c, t)
    return [h.command for h in out + lis.flush()], list(lis.log)


def test_not_speech_rules():
    th = DecisionThresholds(min_voice_prob=0.1, tail_voice_prob=0.2, tail_gap_ms=600)
    assert not_speech(None, 0.1, th) is None  # no voice model: nothing is dropped
    assert not_speech(0.05, None, th).startswith("the voice model heard no speech (0.05)")
    assert not_speech(0.15, 0.3, th).startswith("the tail of the previous utterance (300 ms")
    assert not_speech(0.15, 0.7, th) is None  # too long after the last one to be its tail
    assert not_speech(0.15, None, th) is None  # nothing before it
    assert not_speech(0.25, 0.1, th) is None  # the voice model heard some speech
    off = DecisionThresholds(min_voice_prob=None, tail_voice_prob=None)
    assert not_speech(0.0, 0.1, off) is None


@needs_vad
def test_a_burst_just_after_a_command_is_its_tail_not_a_new_utterance():
    """Synthetic "up", then 250 ms later an 80 ms burst of noise: "up" is acted on once,
    and the burst is logged as the tail of the utterance before, without being decoded
    (with the rule off the classifier decides on it: here it takes it for the wake
    phrase)."""
    rng = np.random.default_rng(1)
    burst = (rng.normal(0, 1500, 1280) * np.exp(-np.arange(1280) / 400)).astype(np.int16)
    x = with_silence(np.concatenate([espeak("up"), np.zeros(4000, np.int16), burst]))
    for over in ({}, OFF):
        cmds, log = listen(x, **over)
        assert cmds == ["up"]
        assert len(log) == 2 and log[0].decision.command == "up"
        dropped = log[1].decision.reason.startswith(DROPPED)
        assert dropped == (over == {}), log[1].decision.reason
    assert log[1].voice_prob < 0.2


@needs_vad
@pytest.mark.skipif(not REAL.is_dir(), reason="shared speech data not present")
def test_a_real_up_cut_in_two_is_one_command():
    """A REAL speaker's "up" that the endpointer cuts before the burst of its "p": without
    the rule the burst alone is taken for "off"; with it, "up" is the only command."""
    x, _ = read_wav(REAL / "up" / "0cb74144_nohash_1.wav")
    x = np.concatenate([np.zeros(8000, np.int16), x, np.zeros(9600, np.int16)])
    assert listen(x, **OFF)[0] == ["up", "off"]
    cmds, log = listen(x)
    assert cmds == ["up"]
    assert log[-1].decision.reason.startswith(DROPPED) and log[-1].voice_prob < 0.1


@pytest.mark.parametrize("over, named", [
    (dict(min_voice_prob=1.5), "speech.min_voice_prob is a probability"),
    (dict(tail_voice_prob=-0.1), "speech.tail_voice_prob is a probability"),
    (dict(tail_gap_ms=-5), "speech.tail_gap_ms must be >= 0"),
])
def test_bad_settings_are_named(over, named):
    with pytest.raises(ValueError, match=named):
        CommandListener(replace(SpeechSettings(engine="kws"), **over))
