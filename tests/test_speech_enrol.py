"""``assistant enrol`` (speech/enrol.py): an operator's recording of the single words cut
into the training clips of the trainers' layout, and inputs it cannot use refused by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speech.audio import read_wav, strip_padding, write_wav
from speech.commands import SINGLE_WORDS
from speech.enrol import CLIP_S, EnrolError, cut_words, main
from speech.synth import espeak

SR = 16000


@pytest.fixture(scope="module")
def reading():
    """eSpeak reading the ten single words in order, 0.9 s of quiet after each, in a faint
    room noise: (recording, [(word, start sample, its samples)])."""
    rng = np.random.default_rng(0)
    parts, where, t = [np.zeros(SR // 2, np.int16)], [], SR // 2
    for w in SINGLE_WORDS:
        x = strip_padding(espeak(w))
        parts += [x, np.zeros(int(0.9 * SR), np.int16)]
        where.append((w, t, x))
        t += len(x) + int(0.9 * SR)
    rec = np.concatenate(parts).astype(np.float64) + rng.normal(0, 3, t)
    return np.clip(np.round(rec), -32768, 32767).astype(np.int16), where


def test_each_word_becomes_a_one_second_clip_holding_it(reading):
    """cut_words (pure): one clip a word, in the order read, 1 s long, each holding its
    word's whole speech where it was said."""
    rec, where = reading
    clips = cut_words(rec, list(SINGLE_WORDS))
    assert [c.word for c in clips] == list(SINGLE_WORDS)
    for c, (w, t, x) in zip(clips, where):
        assert len(c.samples) == int(CLIP_S * SR)
        assert t / SR - 0.05 <= c.start_s and c.end_s <= (t + len(x)) / SR + 0.05
        said = rec[t:t + len(x)]  # the word as recorded, noise included
        off = t - (int(round((c.start_s + c.end_s) / 2 * SR)) - SR // 2)
        assert 0 <= off and off + len(said) <= len(c.samples)
        assert np.array_equal(c.samples[off:off + len(said)], said)


def test_the_tool_writes_the_trainers_layout_and_adds_after_what_is_there(reading, tmp_path,
                                                                           capsys):
    rec, _ = reading
    wav = tmp_path / "reading.wav"
    write_wav(wav, rec)
    out = tmp_path / "data"
    assert main([str(wav), "--speaker", "dr01", "--out", str(out)]) == 0
    assert main([str(wav), "--speaker", "dr01", "--out", str(out)]) == 0  # a second session
    for w in SINGLE_WORDS:
        files = sorted(p.name for p in (out / "speech_commands" / w).iterdir())
        assert files == ["dr01_nohash_0.wav", "dr01_nohash_1.wav"]
        x, info = read_wav(out / "speech_commands" / w / files[0])
        assert len(x) == SR and info.sample_rate_hz == SR and info.channels == 1
    assert capsys.readouterr().out.count("10 clips written for speaker dr01") == 2


@pytest.mark.parametrize("args, words", [
    (["--times", "2"], ["20 words", "10 stretches of speech"]),
    (["--words", "yes,fascia"], ["--words", "fascia"]),
    (["--speaker", "dr_01"], ["--speaker", "dr_01"]),
])
def test_an_input_it_cannot_use_is_refused_by_name_and_nothing_is_written(reading, tmp_path,
                                                                          capsys, args, words):
    rec, _ = reading
    wav = tmp_path / "reading.wav"
    write_wav(wav, rec)
    out = tmp_path / "data"
    base = [str(wav), "--speaker", "dr01", "--out", str(out)]
    if args[0] == "--speaker":
        base = [str(wav), "--out", str(out)]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not out.exists()


def test_a_missing_or_silent_recording_is_refused_by_name(tmp_path, capsys):
    assert main([str(tmp_path / "nope.wav"), "--speaker", "a1", "--out", str(tmp_path)]) == 2
    assert "nope.wav" in capsys.readouterr().err
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, np.zeros(3 * SR, np.int16))
    assert main([str(quiet), "--speaker", "a1", "--out", str(tmp_path / "d")]) == 2
    assert "0 stretches of speech" in capsys.readouterr().err
    with pytest.raises(EnrolError, match="no words"):
        cut_words(np.zeros(SR, np.int16), [])


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "speech_commands"


@pytest.mark.skipif(not REAL.is_dir(), reason="shared speech data not present")
def test_a_real_speaker_reading_the_words_is_cut_word_by_word():
    """One REAL speaker's ten words (Speech Commands, each with a second of its own room
    tone after it, as a reading with pauses): ten clips, each with its word's loudest
    moment inside it, in the order read."""
    from speech.audio import room_tone

    parts, peaks, t = [], [], 0
    for w in SINGLE_WORDS:
        x, _ = read_wav(REAL / w / "0cb74144_nohash_0.wav")
        f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
        peaks.append((t + 160 * int(np.argmax((f * f).mean(axis=1))) + 80) / SR)
        parts += [x, room_tone(x, SR)]
        t += len(x) + SR
    clips = cut_words(np.concatenate(parts), list(SINGLE_WORDS))
    assert [c.word for c in clips] == list(SINGLE_WORDS)
    for c, p in zip(clips, peaks):
        centre = (c.start_s + c.end_s) / 2
        assert c.start_s - 0.05 <= p <= c.end_s + 0.05 and abs(p - centre) < CLIP_S / 2
