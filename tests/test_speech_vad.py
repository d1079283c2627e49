"""The endpointer (speech/vad.py) on real synthetic speech and generated noise: energy
opens an utterance; the neural voice-activity model (Silero VAD) closes it soon after
the words end even when clattering noise keeps the energy up."""
from __future__ import annotations

import numpy as np
import pytest

from speech.audio import chunks
from speech.synth import espeak
from speech.vad import Endpointer, NeuralVad, VadSettings, neural_vad_path

SR = 16000

needs_model = pytest.mark.skipif(neural_vad_path() is None,
                                 reason="openwakeword wheel (Silero VAD) not installed")


def clatter(seconds: float, level: float, seed: int) -> np.ndarray:
    """Noise whose loudness jumps every 20-60 ms by up to 20 dB (dishes, instruments):
    the energy rule cannot find 200 ms of quiet in it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    env = np.empty(n)
    i = 0
    while i < n:
        k = int(rng.integers(320, 960))
        env[i:i + k] = level * 10 ** (rng.uniform(0, 20) / 20)
        i += k
    return rng.normal(0, 1, n) * env


def scene(text: str, seed: int = 1) -> tuple[np.ndarray, float]:
    """0.8 s of clatter, the words, 1.5 s of clatter; returns (audio, true end of words)."""
    words = espeak(text).astype(np.float64)
    lead = int(0.8 * SR)
    body = np.concatenate([np.zeros(lead), words, np.zeros(int(1.5 * SR))])
    e = words[: len(words) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10((e * e).mean(axis=1) + 1)
    end = lead / SR + (np.nonzero(db > db.max() - 35)[0][-1] + 1) * 0.01
    y = body + clatter(len(body) / SR, 30.0, seed)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16), end


def utterances(x, neural: NeuralVad | None, hangover_ms: int = 128, chunk_ms: int = 20):
    ep = Endpointer(VadSettings(neural_hangover_ms=hangover_ms if neural else 0),
                    neural=neural)
    out = []
    for c, t in chunks(x, chunk_ms, 0.0):
        out += ep.feed(c, t)
    return out + ep.flush()


@needs_model
def test_neural_close_ends_the_utterance_soon_after_the_words_in_clatter():
    x, end = scene("assistant show fascia")
    energy = utterances(x, None)
    neural = utterances(x, NeuralVad())
    # energy alone: the clatter holds the utterance open long after the words
    assert energy[0].closed_at_s - end > 1.0, energy
    # the neural rule closes within its hangover (128 ms) plus a few model steps
    spoken = [u for u in neural if u.speech_start_s < end]
    assert len(spoken) == 1, neural
    u = spoken[0]
    assert 0.128 <= u.closed_at_s - end < 0.32, (u, end)
    assert end - 0.05 < u.speech_end_s < u.closed_at_s, (u, end)
    assert u.voice_prob > 0.9  # the model's view of the utterance, for logs
    assert all(v.voice_prob is None for v in energy)


@needs_model
def test_neural_close_does_not_cut_between_words():
    x, end = scene("needle depth", seed=3)
    spoken = [u for u in utterances(x, NeuralVad()) if u.speech_start_s < end]
    assert len(spoken) == 1, spoken  # "needle" and "depth" in one utterance
    assert spoken[0].speech_start_s < 0.8 + 0.1 and spoken[0].speech_end_s > end - 0.05


@needs_model
def test_noise_the_model_does_not_take_for_speech_is_left_to_the_energy_rule():
    x = np.clip(clatter(4.0, 100.0, 7), -32768, 32767).astype(np.int16)
    x[: SR] = (x[: SR] * 0.05).astype(np.int16)  # quiet, then a burst of clatter
    energy = utterances(x, None)
    neural = utterances(x, NeuralVad())
    assert energy, "the burst should open an utterance"
    assert [(u.speech_start_s, u.closed_at_s) for u in neural] == \
        [(u.speech_start_s, u.closed_at_s) for u in energy]
    assert all(u.voice_prob < 0.5 for u in neural)


@needs_model
def test_same_utterances_whatever_the_chunk_size():
    x, _ = scene("assistant, freeze", seed=5)
    ref = [(u.speech_start_s, u.speech_end_s, u.closed_at_s)
           for u in utterances(x, NeuralVad(), chunk_ms=20)]
    for ms in (10, 64, 173, 250):
        got = [(u.speech_start_s, u.speech_end_s, u.closed_at_s)
               for u in utterances(x, NeuralVad(), chunk_ms=ms)]
        assert got == ref, ms


def test_missing_model_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="vad_neural_hangover_ms: 0"):
        NeuralVad(tmp_path / "nope.onnx")


def test_listener_without_the_model_falls_back_to_energy(monkeypatch, caplog):
    import speech.vad as vad
    from speech.listener import CommandListener
    from speech.settings import SpeechSettings

    monkeypatch.setattr(vad, "neural_vad_path", lambda: None)
    with caplog.at_level("WARNING"):
        lis = CommandListener(SpeechSettings(engine="pocketsphinx"))
    assert lis._vad.neural is None
    assert "energy only" in caplog.text


@needs_model
def test_a_sink_is_told_of_the_pause_before_the_hangover_closes():
    """on_pause: the model heard the words stop, the hangover still runs; what a recognizer
    gets then is the utterance so far, ending after the words, before the close."""
    x, end = scene("assistant, needle depth", seed=2)

    class Sink:
        def __init__(self):
            self.events = []

        def on_open(self, s):
            self.events.append(("open",))

        def on_audio(self, f):
            pass

        def on_abort(self):
            self.events.append(("abort",))

        def on_pause(self, samples, speech_start_s, pause_s):
            self.events.append(("pause", len(samples) / SR, speech_start_s, pause_s))

        def on_close(self, u):
            self.events.append(("close", u.speech_end_s, u.closed_at_s))

    sink = Sink()
    ep = Endpointer(VadSettings(neural_hangover_ms=128), sink=sink, neural=NeuralVad())
    for c, t in chunks(x, 20, 0.0):
        ep.feed(c, t)
    ep.flush()
    spoken = [i for i, e in enumerate(sink.events) if e[0] == "close" and e[1] > end - 0.1]
    assert spoken, sink.events
    i = spoken[0]
    pauses = [e for e in sink.events[:i] if e[0] == "pause"]
    assert pauses, sink.events
    _, n_s, start_s, pause_s = pauses[-1]
    _, speech_end_s, closed_at_s = sink.events[i]
    assert end - 0.05 <= pause_s <= closed_at_s - 0.09  # a hangover's head start
    assert speech_end_s <= pause_s + 1e-6
    assert n_s >= pause_s - start_s  # the samples reach the pause


@needs_model
def test_reset_gives_the_voice_model_a_fresh_state_in_each_pause():
    """vad_neural_reset_ms: after that long with no utterance open the model hears what
    follows exactly as a newly loaded one would (its recurrent state drifts over a long
    stream), and never inside an utterance or a shorter pause; off (0), it carries the
    state of everything before."""
    rng = np.random.default_rng(3)
    parts = []
    for text in ("assistant, show fascia", "assistant, needle depth", "assistant, freeze"):
        parts += [rng.normal(0, 30, int(1.6 * SR)), espeak(text).astype(np.float64)]
    parts.append(rng.normal(0, 30, int(1.6 * SR)))
    x = np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)

    def run(reset_ms):
        nv = NeuralVad()
        steps, resets = [], []  # (chunk, probability) of every step; steps before each reset
        prob, reset = nv.prob, nv.reset
        nv.prob = lambda chunk: steps.append((chunk.copy(), prob(chunk))) or steps[-1][1]
        nv.reset = lambda: resets.append(len(steps)) or reset()
        ep = Endpointer(VadSettings(neural_hangover_ms=128, neural_reset_idle_ms=reset_ms),
                        neural=nv)
        spans = []
        for c, t in chunks(x, 20):
            for u in ep.feed(c, t):
                spans.append((u.start_s, u.closed_at_s))
        return steps, resets, spans

    steps, resets, spans = run(1000)
    assert len(spans) >= 3 and len(resets) >= 3  # the lead-in and the pauses
    step_end = [(k + 1) * 512 / SR for k in range(len(steps))]
    for k in resets:  # never inside an utterance, and a second or more after the last one
        t = step_end[k - 1]
        assert not any(a < t < b for a, b in spans)
        assert all(t - b >= 1.0 - 0.033 for a, b in spans if b <= t)
    fresh = NeuralVad()  # from the second reset to the third: as a newly loaded model
    same = [fresh.prob(chunk) == p for chunk, p in steps[resets[1]:resets[2]]]
    assert len(same) > 30 and all(same)

    steps, resets, spans = run(0)
    assert resets == []
    k = int(np.ceil(spans[0][1] * SR / 512)) + 40  # a second after the first close
    fresh = NeuralVad()
    assert not all(fresh.prob(chunk) == p for chunk, p in steps[k:k + 40])


def test_an_utterance_opening_right_after_a_close_keeps_its_pre_roll():
    """A word that starts just after the previous utterance closed (a command after a
    wake phrase said alone, its soft onset in the wake phrase's hangover tail) still gets
    ``preroll_ms`` of the audio before its detected start, taken from that tail."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 30, int(2.0 * SR))  # a quiet room
    t = np.arange(int(0.5 * SR)) / SR
    tone = 8000 * np.sin(2 * np.pi * 300 * t)
    a0, b0 = int(0.5 * SR), int(1.25 * SR)  # A: 0.5-1.0 s; closes at ~1.2 s; B from 1.25 s
    x[a0:a0 + len(tone)] += tone
    x[b0:b0 + len(tone)] += tone
    x = np.round(x).astype(np.int16)
    s = VadSettings(hangover_ms=200, preroll_ms=150)
    ep = Endpointer(s)
    us = []
    for c, t0 in chunks(x, 20, 0.0):
        us += ep.feed(c, t0)
    us += ep.flush()
    assert len(us) == 2, [(u.speech_start_s, u.closed_at_s) for u in us]
    a, b = us
    assert a.closed_at_s < b.speech_start_s < a.closed_at_s + 0.1  # B opens right after
    assert b.speech_start_s == pytest.approx(1.25, abs=0.011)
    assert b.start_s == pytest.approx(b.speech_start_s - 0.15, abs=1e-6)
    i0 = round(b.start_s * SR)
    assert np.array_equal(b.samples, x[i0:i0 + len(b.samples)])  # the stream's own audio
