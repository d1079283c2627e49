"""Real synthetic speech (eSpeak NG) through the real recognizer (the default engine, kws)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from speech.audio import chunks
from speech.listener import CommandListener
from speech.settings import SpeechSettings, TTSSettings
from speech.synth import espeak, with_silence


@pytest.fixture(scope="module")
def base():
    """One recognizer reused (engine creation is the slow part)."""
    return CommandListener(SpeechSettings())


def listener(base, **kw):
    base.engine.reset()  # a fresh stream: no channel estimate carried from another test
    return CommandListener(replace(base.settings, **kw), commands=base.commands,
                           engine=base.engine)


def run(lis, x, chunk_ms=50, start_s=0.0):
    out = []
    for c, t in chunks(x, chunk_ms, start_s):
        out += lis.feed(c, t)
    return out + lis.flush()


def test_wake_phrase_command_is_recognised(base):
    x = with_silence(espeak("assistant, show fascia"))
    heard = run(listener(base), x)
    assert [h.command for h in heard] == ["show.fascia"]
    h = heard[0]
    assert h.heard.startswith("assistant") and "fascia" in h.heard
    assert 0.3 < h.start_s < h.end_s < len(x) / 16000
    assert 0.0 < h.confidence <= 1.0 and not h.needs_confirmation


def test_non_command_sentence_is_ignored(base):
    x = with_silence(espeak("the patient says he feels a little cold, can we get another "
                            "blanket please"))
    assert run(listener(base, activation="always"), x) == []
    assert run(listener(base), x) == []


def test_bare_command_needs_wake_phrase_unless_always(base):
    x = with_silence(espeak("quality score"))
    assert run(listener(base), x) == []
    assert [h.command for h in run(listener(base, activation="always"), x)] == ["quality_score"]


def test_command_needing_confirmation_is_flagged_and_yes_accepted_as_reply(base):
    lis = listener(base)
    x = with_silence(espeak("assistant, stop recording"))
    heard = run(lis, x)
    assert [(h.command, h.needs_confirmation) for h in heard] == [("record_stop", True)]
    # the assistant asks "are you sure?": a bare "yes" counts only while a reply is expected
    y = with_silence(espeak("yes"), seed=1)
    t0 = len(x) / 16000
    assert run(listener(base), y, start_s=t0) == []
    lis2 = listener(base)
    lis2.expect_reply(until_s=t0 + 5.0)
    assert [h.command for h in run(lis2, y, start_s=t0)] == ["yes"]


def test_same_input_same_output_whatever_the_chunk_size(base):
    x = with_silence(np.concatenate([espeak("assistant, hide the needle"), np.zeros(8000, np.int16),
                                     espeak("assistant, freeze", voice="en-gb")]))
    results = [run(listener(base), x, chunk_ms=c) for c in (10, 50, 173)]
    assert [h.command for h in results[0]] == ["hide.needle", "freeze"]
    assert results[0] == results[1] == results[2]


def test_assistant_own_speech_is_ignored_while_muted(base, tmp_path):
    from speech.tts import SpeechOutput
    out = SpeechOutput(TTSSettings(output="none"))
    try:
        wav = out.synthesize("assistant, show needle", tmp_path / "say.wav")
    finally:
        out.close()
    from speech.audio import read_wav
    own, _ = read_wav(wav)
    x = with_silence(own)
    dur = len(x) / 16000
    # not muted: the recognizer does hear it (so the muted case below can fail)
    assert [h.command for h in run(listener(base), x)] == ["show.needle"]
    lis = listener(base)
    lis.set_speaking(True, 0.4)  # speech output started
    lis.set_speaking(False, dur - 0.7)  # and ended; the tail covers the rest
    assert run(lis, x) == []
    assert any("muted" in r.decision.reason for r in lis.log)
    lis2 = listener(base)
    lis2.set_muted_until(dur)
    assert run(lis2, x) == []


def test_push_to_talk_only_while_pedal_pressed(base):
    x = with_silence(espeak("needle depth"))
    assert run(listener(base, activation="push_to_talk"), x) == []
    lis = listener(base, activation="push_to_talk")
    lis.push_to_talk(True, 0.2)
    lis.push_to_talk(False, len(x) / 16000 - 0.5)
    assert [h.command for h in run(lis, x)] == ["needle_depth"]


def test_with_the_pedal_down_words_not_understood_are_asked_again(base):
    # the pedal says the speech was meant for the assistant: no wake phrase needed
    x = with_silence(espeak("purple elephant", "en-us+f3"), seed=3)
    lis = listener(base, activation="push_to_talk")
    assert run(lis, x) == [] and lis.take_unclear() == []  # pedal up: not for us
    lis = listener(base, activation="push_to_talk")
    lis.push_to_talk(True, 0.2)
    lis.push_to_talk(False, len(x) / 16000 - 0.3)
    assert run(lis, x) == []
    (u,) = lis.take_unclear()
    assert u.heard == "" and u.start_s < u.end_s


def test_wake_phrase_then_pause_then_command_is_joined(base):
    # the mechanism is tested here; how often synthetic commands are right is measured
    # by benchmarks/speech_bench.py
    cmd = espeak("where is the target")
    x = with_silence(np.concatenate([espeak("assistant"), np.zeros(9600, np.int16), cmd]))
    heard = run(listener(base), x)
    assert [h.command for h in heard] == ["where_target"]
    assert heard[0].start_s < 0.8  # starts at the wake phrase
    assert heard[0].heard == "assistant where is the target"
    # the same command with no wake phrase before it is not acted on
    assert run(listener(base), with_silence(cmd)) == []
    # nor when the wake phrase came too long before (gap > wake_join_gap_ms)
    late = with_silence(np.concatenate([espeak("assistant"), np.zeros(40000, np.int16), cmd]))
    assert run(listener(base), late) == []


def test_silence_and_noise_give_nothing(base):
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0, 300, 16000 * 3), -32768, 32767).astype(np.int16)
    assert run(listener(base, activation="always"), x) == []
    assert run(listener(base, activation="always"), np.zeros(32000, np.int16)) == []


def test_feed_rejects_wrong_sample_type(base):
    with pytest.raises(TypeError, match="int16"):
        listener(base).feed(np.zeros(160, np.float32), 0.0)


def test_pocketsphinx_leaves_no_dictionary_folder_behind(tmp_path, monkeypatch):
    """The small dictionary is read when the decoders are made and removed at once: a
    speech process killed later (SIGKILL, no finaliser) leaves nothing in /tmp."""
    import tempfile

    from speech.commands import load_commands
    from speech.engines import PocketSphinxEngine
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    eng = PocketSphinxEngine(load_commands())
    assert list(tmp_path.iterdir()) == []
    x = with_silence(espeak("assistant, show fascia"), 0.3, 0.3)
    assert eng.decode(x).text == "assistant show fascia"  # the words are still known


def test_feed_live_can_hand_the_hangover_over_in_real_time(base):
    """The benchmark's clock (feed_live) with pace_pauses: from the pause at which
    Whisper's check starts, the audio goes in no faster than it is spoken, as from a
    microphone; the same commands come out, and the time spent waiting is counted apart."""
    from speech.listener import feed_live
    x = with_silence(espeak("assistant, show fascia"))
    plain = feed_live(listener(base), x, 20)
    stats: dict = {}
    paced = feed_live(listener(base), x, 20, pace_pauses=True, stats=stats)
    assert [h.command for h, _ in plain] == ["show.fascia"]
    assert [h for h, _ in paced] == [h for h, _ in plain]
    assert stats["slept_s"] > 0.05  # the hangover, at least, in real time
    assert feed_live(listener(base), x, 20, stats=(s := {})) and s == {}  # unpaced: no wait
