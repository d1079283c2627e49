"""Speech output (speech/tts.py): real synthesis to WAV, priorities, no sound device."""
from __future__ import annotations

import logging
import threading
import wave

import pytest

from speech.settings import TTSSettings
from speech.tts import (SayItem, SpeechOutput, enqueue, espeak_cli_to_wav, preempts)


def _frames(p):
    with wave.open(str(p), "rb") as w:
        return w.getnframes(), w.getframerate()


def test_synthesize_writes_wav_without_sound_card(tmp_path):
    out = SpeechOutput(TTSSettings(output="none"))
    try:
        for i, text in enumerate(["fascia shown", "needle depth twelve millimetres"]):
            p = out.synthesize(text, tmp_path / f"{i}.wav")  # engine reused
            n, rate = _frames(p)
            assert n > rate * 0.4  # at least 0.4 s of speech
    finally:
        out.close()


def test_espeak_cli_fallback(tmp_path):
    p = espeak_cli_to_wav("quality score seventy", tmp_path / "c.wav")
    n, rate = _frames(p)
    assert n > rate * 0.4


def test_priority_order_and_bounded_queue():
    q: list[SayItem] = []
    q, _ = enqueue(q, SayItem(2, 0, "ack1", "ack"), 3)
    q, _ = enqueue(q, SayItem(1, 1, "answer", "answer"), 3)
    q, _ = enqueue(q, SayItem(0, 2, "alert", "alert"), 3)
    assert [i.text for i in q] == ["alert", "answer", "ack1"]
    q, dropped = enqueue(q, SayItem(2, 3, "ack2", "ack"), 3)
    assert [d.text for d in dropped] == ["ack1"]
    assert preempts("alert", "answer") and preempts("alert", "ack")
    assert not preempts("answer", "ack") and not preempts("alert", "alert")
    with pytest.raises(ValueError, match="priority"):
        preempts("urgent", "ack")


class _BlockingPlayer:
    """Stands in for the sound card: 'plays' until told to stop or released."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.played: list[int] = []

    def play(self, samples, rate, stop):
        self.played.append(len(samples))
        self.started.set()
        while not stop.is_set() and not self.release.is_set():
            stop.wait(0.01)
        return not stop.is_set()


def test_alert_interrupts_answer_and_speaking_state_is_reported(tmp_path):
    states = []
    player = _BlockingPlayer()
    out = SpeechOutput(TTSSettings(output="none"), on_speaking=lambda s, t: states.append((s, t)),
                       player=player)
    try:
        out.say("the quality score is seventy percent", "answer")
        assert player.started.wait(20)
        assert out.speaking
        player.started.clear()
        out.say("needle near the pleura", "alert")
        assert player.started.wait(20)
        player.release.set()
        assert out.wait_idle(20)
    finally:
        out.close()
    assert out.interrupted == ["the quality score is seventy percent"]
    assert out.spoken == ["needle near the pleura"]
    assert states[0] == (True, "the quality score is seventy percent")
    assert states[1] == (False, "the quality score is seventy percent")
    assert states[-1] == (False, "needle near the pleura")
    assert all(n > 0 for n in player.played)


def test_no_sound_device_is_logged_and_speech_continues(tmp_path, caplog):
    import sounddevice as sd
    if any(d.get("max_output_channels", 0) > 0 for d in sd.query_devices()):
        pytest.skip("this machine has an audio output device")
    with caplog.at_level(logging.WARNING, logger="speech.tts"):
        out = SpeechOutput(TTSSettings(output="speaker"))
    try:
        assert "no sound device" in caplog.text
        out.say("record started", "ack")
        assert out.wait_idle(30)
        assert out.spoken == ["record started"] and out.wav_files
    finally:
        out.close()


def test_wav_dir_output_keeps_files(tmp_path):
    out = SpeechOutput(TTSSettings(output="wav_dir", wav_dir=str(tmp_path)))
    try:
        out.say("freeze", "ack")
        assert out.wait_idle(30)
    finally:
        out.close()
    files = sorted(tmp_path.glob("say_*_ack.wav"))
    assert len(files) == 1 and _frames(files[0])[0] > 0
