"""Moonshine tiny's encoder (speech/moonshine.py) and the single-word head that reads it
beside Whisper's (rule MH): the pinned file, its features on real synthesized speech, the
head file that says which features it reads, and a listener that feeds it both."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import listen_patched
from speech import moonshine
from speech.moonshine import DIM, MoonshineEncoder, MoonshineError, encoder_path
from speech.settings import SpeechSettings
from speech.synth import espeak, with_silence
from speech.whisper_head import HEAD_FILE, HEAD_MOON_FILE, HeadError, WhisperHead


def test_the_pinned_encoder_gives_the_same_features_for_the_same_word():
    """eSpeak's "stop" through the encoder twice: (2 * DIM,) finite features, equal both
    times; a different word gives different ones; 50 ms of audio is padded, not refused."""
    enc = MoonshineEncoder()
    stop = espeak("stop")
    a, b = enc.pooled(stop), enc.pooled(stop)
    assert a.shape == (2 * DIM,) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert np.abs(enc.pooled(espeak("left")) - a).max() > 0.1
    assert enc.encode(stop).shape[1] == DIM and len(enc.encode(stop)) > 10
    assert enc.pooled(stop[:800]).shape == (2 * DIM,)
    # float input in [-1, 1] is the same audio
    assert np.allclose(enc.pooled(stop.astype(np.float32) / 32768.0), a, atol=1e-5)


def test_bad_input_and_a_file_that_is_not_the_pinned_one_are_refused(tmp_path):
    enc = MoonshineEncoder()
    with pytest.raises(MoonshineError, match="mono"):
        enc.pooled(np.zeros((2, 16000), np.int16))
    with pytest.raises(MoonshineError, match="mono"):
        enc.pooled(np.zeros(0, np.int16))
    other = tmp_path / "encoder_model.ort"
    data = bytearray(encoder_path().read_bytes())
    data[-1] ^= 0xFF  # one byte changed
    other.write_bytes(bytes(data))
    with pytest.raises(MoonshineError, match="sha256"):
        MoonshineEncoder(other)
    with pytest.raises(MoonshineError, match="cannot read"):
        MoonshineEncoder(tmp_path / "missing.ort")


def test_a_missing_wheel_says_what_to_install(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MoonshineError, match="pip install --no-deps moonshine-voice==0.1.0"):
        encoder_path()


def test_the_shipped_heads_say_which_features_they_read(tmp_path):
    """The Whisper-only head reads 768 features; the Moonshine head 768 + 576, and says so
    in its file. A head naming features nobody computes is refused, not guessed at."""
    w, m = WhisperHead(HEAD_FILE), WhisperHead(HEAD_MOON_FILE)
    assert (w.extra, w.dim) == ("", 768)
    assert (m.extra, m.dim) == ("moonshine", 768 + 2 * DIM)
    assert m.classes == w.classes
    z = dict(np.load(HEAD_MOON_FILE))
    z["meta"] = np.array(json.dumps({**json.loads(str(z["meta"])), "extra_features": "ears"}))
    bad = tmp_path / "head.npz"
    np.savez(bad, **z)
    with pytest.raises(HeadError, match="unknown features 'ears'"):
        WhisperHead(bad)


def _always(**kw) -> SpeechSettings:
    return replace(SpeechSettings(engine="kws"), activation="always", second_opinion=False,
                   **kw)


def test_a_listener_feeds_the_moonshine_head_both_encoders():
    """eSpeak's "left", always listening, the classifier made sure it heard "right": the
    single-word head is asked (its veto), reads both encoders, hears "left" and refuses
    "right" (rule F, which would act on "left", off here). The Whisper-only head is the
    fallback where Moonshine cannot load."""
    x = with_silence(espeak("left"))
    misheard = lambda r: replace(r, top="right", top_prob=0.95, probs={"right": 0.95})  # noqa: E731
    got, logs = listen_patched(_always(head_moonshine=True, min_head_veto=0.5,
                                       min_fused_prob=None, min_fused_veto=None), x, misheard)
    (u,) = [u for u in logs if u.whisper is not None]
    assert u.whisper["kind"] == "sure" and u.whisper["head"] == "left"
    assert got == [] and u.unclear

    from speech.listener import CommandListener
    lis = CommandListener(_always(head_moonshine=True))
    assert lis._head.extra == "moonshine" and lis._moon is not None
    mp = pytest.MonkeyPatch()

    def missing():
        raise MoonshineError("not installed")
    mp.setattr(moonshine, "shared_encoder", missing)
    try:
        lis = CommandListener(_always(head_moonshine=True))
    finally:
        mp.undo()
    assert lis._head is not None and lis._head.extra == "" and lis._moon is None
    assert CommandListener(_always(head_moonshine=False))._head.extra == ""
