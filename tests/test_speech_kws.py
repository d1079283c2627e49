"""The neural command classifier (speech/kws.py): the shipped classifier on real
speech-embedding models, synthetic eSpeak NG voices of the benchmark's TEST split
(never used for training), and the pure decision rules."""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from speech.audio import chunks
from speech.commands import load_commands
from speech.decision import (Decision, DecisionThresholds, decide_kws, second_opinion,
                             unclear_after_wake, vetoed)
from speech.kws import (NONE, WAKE, Embedder, KwsError, KwsModel, KwsRecognizer, KwsResult,
                        StreamEmbedder, rescale_none)
from speech.listener import CommandListener
from speech.settings import SpeechSettings
from speech.synth import espeak, with_silence

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def engine():
    return KwsRecognizer(load_commands())


# the classifier too strict to act, and the command head's rules that would act instead off
# (rules M, X, M8, M7w, J3, J4): what is left to act is the second opinion
STRICT = dict(min_kws_prob=1.0, min_cmd_fused_prob=None, min_cmd_head_alone=None,
              min_cmd_head_joined=None, min_cmd_head_unheard=None,
              min_cmd_head_joined_window=None, min_cmd_head_soft_window=None)


def listen(engine, x, activation="wake", chunk_ms=20, **over):
    s = replace(SpeechSettings(engine="kws", activation=activation), **over)
    lis = CommandListener(s, commands=load_commands(), engine=engine)
    out = []
    for c, t in chunks(x, chunk_ms):
        out += lis.feed(c, t)
    return out + lis.flush(), lis


# ------------------------------------------------------------------ front end

def test_stream_embeddings_equal_whole_clip_whatever_the_chunks(engine):
    x = with_silence(espeak("assistant, needle depth", "en-gb"), seed=3)
    whole = engine.embedder.embed(x)
    for n in (160, 333, 4000):
        st = StreamEmbedder(engine.embedder)
        for i in range(0, len(x), n):
            st.feed(x[i:i + n])
        assert st.n_embeddings == len(whole)
        got = st.window(st.n_embeddings - 1)
        np.testing.assert_allclose(got, whole[-16:], atol=1e-3)


# ------------------------------------------------------------------ real audio

@pytest.mark.parametrize("text,voice,cid", [
    ("assistant, show fascia", "en-us+f3", "show.fascia"),
    ("assistant, needle depth", "en-gb", "needle_depth"),
    ("assistant, stop recording", "en-gb", "record_stop"),
])
def test_synthesised_commands_with_wake_phrase_are_recognised(engine, text, voice, cid):
    out, lis = listen(engine, with_silence(espeak(text, voice), seed=1))
    assert [h.command for h in out] == [cid], [r.decision for r in lis.log]
    h = out[0]
    assert h.heard.startswith("assistant ") and 0.0 < h.confidence <= 1.0
    assert h.start_s < h.end_s


def test_command_without_wake_phrase_needs_always_activation(engine):
    x = with_silence(espeak("stop", "en-gb"), seed=2)
    out, lis = listen(engine, x, activation="wake")
    assert out == [] and lis.log[-1].decision.kind == "reject"
    out, _ = listen(engine, x, activation="always")
    assert [h.command for h in out] == ["stop"]


def test_wake_phrase_then_pause_then_command(engine):
    a = espeak("assistant", "en-gb")
    b = espeak("quality score", "en-gb")
    x = with_silence(np.concatenate([a, np.zeros(int(0.7 * 16000), np.int16), b]), seed=4)
    out, lis = listen(engine, x)
    assert [h.command for h in out] == ["quality_score"], [r.decision for r in lis.log]
    assert [r.decision.kind for r in lis.log][0] == "wake_only"


@pytest.mark.parametrize("text", [
    "the patient had breakfast at seven this morning",
    "could you pass me the sterile gel please",
])
def test_synthesised_conversation_is_not_a_command(engine, text):
    for activation in ("wake", "always"):
        out, lis = listen(engine, with_silence(espeak(text, "en-us+f3"), seed=5), activation)
        assert out == [], [r.decision for r in lis.log]


def test_same_audio_same_commands_whatever_the_chunk_size(engine):
    x = with_silence(espeak("assistant, hide the nerve", "en-gb-x-gbclan+m2"), seed=6)
    a, la = listen(engine, x, chunk_ms=10)
    b, lb = listen(engine, x, chunk_ms=250)
    assert a == b
    assert [r.decision for r in la.log] == [r.decision for r in lb.log]


def test_own_speech_is_ignored_while_muted(engine):
    x = with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=7)
    s = SpeechSettings(engine="kws", activation="wake")
    lis = CommandListener(s, commands=load_commands(), engine=engine)
    lis.set_speaking(True, 0.0)
    out = []
    for c, t in chunks(x, 20):
        out += lis.feed(c, t)
    assert out == [] and "muted" in lis.log[-1].decision.reason


def test_a_command_asked_for_but_not_understood_is_asked_again(engine):
    # the wake phrase clearly heard, then words that are no command: "say again", not silence
    x = with_silence(espeak("assistant, purple elephant", "en-us+f3"), seed=8)
    out, lis = listen(engine, x)
    assert out == []
    (u,) = lis.take_unclear()
    assert u.heard == "assistant" and u.start_s < u.end_s and "not a command" in u.reason
    assert lis.take_unclear() == []  # taken once
    assert [r.unclear for r in lis.log] == [r.decision.kind == "reject" for r in lis.log]
    # a site that wants silence
    out, lis = listen(engine, x, unclear_prompt=False)
    assert out == [] and lis.take_unclear() == []
    # no wake phrase: talk, not a request
    out, lis = listen(engine, with_silence(espeak("purple elephant", "en-us+f3"), seed=8))
    assert out == [] and lis.take_unclear() == []
    # a command understood is acted on, not asked again
    out, lis = listen(engine, with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=1))
    assert [h.command for h in out] == ["show.fascia"] and lis.take_unclear() == []


def test_the_command_head_acts_after_a_wake_phrase_said_alone(engine):
    """Rule M8 on real audio: "assistant, show fascia" with the comma's pause is the wake
    phrase said alone, then "show fascia" as an utterance of its own. With the classifier too
    strict to act and the command head's other rules off, the head alone acts on the
    follow-up at min_cmd_head_joined; with that off nothing is acted on ("say again")."""
    x = with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=1)
    strict = dict(STRICT, min_cmd_head_joined=SpeechSettings().min_cmd_head_joined,
                  second_opinion=False)  # M8 as shipped, the rest off
    out, lis = listen(engine, x, **strict)
    assert [(h.command, h.heard, h.via) for h in out] == [
        ("show.fascia", "assistant show fascia", "command head")]
    assert "after the wake phrase said alone" in lis.log[-1].decision.reason
    assert lis.log[-2].decision.kind == "wake_only" and lis.log[-1].decision.joined
    out, lis = listen(engine, x, **STRICT, second_opinion=False)
    assert out == [] and len(lis.take_unclear()) == 1
    # without the wake phrase said alone before it, M8 does not apply: nothing acts
    y = with_silence(espeak("show fascia", "en-us+f3"), seed=1)
    out, lis = listen(engine, y, **strict)
    assert out == []


def test_a_second_opinion_acts_on_a_command_both_engines_heard(engine):
    # the classifier made too strict to act and the command head's rules off (STRICT: they
    # would act, tests/test_speech_cmd_head.py and M8 above), so "show fascia" after a clear
    # wake phrase is a command asked for and not understood ...
    x = with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=1)
    out, lis = listen(engine, x, **STRICT, second_opinion=False)
    assert out == [] and len(lis.take_unclear()) == 1
    # ... until PocketSphinx decodes the same audio and agrees with one of the
    # classifier's top candidates: acted on, with its reason, and not asked again
    out, lis = listen(engine, x, **STRICT, second_opinion=True)
    assert [(h.command, h.heard, h.via) for h in out] == [
        ("show.fascia", "assistant show fascia", "second opinion")]
    assert lis.take_unclear() == []
    assert lis.log[-1].decision.reason.startswith("second opinion: show.fascia")
    # its own wake floor: asked even where "say again" would not be (and not when above it)
    out, lis = listen(engine, x, **STRICT, min_unclear_wake=1.0)
    assert [h.command for h in out] == ["show.fascia"]
    out, lis = listen(engine, x, **STRICT, min_unclear_wake=1.0,
                      min_second_opinion_wake=1.0)
    assert out == [] and lis.take_unclear() == []
    # a second engine that fails costs the second opinion, never the stream
    class Broken:
        def decode(self, samples):
            raise RuntimeError("decoder gone")

    lis2 = CommandListener(replace(SpeechSettings(engine="kws"), **STRICT),
                           commands=load_commands(), engine=engine)
    lis2._second = Broken()
    got = []
    for c, t in chunks(x, 20):
        got += lis2.feed(c, t)
    assert got + lis2.flush() == [] and len(lis2.take_unclear()) == 1 and lis2._second is None
    # words that are no command stay "say again": the second engine finds no command
    x = with_silence(espeak("assistant, purple elephant", "en-us+f3"), seed=8)
    out, lis = listen(engine, x, second_opinion=True)
    assert out == [] and len(lis.take_unclear()) == 1
    # no wake phrase: nobody asked, so no second opinion is sought
    x = with_silence(espeak("show fascia", "en-us+f3"), seed=1)
    out, lis = listen(engine, x, **STRICT, second_opinion=True)
    assert out == [] and lis.take_unclear() == []
    # ... unless every utterance is addressed: always listening with second_opinion_always
    out, lis = listen(engine, x, "always", **STRICT)
    assert out == [] and lis.take_unclear() == []
    out, lis = listen(engine, x, "always", **STRICT, second_opinion_always=True)
    assert [h.command for h in out] == ["show.fascia"] and lis.take_unclear() == []


def test_a_command_the_second_engine_heard_otherwise_is_asked_again(engine):
    x = with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=1)
    # every accepted command checked: PocketSphinx hears the same one, so it is acted on
    out, lis = listen(engine, x, second_opinion_veto_below=1.0)
    assert [h.command for h in out] == ["show.fascia"] and lis.take_unclear() == []
    # a second engine that heard another command: not acted on, asked again
    s = replace(SpeechSettings(engine="kws"), second_opinion_veto_below=1.0)
    lis = CommandListener(s, commands=load_commands(), engine=engine)
    lis._decode_second = lambda u, joined: Decision("accept", "hide.all", "hide everything", 0.8)
    got = []
    for c, t in chunks(x, 20):
        got += lis.feed(c, t)
    assert got + lis.flush() == []
    (u,) = lis.take_unclear()
    assert u.guess == "show.fascia" and "vetoed: pocketsphinx heard hide.all" in u.reason
    # (rule J3, the last resort after a wake phrase said alone, does not overrule that veto)
    # off (the default): the classifier alone decides
    lis = CommandListener(SpeechSettings(engine="kws"), commands=load_commands(), engine=engine)
    lis._decode_second = lambda u, joined: Decision("accept", "hide.all", "hide everything", 0.8)
    got = []
    for c, t in chunks(x, 20):
        got += lis.feed(c, t)
    assert [h.command for h in got + lis.flush()] == ["show.fascia"]


# ------------------------------------------------------------------ decision (pure)

def test_veto_rules():
    ok = Decision("accept", "show.fascia", "assistant show fascia", 0.45, "ok", True)
    d = vetoed(ok, Decision("accept", "hide.all", "hide everything", 0.8))
    assert d.kind == "reject" and d.command == "show.fascia" and "hide.all" in d.reason
    assert vetoed(ok, Decision("accept", "show.fascia", "show fascia", 0.8)) is None  # agrees
    assert vetoed(ok, Decision("reject", "hide.all")) is None  # no opinion is not a veto
    assert vetoed(Decision("reject", "show.fascia"), Decision("accept", "hide.all")) is None



def test_second_opinion_rules():
    cs = load_commands()
    rejected = Decision("reject", "show.muscle", "assistant show muscles", 0.21,
                        "show.muscle only 0.21", True, wake_prob=0.99)
    probs = {"show.muscle": 0.21, "show.vessel": 0.18, NONE: 0.15}
    ps = Decision("accept", "show.vessel", "show artery", 0.8, "ok")
    d = second_opinion(rejected, probs, ps, cs)
    assert d.kind == "accept" and d.command == "show.vessel" and d.wake
    assert d.heard == "assistant show artery"  # the words the second engine decoded
    ps_wake = Decision("accept", "show.vessel", "assistant show artery", 0.8, "ok")
    assert second_opinion(rejected, probs, ps_wake, cs).heard == "assistant show artery"
    assert d.confidence == 0.18 and d.wake_prob == 0.99  # the lower of the two engines
    assert "was: show.muscle only 0.21" in d.reason
    # the other engine's command is not among the classifier's candidates: no
    assert second_opinion(rejected, probs, Decision("accept", "freeze", "freeze", 0.9), cs) is None
    # ... or too improbable to the classifier
    assert second_opinion(rejected, probs, ps, cs, min_prob=0.2) is None
    # the other engine rejected it too
    assert second_opinion(rejected, probs, Decision("reject", "show.vessel"), cs) is None
    # nothing to overturn
    assert second_opinion(Decision("accept", "show.muscle"), probs, ps, cs) is None



def test_unclear_after_wake_rules():
    cs = load_commands()
    th = DecisionThresholds()
    assert th.min_unclear_wake > th.min_kws_wake

    def unclear(top, p, wake, speech=1.0, pedal=False):
        d = decide_kws(r(top, p, wake=wake, speech=speech), cs, require_wake=True, th=th)
        return unclear_after_wake(d, speech, th, pedal=pedal)

    assert unclear(NONE, 0.9, wake=0.99)  # clearly asked, not understood
    assert unclear("show.nerve", th.min_kws_prob - 0.05, wake=0.99)  # too unsure to act on
    assert not unclear("show.nerve", 0.9, wake=0.99)  # understood: accepted
    assert not unclear(NONE, 0.9, wake=th.min_unclear_wake - 0.01)  # was anyone asking?
    assert not unclear(NONE, 0.9, wake=0.99, speech=4.0)  # longer than a command: talk
    assert not unclear(WAKE, 0.2, wake=0.99)  # a weak "assistant" alone asks nothing
    assert unclear(NONE, 0.9, wake=0.0, pedal=True)  # the pedal down says it was meant
    wake_only = decide_kws(r(WAKE, 0.9), cs, require_wake=True, th=th)
    assert not unclear_after_wake(wake_only, 0.6, th)  # held for the command that follows


def r(top, p, wake=0.0, speech=0.8):
    return KwsResult({top: p}, top, p, wake, speech, 2)


def test_decide_kws_rules():
    cs = load_commands()
    th = DecisionThresholds()
    assert decide_kws(r(NONE, 0.9), cs, require_wake=False, th=th).kind == "reject"
    assert decide_kws(r(WAKE, 0.9), cs, require_wake=True, th=th).kind == "wake_only"
    d = decide_kws(r("show.fascia", 0.9, wake=0.95, speech=1.6), cs, require_wake=True, th=th)
    assert (d.kind, d.command, d.heard) == ("accept", "show.fascia", "assistant show fascia")
    # no wake phrase: rejected in wake mode, unless it was said just before or a reply
    assert decide_kws(r("show.fascia", 0.9), cs, require_wake=True, th=th).kind == "reject"
    d = decide_kws(r("show.fascia", 0.9, wake=0.2), cs, require_wake=True, th=th, joined=True)
    assert d.kind == "accept" and d.joined and not d.wake
    # the wake evidence travels with every decision (benchmarks/kws_wake_points.py)
    assert d.wake_prob == 0.2
    assert decide_kws(r(NONE, 0.9, wake=0.7), cs, require_wake=True, th=th).wake_prob == 0.7
    assert decide_kws(r("yes", 0.9), cs, require_wake=True, reply_open=True,
                      th=th).kind == "accept"
    assert decide_kws(r("stop", 0.9), cs, require_wake=True, reply_open=True,
                      th=th).kind == "reject"  # stop is not a reply word
    # unsure, or much longer than a command
    assert decide_kws(r("left", th.min_kws_prob - 0.01), cs, require_wake=False,
                      th=th).kind == "reject"
    d = decide_kws(r("left", 0.99, speech=4.0), cs, require_wake=False, th=th)
    assert d.kind == "reject" and "longer than a command" in d.reason


# ------------------------------------------------------------------ bad input

def test_weights_that_do_not_match_their_manifest_are_refused(tmp_path):
    src = Path(KwsModel.load().path)
    p = tmp_path / "kws.npz"
    b = bytearray(src.read_bytes())
    b[-10] ^= 0xFF
    p.write_bytes(bytes(b))
    shutil.copy(src.with_suffix(".json"), tmp_path / "kws.json")
    with pytest.raises(KwsError, match="sha256"):
        KwsModel.load(p)
    with pytest.raises(KwsError, match="not found"):
        KwsModel.load(tmp_path / "missing.npz")


def test_classifier_for_other_command_ids_is_refused(tmp_path):
    cs = load_commands()
    src = Path(cs.path)
    text = src.read_text().replace("  mute:            {phrases: [\"mute\", \"mute feedback\"]}\n", "")
    assert text != src.read_text()
    f = tmp_path / "c.yaml"
    f.write_text(text)
    shutil.copy(src.with_name("commands_en.dict"), tmp_path / "commands_en.dict")
    with pytest.raises(KwsError, match="mute"):
        KwsRecognizer(load_commands(f))


def test_missing_embedding_models_give_a_clear_error(monkeypatch):
    import importlib.util

    import speech.kws as kws
    real = importlib.util.find_spec
    monkeypatch.setattr(kws.importlib.util, "find_spec",
                        lambda name, *a: None if name == "openwakeword" else real(name, *a))
    with pytest.raises(KwsError, match="openwakeword==0.5.1"):
        Embedder()


def test_manifest_says_what_the_classifier_was_trained_on():
    m = json.loads(Path(KwsModel.load().path).with_suffix(".json").read_text())
    assert m["not_for_clinical_use"] is True
    assert m["classes"][:2] == [NONE, WAKE]
    assert "Speech Commands" in m["training"]["real_data"]
    # which real speakers it heard decides what the benchmark's real-word figures mean
    assert m["training"]["real"]["speakers"] in ("tune", "all")


def test_no_wake_window_to_scan_gives_no_wake_not_an_error(engine):
    """A command ending right after the last one leaves no window for the wake scan
    (found by the benchmark: it raised instead of deciding)."""
    x = with_silence(espeak("stop", "en-gb"), seed=4)
    st = StreamEmbedder(engine.embedder)
    st.feed(x)
    end = len(x) / 16000 - 0.8
    r = engine.classify(st, 0.0, end - 0.4, end, end + 0.3, wake_after_s=end)
    assert r.wake_prob == 0.0 and r.wake_end_s is None
    assert r.n_windows >= 1


def test_training_real_speakers_option_selects_whose_clips(shared_data):
    """--real-speakers tune keeps the benchmark's test speakers out of training; all takes
    every clip; the cache key changes with it, so a cached synthetic part gets the right
    real windows."""
    import types

    from speech import train_kws as tk
    args = types.SimpleNamespace(data=str(shared_data / "speech"), real_repeats=1,
                                 real_speed=0.0, tail_max=0.3, seed=0, real_speakers="tune")
    aud_t, lab_t = tk.real_part(args)
    key_t = tk.real_key(args)
    args.real_speakers = "all"
    aud_a, lab_a = tk.real_part(args)
    files = sorted((shared_data / "speech" / "speech_commands").glob("*/*.wav"))
    assert len(lab_a) == len(files) and len(aud_a) == len(lab_a)
    n_tune = sum(tk.split_of(f.name) == "tune" for f in files)
    assert len(lab_t) == n_tune < len(lab_a)
    assert tk.real_key(args) != key_t
    assert all(len(x) == len(aud_a[0]) for x in aud_a)  # one classifier window each


# ------------------------------------------------------------------ none scale

def test_rescale_none_shifts_the_choice_towards_commands_only():
    p = np.array([0.5, 0.1, 0.3, 0.1])  # none, wake, a, b
    assert rescale_none(p, 0, 1.0) is p  # off: untouched
    q = rescale_none(p, 0, 0.5)
    assert q.sum() == pytest.approx(1.0)
    assert q[0] == pytest.approx(0.25 / 0.75) and q[2] == pytest.approx(0.3 / 0.75)
    assert q[2] / q[3] == pytest.approx(3.0)  # the commands keep their order and ratios
    assert int(np.argmax(p)) == 0 and int(np.argmax(rescale_none(p, 0, 0.3))) == 2


def test_bad_none_scale_is_refused():
    with pytest.raises(KwsError, match="kws_none_scale must be in"):
        KwsRecognizer(load_commands(), none_scale=0.0)


def test_wake_operating_points_from_a_dump(tmp_path, capsys):
    """benchmarks/kws_wake_points.py: a command keeps its acceptance at a stricter wake
    threshold only while its wake evidence (own, or a wake phrase said just before) holds."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "kws_wake_points", Path(__file__).resolve().parents[1] / "benchmarks" / "kws_wake_points.py")
    wp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wp)
    stream = [{"kind": "wake_only", "conf": 0.6, "wp": 0.6},
              {"kind": "accept", "command": "show.fascia", "wp": 0.1, "joined": True},
              {"kind": "accept", "command": "freeze", "wp": 0.9, "joined": False},
              {"kind": "reject", "command": "left", "wp": 0.99}]
    assert wp.accepted_at(stream, 0.35) == ["show.fascia", "freeze"]
    assert wp.accepted_at(stream, 0.7) == ["freeze"]
    assert wp.accepted_at(stream, 0.95) == []
    dump = tmp_path / "d.jsonl"
    rows = [{"part": "multi", "snr": 10.0, "voice": "v", "cmd": "show.fascia", **e}
            for e in stream[:2]]
    # a clip in which nothing at all was heard is still an item (missed)
    rows += [{"part": "multi", "snr": 10.0, "voice": "v", "cmd": "freeze", "kind": "nothing",
              "command": None}]
    rows += [{"part": "talk", "start": 3599.0, "dur": 1.0, **stream[2]}]
    dump.write_text("\n".join(json.dumps(r) for r in rows))
    assert wp.main([str(dump), "--w", "0.5,0.7"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()[1:]]
    assert [x["multi 10 dB"] for x in lines] == ["50.0 % (1/2)", "0.0 % (0/2)"]
    assert [x["talk false commands"] for x in lines] == ["1 (1.00/h)", "1 (1.00/h)"]


def test_a_convolutional_classifier_file_runs_as_its_definition_says(tmp_path):
    """``train_kws --arch tcn`` weights: two kernel-3 convolutions along time, max and
    mean over time, a linear layer; the numpy runtime against a loop over time steps."""
    from speech.kws import WINDOW

    rng = np.random.default_rng(3)
    d, hid, n_cls = 96, 8, 4
    arrs = {"arch": np.array("tcn"), "mean": rng.normal(size=WINDOW * d).astype(np.float32),
            "std": rng.uniform(0.5, 2, WINDOW * d).astype(np.float32),
            "cw0": rng.normal(size=(3 * d, hid)).astype(np.float32) * 0.1,
            "cb0": rng.normal(size=hid).astype(np.float32),
            "cw1": rng.normal(size=(3 * hid, hid)).astype(np.float32) * 0.3,
            "cb1": rng.normal(size=hid).astype(np.float32),
            "w0": rng.normal(size=(2 * hid, n_cls)).astype(np.float32),
            "b0": rng.normal(size=n_cls).astype(np.float32)}
    p = tmp_path / "tcn.npz"
    np.savez(p, **arrs)
    p.with_suffix(".json").write_text(json.dumps({
        "classes": [NONE, WAKE, "a", "b"], "window": WINDOW,
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}))
    m = KwsModel.load(p)
    x = rng.normal(size=(3, WINDOW, d)).astype(np.float32)
    got = m.probs(x)

    def conv(h, w, b):  # h (T, C) -> (T - 2, out), one time step at a time
        k_in = h.shape[1]
        return np.stack([np.maximum(sum(h[t + k] @ w[k * k_in:(k + 1) * k_in] for k in range(3)) + b, 0)
                         for t in range(len(h) - 2)])
    for i in range(3):
        h = ((x[i].reshape(-1) - arrs["mean"]) / arrs["std"]).reshape(WINDOW, d)
        h = conv(conv(h, arrs["cw0"], arrs["cb0"]), arrs["cw1"], arrs["cb1"])
        z = np.concatenate([h.max(0), h.mean(0)]) @ arrs["w0"] + arrs["b0"]
        want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-6)
    np.savez(p, **{**arrs, "arch": np.array("rnn")})
    p.with_suffix(".json").write_text(json.dumps({
        "classes": [NONE, WAKE, "a", "b"], "window": WINDOW,
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}))
    with pytest.raises(KwsError, match="unknown classifier arch 'rnn'"):
        KwsModel.load(p)


def test_the_training_synth_cache_is_written_whole_and_a_broken_file_is_made_again(tmp_path):
    from speech.train_kws import Synth
    synth = Synth(tmp_path)
    x = synth("show fascia", "en-us", 160, 50)
    assert len(x) > 0.3 * 16000
    files = list(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".npy"] and not files[0].name.startswith(".")
    data = files[0].read_bytes()
    files[0].write_bytes(data[:len(data) // 2])  # as read while another trainer wrote it
    assert (synth("show fascia", "en-us", 160, 50) == x).all()
    assert files[0].read_bytes() == data
