"""The accept/reject decision as a pure function (speech/decision.py)."""
from __future__ import annotations

from speech.commands import load_commands
from speech.decision import DecisionThresholds, decide
from speech.engines import Decoded, WordSeg

CS = load_commands()
TH = DecisionThresholds(min_lr_per_frame=-10.0, min_word_posterior=0.5, min_word_ms=100,
                        max_word_ms=1500, max_uncovered_ms=400)


def dec(text, words, g=-1000.0, o=-1000.0, conf=None):
    ws = tuple(WordSeg(w, a, b, p) for w, a, b, p in words)
    return Decoded(text, ws, g, o, 200, "pocketsphinx", conf)


WAKE_SHOW_FASCIA = dec("assistant show fascia", [("assistant", 0.2, 0.8, 0.9),
                                                  ("show", 0.8, 1.1, 0.9),
                                                  ("fascia", 1.1, 1.6, 0.9)])
SPAN = [(0.2, 1.6)]


def test_accepts_whole_command_with_wake():
    d = decide(WAKE_SHOW_FASCIA, CS, require_wake=True, th=TH, speech_spans_s=SPAN)
    assert (d.kind, d.command, d.wake) == ("accept", "show.fascia", True)
    assert 0 < d.confidence <= 1


def test_rejects_without_wake_unless_reply_expected():
    show = dec("show fascia", [("show", 0.2, 0.5, 0.9), ("fascia", 0.5, 1.0, 0.9)])
    assert decide(show, CS, require_wake=True, th=TH, speech_spans_s=[(0.2, 1.0)]).kind == "reject"
    assert decide(show, CS, require_wake=False, th=TH,
                  speech_spans_s=[(0.2, 1.0)]).kind == "accept"
    yes = dec("yes", [("yes", 0.2, 0.5, 0.9)])
    assert decide(yes, CS, require_wake=True, th=TH, speech_spans_s=[(0.2, 0.5)]).kind == "reject"
    assert decide(yes, CS, require_wake=True, reply_open=True, th=TH,
                  speech_spans_s=[(0.2, 0.5)]).command == "yes"
    # show.fascia is not a reply: an open reply window does not waive its wake phrase
    assert decide(show, CS, require_wake=True, reply_open=True, th=TH,
                  speech_spans_s=[(0.2, 1.0)]).kind == "reject"


def test_partial_phrase_and_wake_alone():
    part = dec("what can", [("what", 0.2, 0.4, 0.9), ("can", 0.4, 0.6, 0.9)])
    assert "not a whole command" in decide(part, CS, require_wake=False, th=TH).reason
    wake = dec("assistant", [("assistant", 0.2, 0.8, 0.9)])
    assert decide(wake, CS, require_wake=True, th=TH).kind == "wake_only"
    assert decide(dec("", []), CS, require_wake=False, th=TH).kind == "reject"


def test_garbage_model_posterior_duration_and_coverage():
    far = dec("assistant show fascia", [(w.word, w.start_s, w.end_s, w.confidence)
                                        for w in WAKE_SHOW_FASCIA.words], g=-4000.0, o=-1000.0)
    r = decide(far, CS, require_wake=True, th=TH, speech_spans_s=SPAN)
    assert r.kind == "reject" and "likelihood ratio" in r.reason
    low = dec("assistant show fascia", [("assistant", 0.2, 0.8, 0.9), ("show", 0.8, 1.1, 0.3),
                                        ("fascia", 1.1, 1.6, 0.9)])
    assert "posterior" in decide(low, CS, require_wake=True, th=TH, speech_spans_s=SPAN).reason
    short = dec("assistant show fascia", [("assistant", 0.2, 0.8, 0.9), ("show", 0.8, 0.85, 0.9),
                                          ("fascia", 0.85, 1.6, 0.9)])
    assert "lasts 50 ms" in decide(short, CS, require_wake=True, th=TH, speech_spans_s=SPAN).reason
    # the endpointer heard 3 s of speech; the command words cover 1.4 s of it
    r = decide(WAKE_SHOW_FASCIA, CS, require_wake=True, th=TH, speech_spans_s=[(0.2, 3.2)])
    assert r.kind == "reject" and "outside the command words" in r.reason


def test_vosk_confidence_is_used_when_present():
    v = dec("freeze", [("freeze", 0.2, 0.6, 0.95)], g=None, o=None, conf=0.95)
    assert decide(v, CS, require_wake=False, th=TH, speech_spans_s=[(0.2, 0.6)]).kind == "accept"
    v = dec("freeze", [("freeze", 0.2, 0.6, 0.4)], g=None, o=None, conf=0.4)
    assert "confidence" in decide(v, CS, require_wake=False, th=TH,
                                  speech_spans_s=[(0.2, 0.6)]).reason


def test_command_word_fitted_onto_silence_after_wake_phrase_is_not_a_command():
    # "assistant" then silence: the grammar forces "off" onto the hangover
    d = dec("assistant off", [("assistant", 0.1, 0.81, 0.85), ("off", 0.81, 1.04, 0.93)])
    r = decide(d, CS, require_wake=True, th=TH, speech_spans_s=[(0.1, 0.83)])
    assert r.kind == "wake_only" and r.command is None
    # the same word inside the speech is a command
    r = decide(d, CS, require_wake=True, th=TH, speech_spans_s=[(0.1, 1.04)])
    assert (r.kind, r.command) == ("accept", "off")


def test_thresholds_follow_the_speech_settings():
    from dataclasses import fields, replace

    from speech.decision import DecisionThresholds
    from speech.settings import SpeechSettings
    s = replace(SpeechSettings(), min_kws_prob=0.42, min_whisper_regret=-2.5,
                whisper_override_regret=-1.0)
    th = DecisionThresholds.from_settings(s)
    assert (th.min_kws_prob, th.min_whisper_regret, th.whisper_override_regret) == (0.42, -2.5, -1.0)
    configured = {f.name for f in fields(SpeechSettings)}
    for f in fields(DecisionThresholds):  # every threshold but the fitted model is configurable
        assert f.name in configured or f.name.startswith("confidence_"), f.name
