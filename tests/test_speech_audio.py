"""WAV input and microphone errors (speech/audio.py)."""
from __future__ import annotations

import wave

import numpy as np
import pytest
from scipy.io import wavfile

from speech.audio import (AudioFileError, NoMicrophoneError, open_microphone, read_wav,
                          write_wav)


def _tone(rate, seconds=0.5, hz=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_other_rate_and_stereo_are_converted(tmp_path):
    x = _tone(44100)
    p = tmp_path / "stereo44k.wav"
    wavfile.write(p, 44100, np.stack([x, x], axis=1))
    y, info = read_wav(p)
    assert info.converted and info.sample_rate_hz == 44100 and info.channels == 2
    assert y.dtype == np.int16 and y.ndim == 1
    assert abs(len(y) - 8000) <= 1  # 0.5 s at 16 kHz
    # the tone survives resampling: its frequency is still 440 Hz
    spec = np.abs(np.fft.rfft(y.astype(float)))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 5


def test_float_wav_is_converted(tmp_path):
    p = tmp_path / "f.wav"
    wavfile.write(p, 22050, (_tone(22050) / 32768).astype(np.float32))
    y, info = read_wav(p)
    assert info.converted and y.dtype == np.int16 and 7000 < np.abs(y).max() < 8500


def test_missing_truncated_and_not_wav(tmp_path):
    with pytest.raises(AudioFileError, match="does not exist"):
        read_wav(tmp_path / "nope.wav")
    p = tmp_path / "t.wav"
    write_wav(p, _tone(16000, 1.0))
    data = p.read_bytes()
    trunc = tmp_path / "trunc.wav"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match="truncated") as e:
        read_wav(trunc)
    assert "trunc.wav" in str(e.value)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioFileError, match="not a readable"):
        read_wav(junk)
    head = tmp_path / "head.wav"
    head.write_bytes(data[:20])
    with pytest.raises(AudioFileError):
        read_wav(head)


def test_no_microphone_gives_clear_error():
    # These machines have no sound card: opening the microphone must fail cleanly.
    import sounddevice as sd
    if any(d.get("max_input_channels", 0) > 0 for d in sd.query_devices()):
        pytest.skip("this machine has an audio input device")
    with pytest.raises(NoMicrophoneError, match="no microphone"):
        open_microphone(None, lambda samples, t: None)
