"""WAV input and microphone errors (speech/audio.py)."""
from __future__ import annotations

import time
import wave

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import write_media
from speech.audio import (AudioFileError, NoMicrophoneError, has_audio_track, open_microphone,
                          read_audio, read_wav, write_wav)


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


def test_the_audio_track_of_a_video_file(tmp_path):
    # a 44.1 kHz stereo AAC track in an mp4, as a recorder writes it: 16 kHz mono, in time
    x = np.zeros(32000, np.int16)
    x[8000:16000] = _tone(16000, 0.5, 440.0)  # 0.5-1.0 s
    frames = [np.full((64, 80, 3), i * 10, np.uint8) for i in range(20)]  # 2 s at 10 fps
    p = tmp_path / "rec.mp4"
    write_media(p, frames, 10, x)
    assert has_audio_track(p)
    y, info = read_audio(p)
    assert info.sample_rate_hz == 44100 and info.channels == 2 and y.dtype == np.int16
    assert abs(len(y) - len(x)) < 0.05 * 16000
    loud = np.flatnonzero(np.abs(y.astype(float)) > 2000) / 16000
    assert abs(loud[0] - 0.5) < 0.03 and abs(loud[-1] - 1.0) < 0.03  # aligned with the frames
    spec = np.abs(np.fft.rfft(y[9000:15000].astype(float)))
    assert abs(np.argmax(spec) * 16000 / 6000 - 440) < 5
    # a WAV goes the WAV way
    write_wav(tmp_path / "a.wav", x)
    assert np.array_equal(read_audio(tmp_path / "a.wav")[0], x)


def test_media_files_that_cannot_give_audio_are_named(tmp_path):
    silent = tmp_path / "silent.mp4"
    write_media(silent, [np.zeros((64, 80, 3), np.uint8)] * 5, 10)
    assert not has_audio_track(silent)
    with pytest.raises(AudioFileError, match="silent.mp4 has no audio track"):
        read_audio(silent)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4000)
    assert not has_audio_track(junk)
    with pytest.raises(AudioFileError, match="junk.mp4 cannot be opened"):
        read_audio(junk)
    with pytest.raises(AudioFileError, match="gone.mkv does not exist"):
        read_audio(tmp_path / "gone.mkv")


def test_wav_input_is_delivered_in_blocks_of_speech_block_ms():
    """The speech node plays a WAV input as a microphone would deliver it, in
    speech.block_ms blocks, each stamped with its start time and handed over once its last
    sample has been played, not sooner (the latency a command can have depends on the block
    length: docs/SPEECH.md; the live latency benchmark times the node on this input)."""
    import queue
    import threading
    from dataclasses import replace

    from assistant.bus import BusClient, Endpoints
    from assistant.config import Settings
    from speech.node import SpeechNode

    for block_ms in (20, 50):
        node = SpeechNode.__new__(SpeechNode)  # the pacer and its queue, without the loop
        base = Settings()
        node.settings = replace(base, speech=replace(base.speech, block_ms=block_ms))
        node._stop = threading.Event()
        node.audio_q = queue.Queue()
        node.bus = BusClient(Endpoints(pub="inproc://p", sub="inproc://s"), "speech", ())
        x = _tone(16000, 0.2)
        pushed, push = [], node._push
        node._push = lambda piece, t: pushed.append(time.monotonic()) or push(piece, t)
        t_start = time.monotonic()
        node._pace_wav(x)
        assert node.bus.recv(0) is None  # woken for the blocks, no message
        node.bus.close()
        got = []
        while not node.audio_q.empty():
            got.append(node.audio_q.get_nowait())
        n = 16 * block_ms
        sizes = [n] * (len(x) // n) + ([len(x) % n] if len(x) % n else [])
        assert [len(s) for s, _ in got] == sizes
        assert [t for _, t in got] == pytest.approx([i * block_ms / 1000 for i in range(len(got))])
        assert np.array_equal(np.concatenate([s for s, _ in got]), x)
        ends = [t + len(s) / 16000 for s, t in got]
        assert all(w - t_start >= e - 0.002 for w, e in zip(pushed, ends)), (pushed, ends)


def test_file_padding_is_not_taken_for_the_room():
    """A clip padded with digital zeros (as Speech Commands pads short recordings): the
    zeros go, so the room tone put around it for listen-eval and the benchmark is the
    recorded background, not digital silence; an all-zero clip is kept."""
    from speech.audio import room_tone, strip_padding

    rng = np.random.default_rng(0)
    room = (rng.normal(0, 300, 16000)).astype(np.int16)  # about 50 dB of background
    clip = np.concatenate([np.zeros(800, np.int16), room[:12800], np.zeros(2400, np.int16)])
    out = strip_padding(clip)
    assert len(out) == 12800 and np.array_equal(out, room[:12800])
    assert np.abs(room_tone(clip, 1600)).max() == 0  # what it was: digital silence
    assert np.abs(room_tone(out, 1600)).std() > 100  # now the recorded background
    # a few zeros at an end are a zero crossing, not padding; silence stays whole
    short = np.concatenate([room[:1000], np.zeros(50, np.int16)])
    assert len(strip_padding(short)) == 1050
    assert len(strip_padding(np.zeros(500, np.int16))) == 500


def test_a_word_the_recording_cut_is_told_from_a_whole_one(shared_data):
    """cut_at_edge: a tone in the middle of room noise is whole; the same clip ending 50 ms
    into the tone, or starting 50 ms before its end (padding after it stripped first), is
    cut; and the shared "no" of speaker 0c540988, whose word begins 150 ms before the file
    ends, is cut, while a clip of the same word from another speaker is whole."""
    from speech.audio import cut_at_edge, read_wav

    rng = np.random.default_rng(1)
    x = rng.normal(0, 100, 16000)
    t = np.arange(6400) / 16000
    x[4800:11200] += 6000 * np.sin(2 * np.pi * 200 * t)  # 0.3-0.7 s
    x = x.astype(np.int16)
    assert not cut_at_edge(x)
    assert cut_at_edge(x[:5600])  # ends 50 ms into the word
    assert cut_at_edge(np.concatenate([x[10400:], np.zeros(3200, np.int16)])[:4000])
    # steady noise alone has no quiet edge either: the benchmarks ask only of command words
    assert cut_at_edge(x[:4000])
    words = shared_data / "speech" / "speech_commands" / "no"
    assert cut_at_edge(read_wav(words / "0c540988_nohash_0.wav")[0])
    whole = [f for f in sorted(words.glob("*.wav")) if not f.name.startswith("0c540988")]
    assert sum(not cut_at_edge(read_wav(f)[0]) for f in whole) >= len(whole) * 0.8
