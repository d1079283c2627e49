"""The command head on Whisper's encoder (speech/whisper_head.py, trained by
``python -m speech.train_whisper_head --kind commands``): the pure fusion with the classifier
(rule M, speech/decision.py cmd_fuse), the shipped head on synthetic voices it never heard,
and a listener that acts on it and refuses with it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import listen_patched
from speech.commands import load_commands
from speech.decision import Decision, DecisionThresholds, cmd_early, cmd_fuse, cmd_fused_probs
from speech.listener import CommandListener
from speech.settings import SpeechSettings
from speech.synth import espeak, with_silence
from speech.whisper import shared_model
from speech.whisper_head import CMD_HEAD_FILE, OTHER, WAKE, HeadError, WhisperHead

COMMANDS = load_commands()
SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


def head_p(**p: float) -> dict:
    """A command head's probabilities: the given ones, the rest to "other"."""
    out = {c: 0.0 for c in sorted(COMMANDS.commands)}
    out[WAKE] = 0.0
    out.update(p)
    out[OTHER] = max(0.0, 1.0 - sum(p.values()))
    return out


# ------------------------------------------------------------------ the pure decision

def test_fused_probabilities_weigh_the_two_models():
    clf = {"show.fascia": 0.5, "hide.fascia": 0.3, "_wake_": 0.1}  # _none_ gets the rest
    head = head_p(**{"show.fascia": 0.2, "hide.fascia": 0.6, WAKE: 0.1})
    f = cmd_fused_probs(clf, head, 0.5)
    assert abs(sum(f.values()) - 1.0) < 1e-9
    assert WAKE not in f and OTHER in f and "show.fascia" in f
    assert f["hide.fascia"] / f["show.fascia"] == pytest.approx((0.3 * 0.6) ** 0.5 /
                                                               (0.5 * 0.2) ** 0.5)
    # one model alone (the 45 commands neither names are floored at 1e-4 each)
    assert cmd_fused_probs(clf, head, 0.0)["hide.fascia"] == pytest.approx(0.6, abs=5e-3)
    # each model's "none": the classifier's wake phrase and no-command class, the head's
    # wake phrase and "other"
    assert cmd_fused_probs(clf, head, 1.0)[OTHER] == pytest.approx(0.2, abs=5e-3)
    assert cmd_fused_probs(clf, head, 0.0)[OTHER] == pytest.approx(0.2, abs=5e-3)


def test_cmd_fuse_acts_on_a_multi_word_command_and_refuses_one():
    th = DecisionThresholds(cmd_fuse_weight=0.35, min_cmd_fused_prob=0.6, min_cmd_fused_veto=0.7,
                            min_cmd_head_alone=None)
    rej = Decision("reject", reason="not a command", wake=True)
    clf = {"show.fascia": 0.3, "_none_": 0.5}
    head = head_p(**{"show.fascia": 0.95})
    d, again = cmd_fuse(rej, clf, head, COMMANDS, addressed=True, th=th)
    assert d.kind == "accept" and d.command == "show.fascia" and not again
    assert d.reason.startswith("cmdfused") and d.heard == "assistant show fascia"
    # not addressed (no wake phrase heard), not sure enough together, a single word (the
    # single-word head's), or off: the decision stands
    assert cmd_fuse(rej, clf, head, COMMANDS, addressed=False, th=th) is None
    torn = head_p(**{"show.fascia": 0.5, "hide.fascia": 0.45})
    assert cmd_fuse(rej, {"hide.fascia": 0.4, "show.fascia": 0.3}, torn, COMMANDS,
                    addressed=True, th=th) is None
    assert cmd_fuse(rej, {"left": 0.3}, head_p(left=0.99), COMMANDS, addressed=True,
                    th=th) is None
    off = DecisionThresholds(min_cmd_fused_prob=None, min_cmd_fused_veto=None,
                             min_cmd_head_alone=None)
    assert cmd_fuse(rej, clf, head, COMMANDS, addressed=True, th=off) is None
    # the head alone (rule M4): sure of a multi-word command the classifier calls no command
    alone = replace(th, min_cmd_head_alone=0.9)
    against = {"_none_": 0.9, "show.fascia": 0.01}
    assert cmd_fuse(rej, against, head, COMMANDS, addressed=True, th=th) is None
    d, again = cmd_fuse(rej, against, head, COMMANDS, addressed=True, th=alone)
    assert d.kind == "accept" and d.command == "show.fascia" and "head alone" in d.reason
    assert cmd_fuse(rej, against, head, COMMANDS, addressed=False, th=alone) is None
    assert cmd_fuse(rej, against, head_p(**{"show.fascia": 0.85}), COMMANDS, addressed=True,
                    th=alone) is None
    assert cmd_fuse(rej, against, head_p(left=0.99), COMMANDS, addressed=True, th=alone) is None
    # an accepted multi-word command both call another: refused, asked again ...
    acc = Decision("accept", "record_start", "assistant start recording", 0.9, "ok", wake=True)
    rival = ({"record_start": 0.5, "record_stop": 0.45}, head_p(record_stop=0.999))
    refuse = replace(th, min_cmd_fused_switch=None)
    d, again = cmd_fuse(acc, *rival, COMMANDS, addressed=True, th=refuse)
    assert d.kind == "reject" and again and "record_stop" in d.reason
    # ... or, sure enough of the other (rule M3), that one is acted on instead
    d, again = cmd_fuse(acc, *rival, COMMANDS, addressed=True,
                        th=replace(th, min_cmd_fused_switch=0.7))
    assert d.kind == "accept" and d.command == "record_stop" and not again
    assert d.heard == "assistant stop recording" and d.reason.startswith("cmdfused")
    d, again = cmd_fuse(acc, *rival, COMMANDS, addressed=True,
                        th=replace(th, min_cmd_fused_switch=0.999))
    assert d.kind == "reject" and again
    # talk ("other") does not refuse a command: the classifier and Whisper judged that
    assert cmd_fuse(acc, {"record_start": 0.5}, head_p(), COMMANDS, addressed=True,
                    th=th) is None
    # a single word accepted is not this rule's to refuse
    yes = Decision("accept", "yes", "yes", 0.9, "ok")
    assert cmd_fuse(yes, {"yes": 0.5}, head_p(record_stop=0.999), COMMANDS, addressed=True,
                    th=th) is None


def test_a_command_whisper_did_not_confirm_gives_way_to_the_fused_rival():
    """Rule M5: where Whisper's check ran and did not accept the decision, an accepted
    command, a single word too, gives way to a multi-word command other than it at
    min_cmd_fused_unconfirmed ("assistant, mute" taken for "yes")."""
    th = DecisionThresholds(min_cmd_fused_unconfirmed=0.3)
    yes = Decision("accept", "yes", "assistant yes", 0.6, "ok", wake=True)
    clf, head = {"yes": 0.5, "mute": 0.2}, head_p(mute=0.8)
    assert 0.3 <= cmd_fused_probs(clf, head, 0.5)["mute"] < 0.7
    d, again = cmd_fuse(yes, clf, head, COMMANDS, addressed=True, th=th, unconfirmed=True)
    assert d.kind == "accept" and d.command == "mute" and not again
    assert d.heard == "assistant mute" and "did not confirm" in d.reason
    # Whisper confirmed it (or was not asked), the rule off, or the rival too weak: stands
    assert cmd_fuse(yes, clf, head, COMMANDS, addressed=True, th=th) is None
    off = replace(th, min_cmd_fused_unconfirmed=None)
    assert cmd_fuse(yes, clf, head, COMMANDS, addressed=True, th=off, unconfirmed=True) is None
    weak = head_p(mute=0.3, yes=0.3)
    assert cmd_fuse(yes, clf, weak, COMMANDS, addressed=True, th=th, unconfirmed=True) is None
    # a multi-word command, likewise; never a single word in its place
    start = Decision("accept", "record_start", "assistant start recording", 0.6, "ok", wake=True)
    d, _ = cmd_fuse(start, {"record_start": 0.5, "record_stop": 0.3},
                    head_p(record_stop=0.7, record_start=0.2), COMMANDS, addressed=True, th=th,
                    unconfirmed=True)
    assert d.command == "record_stop"
    d, again = cmd_fuse(start, {"record_start": 0.3, "left": 0.6}, head_p(left=0.9), COMMANDS,
                        addressed=True, th=th, unconfirmed=True)  # rule M's refusal
    assert d.kind == "reject" and d.command == "record_start" and again


def test_a_command_whisper_heard_is_acted_on_when_the_fused_agree():
    """Rule M6: "whisper heard freeze, the classifier unfreeze: say again" with the fused
    classifier and head putting "freeze" first, below rule M's bar: acted on at
    min_cmd_fused_agreed; not when Whisper heard another, not addressed, or off."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_cmd_fused_agreed=0.4,
                            min_cmd_head_alone=0.9)
    asked = Decision("reject", "unfreeze", "", 0.5, "whisper heard freeze: say again", wake=True)
    clf, head = {"unfreeze": 0.5, "freeze": 0.3}, head_p(freeze=0.6, unfreeze=0.2)
    f = cmd_fused_probs(clf, head, 0.5)
    assert max(f, key=f.get) == "freeze" and 0.4 <= f["freeze"] < 0.6
    d, again = cmd_fuse(asked, clf, head, COMMANDS, addressed=True, th=th, whisper_says="freeze")
    assert d.kind == "accept" and d.command == "freeze" and not again
    assert "as Whisper heard" in d.reason and d.heard == "assistant freeze"
    for say, to in (("unfreeze", True), (None, True), ("freeze", False)):
        assert cmd_fuse(asked, clf, head, COMMANDS, addressed=to, th=th, whisper_says=say) is None
    off = replace(th, min_cmd_fused_agreed=None)
    assert cmd_fuse(asked, clf, head, COMMANDS, addressed=True, th=off,
                    whisper_says="freeze") is None


def test_the_head_alone_acts_where_whisper_heard_no_command():
    """Rule M7: "assistant, show pleura" where Whisper heard the wake phrase alone and the
    classifier no command: the head's 0.8 for show.pleura is below M4's 0.9 and the fused
    below rule M's 0.6, so nothing acts, unless min_cmd_head_unheard is set; not when Whisper
    heard a command, not for a single word, not when not addressed."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_cmd_head_alone=0.9,
                            min_cmd_fused_agreed=None, min_cmd_head_wake_alone=None,
                            min_cmd_head_unheard=None)
    alone = Decision("wake_only", reason="whisper: wake phrase alone", wake=True)
    clf, head = {"_none_": 0.7, "show.pleura": 0.1}, head_p(**{"show.pleura": 0.8})
    f = cmd_fused_probs(clf, head, 0.5)
    assert f["show.pleura"] < 0.6
    assert cmd_fuse(alone, clf, head, COMMANDS, addressed=True, th=th,
                    whisper_kind="wake_only") is None  # off: as before
    on = replace(th, min_cmd_head_unheard=0.7)
    d, again = cmd_fuse(alone, clf, head, COMMANDS, addressed=True, th=on, whisper_kind="wake_only")
    assert d.kind == "accept" and d.command == "show.pleura" and not again
    assert "Whisper heard no command" in d.reason and d.heard == "assistant show pleura"
    assert cmd_fuse(alone, clf, head, COMMANDS, addressed=True, th=on,
                    whisper_kind="accept") is None  # Whisper heard a command
    assert cmd_fuse(alone, clf, head, COMMANDS, addressed=False, th=on,
                    whisper_kind="wake_only") is None
    assert cmd_fuse(alone, clf, head, COMMANDS, addressed=True, th=replace(on, min_cmd_head_unheard=0.85),
                    whisper_kind="wake_only") is None  # below the bar
    word = head_p(left=0.8)
    assert cmd_fuse(alone, clf, word, COMMANDS, addressed=True, th=on,
                    whisper_kind="wake_only") is None  # single words are the other head's


def test_the_head_alone_where_whisper_heard_the_wake_phrase_alone():
    """Rule M7b: as M7, but only where Whisper's check heard the wake phrase alone; an
    utterance Whisper refused outright (read speech: "freeze" at 0.83) is left alone."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_cmd_head_alone=0.9,
                            min_cmd_fused_agreed=None, min_cmd_head_wake_alone=0.6,
                            min_cmd_head_unheard=None)
    rej = Decision("reject", reason="not a command", wake=True)
    clf, head = {"_none_": 0.6, "freeze": 0.1}, head_p(freeze=0.83)
    d, again = cmd_fuse(rej, clf, head, COMMANDS, addressed=True, th=th, whisper_kind="wake_only")
    assert d.kind == "accept" and d.command == "freeze" and not again
    assert cmd_fuse(rej, clf, head, COMMANDS, addressed=True, th=th,
                    whisper_kind="reject") is None
    both = replace(th, min_cmd_head_unheard=0.8,  # M7 on too, without M7w's floor:
                   min_wake_head_unheard=None)        # Whisper's refusal counts
    assert cmd_fuse(rej, clf, head, COMMANDS, addressed=True, th=both,
                    whisper_kind="reject")[0].command == "freeze"


def test_where_whisper_refused_the_head_alone_needs_a_clear_wake_phrase():
    """Rule M7w: "assistant, record stop" at 10 dB in one breath: the classifier no command
    with the wake phrase at 0.987, Whisper refused, the head record_stop 0.81. With M7 on
    and min_wake_head_unheard 0.98 it acts; with the wake phrase at 0.9 (a sentence in which
    "assistant" was half heard), or in a 0.09 s fragment, or with Whisper hearing the wake
    phrase alone (rule M7b's ground, untouched) the floor does not apply or refuses."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_cmd_head_alone=0.97,
                            min_cmd_fused_agreed=None, min_cmd_head_wake_alone=None,
                            min_cmd_head_unheard=0.8, min_wake_head_unheard=0.98)
    clf, head = {"_none_": 0.5, "record_start": 0.03}, head_p(record_stop=0.81)
    said = Decision("reject", reason="not a command", wake=True, wake_prob=0.987)
    d, again = cmd_fuse(said, clf, head, COMMANDS, addressed=True, th=th,
                        whisper_kind="reject", speech_s=0.83)
    assert d.kind == "accept" and d.command == "record_stop" and not again
    half = replace(said, wake_prob=0.9)
    assert cmd_fuse(half, clf, head, COMMANDS, addressed=True, th=th,
                    whisper_kind="reject", speech_s=0.83) is None  # the wake phrase unsure
    assert cmd_fuse(replace(said, wake_prob=None), clf, head, COMMANDS, addressed=True, th=th,
                    whisper_kind="reject", speech_s=0.83) is None  # unknown counts as below
    assert cmd_fuse(said, clf, head, COMMANDS, addressed=True, th=th,
                    whisper_kind="reject", speech_s=0.09) is None  # a fragment
    assert cmd_fuse(half, clf, head, COMMANDS, addressed=True, th=th, whisper_kind="wake_only",
                    speech_s=0.83)[0].command == "record_stop"  # M7's other ground: no floor
    off = replace(th, min_wake_head_unheard=None)  # M7 as it was
    assert cmd_fuse(half, clf, head, COMMANDS, addressed=True, th=off,
                    whisper_kind="reject", speech_s=0.09)[0].command == "record_stop"


def test_the_head_alone_after_a_wake_phrase_said_alone():
    """Rule M8: "assistant <pause> show bone" at 10 dB: the follow-up's classifier hears no
    command, the head puts show.bone first at 0.96 (under rule M4's 0.97) and the fused is
    short of rule M's 0.6. With min_cmd_head_joined set (0.6, the default), the head alone
    acts there, before Whisper's search too (cmd_early); not on an utterance that does not
    follow a wake phrase said alone, not on a fragment too short for a multi-word command,
    not below the bar, not on a single word, not where the classifier accepted a command."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_cmd_head_alone=0.97,
                            min_cmd_fused_agreed=None, min_cmd_head_wake_alone=None,
                            min_cmd_head_joined=None)
    rej = Decision("reject", reason="not a command (_none_ 0.4)", joined=True)
    clf, head = {"_none_": 0.4, "show.all": 0.21, "show.bone": 0.02}, head_p(**{"show.bone": 0.96})
    assert cmd_fused_probs(clf, head, 0.5)["show.bone"] < 0.6
    kw = dict(addressed=True, whisper_kind="reject", joined=True, speech_s=0.46)
    assert cmd_fuse(rej, clf, head, COMMANDS, th=th, **kw) is None  # off: as before
    assert cmd_early(rej, clf, head, COMMANDS, addressed=True, th=th, joined=True,
                     speech_s=0.46) is None
    on = replace(th, min_cmd_head_joined=0.6)
    d, again = cmd_fuse(rej, clf, head, COMMANDS, th=on, **kw)
    assert d.kind == "accept" and d.command == "show.bone" and not again
    assert "after the wake phrase said alone" in d.reason
    e = cmd_early(rej, clf, head, COMMANDS, addressed=True, th=on, joined=True, speech_s=0.46)
    assert e.kind == "accept" and e.command == "show.bone" and "before Whisper's search" in e.reason
    for change in ({"joined": False}, {"speech_s": 0.09}, {"speech_s": None}):
        assert cmd_fuse(rej, clf, head, COMMANDS, th=on, **{**kw, **change}) is None, change
    assert cmd_fuse(rej, clf, head, COMMANDS, th=replace(on, min_cmd_head_joined=0.97),
                    **kw) is None  # below the bar
    assert cmd_fuse(rej, clf, head_p(left=0.96), COMMANDS, th=on, **kw) is None
    acc = Decision("accept", "show.all", "show all", 0.5, "ok", joined=True)
    assert cmd_early(acc, clf, head, COMMANDS, addressed=True, th=on, joined=True,
                     speech_s=0.46) is None


def test_cmd_early_acts_only_where_whispers_search_cannot_change_rule_m():
    """Rule X: the classifier's own decision and the command head, before Whisper's search:
    acts where rule M's answer is settled whatever the search says, else waits (None)."""
    th = DecisionThresholds(cmd_fuse_weight=0.5, min_cmd_fused_prob=0.6, min_cmd_fused_switch=0.7,
                            min_cmd_head_alone=0.9)
    rej = Decision("reject", reason="not a command", wake=True)
    clf, head = {"show.fascia": 0.5, "_none_": 0.4}, head_p(**{"show.fascia": 0.95})
    d = cmd_early(rej, clf, head, COMMANDS, addressed=True, th=th)
    assert d.kind == "accept" and d.command == "show.fascia" and d.heard == "assistant show fascia"
    assert "before Whisper's search" in d.reason
    # the classifier accepted that command: its decision, as it was
    acc = Decision("accept", "show.fascia", "assistant show fascia", 0.8, "ok", wake=True)
    assert cmd_early(acc, clf, head, COMMANDS, addressed=True, th=th) is acc
    # it accepted another: only when the fused reaches the switch (rule M3) ...
    other = replace(acc, command="hide.fascia", heard="assistant hide fascia")
    mid = {"show.fascia": 0.1, "hide.fascia": 0.3, "_none_": 0.4}
    f = cmd_fused_probs(mid, head, 0.5)["show.fascia"]
    assert 0.6 <= f < 0.7
    assert cmd_early(other, mid, head, COMMANDS, addressed=True, th=th) is None
    assert cmd_early(other, clf, head, COMMANDS, addressed=True, th=th).command == "show.fascia"
    # the head alone (rule M4), the classifier accepting nothing
    against = {"_none_": 0.95, "show.fascia": 0.01}
    d = cmd_early(rej, against, head, COMMANDS, addressed=True, th=th)
    assert d.command == "show.fascia" and "head alone" in d.reason
    assert cmd_early(other, against, head, COMMANDS, addressed=True, th=th) is None
    # not addressed, a single word accepted, a single word named, torn, or off: wait
    assert cmd_early(rej, clf, head, COMMANDS, addressed=False, th=th) is None
    yes = Decision("accept", "yes", "yes", 0.9, "ok")
    assert cmd_early(yes, clf, head, COMMANDS, addressed=True, th=th) is None
    assert cmd_early(rej, {"left": 0.5}, head_p(left=0.99), COMMANDS, addressed=True,
                     th=th) is None
    torn = head_p(**{"show.fascia": 0.5, "hide.fascia": 0.45})
    assert cmd_early(rej, {"show.fascia": 0.3, "hide.fascia": 0.3}, torn, COMMANDS,
                     addressed=True, th=th) is None
    off = replace(th, min_cmd_fused_prob=None, min_cmd_head_alone=None)
    assert cmd_early(rej, clf, head, COMMANDS, addressed=True, th=off) is None


def test_cmd_early_waits_for_the_search_where_the_wake_phrase_is_unsure():
    """Rule U, before the search: where the wake phrase is needed and the classifier gave it
    less than min_wake_cmd_head, rule X does not act before Whisper's search (None: wait);
    with the wake phrase sure, said alone before (needs_wake false), or the rule off, it
    acts."""
    th = DecisionThresholds(cmd_fuse_weight=0.5, min_cmd_fused_prob=0.6, min_cmd_fused_switch=0.7,
                            min_cmd_head_alone=0.9, min_wake_cmd_head=0.9)
    clf, head = {"show.fascia": 0.5, "_none_": 0.4}, head_p(**{"show.fascia": 0.95})
    unsure = Decision("reject", reason="not a command", wake=True, wake_prob=0.86)
    sure = replace(unsure, wake_prob=0.95)
    assert cmd_early(unsure, clf, head, COMMANDS, addressed=True, needs_wake=True, th=th) is None
    acc = Decision("accept", "show.fascia", "assistant show fascia", 0.6, "ok", wake=True,
                   wake_prob=0.4)
    assert cmd_early(acc, clf, head, COMMANDS, addressed=True, needs_wake=True, th=th) is None
    assert cmd_early(replace(unsure, wake_prob=None), clf, head, COMMANDS, addressed=True,
                     needs_wake=True, th=th) is None
    assert cmd_early(sure, clf, head, COMMANDS, addressed=True, needs_wake=True,
                     th=th).command == "show.fascia"
    assert cmd_early(unsure, clf, head, COMMANDS, addressed=True, needs_wake=False,
                     th=th).command == "show.fascia"
    assert cmd_early(acc, clf, head, COMMANDS, addressed=True, needs_wake=True,
                     th=replace(th, min_wake_cmd_head=None)) is acc


# ------------------------------------------------------------------ the shipped head

def test_the_shipped_head_names_commands_of_voices_it_never_heard():
    """SYNTHETIC: eSpeak voice variants not among the training voices (the benchmark's
    test voices), every command said after the wake phrase: the head names most of them,
    and names the wake phrase alone and a sentence of talk as no command."""
    head = WhisperHead(CMD_HEAD_FILE)
    assert set(COMMANDS.commands) <= set(head.classes)
    enc = shared_model()
    ids = [c for c in sorted(COMMANDS.commands) if len(COMMANDS.commands[c].phrases[0].split()) > 1]
    right = 0
    for i, cid in enumerate(ids):
        x = with_silence(espeak(f"assistant, {COMMANDS.commands[cid].phrases[0]}",
                                voice="en-us+m2" if i % 2 else "en-gb+f1", speed_wpm=150),
                         0.15, 0.2)
        right += head(enc.context_pooled(x)[1]).command == cid
    assert right >= 0.8 * len(ids), f"{right} of {len(ids)}"
    for text in ("assistant", "could you pass me the gel please, thank you"):
        x = with_silence(espeak(text, voice="en-us+m2", speed_wpm=150), 0.15, 0.2)
        assert head(enc.context_pooled(x)[1]).command in (WAKE, OTHER), text


def test_a_listener_cut_is_labelled_by_the_speech_it_holds():
    """Rule HC's labels (speech/train_whisper_head.py cut_label): a clip "assistant, show
    fascia" whose wake phrase ends at 1.2 s and whose command's speech runs 1.4-2.0 s."""
    from speech.train_whisper_head import cut_label
    cmd = (1.4, 2.0)
    assert cut_label(0.6, 2.0, 1.2, cmd, "show.fascia") == "show.fascia"  # one breath
    assert cut_label(1.5, 1.9, 1.2, cmd, "show.fascia") == "show.fascia"  # the follow-up, cut
    assert cut_label(0.6, 1.25, 1.2, cmd, "show.fascia") == WAKE  # the wake phrase alone
    assert cut_label(1.75, 1.9, 1.2, cmd, "show.fascia") is None  # a quarter of the command
    assert cut_label(0.6, 1.55, 1.2, cmd, "show.fascia") is None  # the wake phrase and a piece


@pytest.mark.skipif(not (SPEECH / "noise").is_dir(), reason="shared speech data not present")
def test_the_listener_cut_examples_are_what_the_head_is_asked_about():
    """Rule HC's examples come from the shipped listener itself: SYNTHETIC training voices
    saying "assistant, show fascia" in REAL noise; each example is the pooled encoder output
    of an utterance the head was asked about, labelled the command or the wake phrase."""
    import argparse
    import os
    from speech.train_whisper_head import build_cuts
    args = argparse.Namespace(seed=3, data=str(SPEECH), commands="", cuts_per_command=10,
                              cut_ids=["show.fascia"], cache=os.path.expanduser(
                                  "~/.cache/usra-assistant/kws_synth"))
    X, labels = build_cuts(args)
    assert X.shape == (len(labels), 2 * shared_model().d) and set(labels) <= {"show.fascia", WAKE}
    assert "show.fascia" in labels
    head = WhisperHead(CMD_HEAD_FILE)
    right = [head(x).command == lab for x, lab in zip(X, labels)]
    assert sum(right) >= len(right) // 2, (labels, right)


@pytest.mark.skipif(not (SPEECH / "noise").is_dir(), reason="shared speech data not present")
def test_joined_cuts_are_the_windows_rule_j2_reads(monkeypatch):
    """Rule HJ (``--cuts-joined``): the cuts are made by a listener running rule J2, so a
    command said after a wake phrase said alone gives the window J2 reads (the stream from
    the wake phrase's start to the follow-up's end), labelled the command; without the flag
    the stream is never asked for."""
    import argparse
    import os
    from speech.train_whisper_head import build_cuts
    windows = []
    real = CommandListener._stream_audio

    def spy(self, a_s, b_s):
        got = real(self, a_s, b_s)
        windows.append(got)
        return got
    monkeypatch.setattr(CommandListener, "_stream_audio", spy)
    args = argparse.Namespace(seed=4, data=str(SPEECH), commands="", cuts_per_command=10,
                              cut_ids=["show.fascia"], cuts_joined=True, cache=os.path.expanduser(
                                  "~/.cache/usra-assistant/kws_synth"))
    X, labels = build_cuts(args)
    assert set(labels) <= {"show.fascia", WAKE} and windows and all(w is not None for w in windows)
    cmd = [x for x, lab in zip(X, labels) if lab == "show.fascia"]
    read = [shared_model().context_pooled(w)[1] for w in windows]
    assert any(np.allclose(x, r, atol=1e-4) for x in cmd for r in read)  # a window, labelled
    windows.clear()
    build_cuts(argparse.Namespace(**{**vars(args), "cuts_joined": False}))
    assert windows == []


def test_a_head_file_that_does_not_know_a_command_is_not_used(tmp_path, caplog):
    z = np.load(CMD_HEAD_FILE)
    keep = [i for i, c in enumerate(z["classes"]) if str(c) != "show.fascia"]
    bad = tmp_path / "head.npz"
    np.savez(bad, classes=z["classes"][keep], mu=z["mu"], sd=z["sd"], W=z["W"][:, keep],
             b=z["b"][keep])
    lis = CommandListener(replace(SpeechSettings(engine="kws"), whisper_cmd_head_file=str(bad)))
    assert lis._cmd_head is None and "show.fascia" in caplog.text
    with pytest.raises(HeadError, match="not a Whisper head file"):
        (tmp_path / "junk.npz").write_bytes(b"junk")
        WhisperHead(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="cmd_fuse_weight"):
        CommandListener(replace(SpeechSettings(engine="kws"), cmd_fuse_weight=1.5))


# ------------------------------------------------------------------ through the listener

def listen(settings: SpeechSettings, x: np.ndarray, classify) -> tuple[list, list]:
    return listen_patched(settings, x, classify)


def test_listener_acts_on_the_command_head_and_refuses_with_it():
    """SYNTHETIC "assistant, show fascia", wake activation. (i) The classifier made unsure
    of it and Whisper's phrase scores not allowed to accept: nothing without rule M,
    "show.fascia" with it (via "command head"). (ii) The classifier made sure of "hide
    fascia": acted on without the check of sure commands; with it, refused and asked again,
    or (rule M3, the default) "show.fascia" acted on instead."""
    x = with_silence(espeak("assistant, show fascia", voice="en-gb+f1", speed_wpm=150))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                   cmd_fuse_weight=0.35, min_cmd_fused_prob=None, min_cmd_fused_veto=None,
                   min_cmd_head_alone=None, cmd_head_sure=False, min_cmd_head_unheard=None)
    p = {"_none_": 0.6, "show.fascia": 0.3}

    def unsure(r):
        return replace(r, top="_none_", top_prob=0.6, probs=p, all_probs={**r.all_probs, **p,
                       **{c: 0.0 for c in r.all_probs if c not in p and c != "_wake_"}})
    got = {v: listen(replace(base, min_cmd_fused_prob=v), x, unsure)[0] for v in (None, 0.6)}
    assert got[None] == []
    assert [(h.command, h.via) for h in got[0.6]] == [("show.fascia", "command head")]
    q = {"hide.fascia": 0.95, "show.fascia": 0.04}

    def sure(r):
        return replace(r, top="hide.fascia", top_prob=0.95, probs=q,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **q})
    off, _ = listen(base, x, sure)
    assert [h.command for h in off] == ["hide.fascia"]
    on, logs = listen(replace(base, min_cmd_fused_veto=0.7, min_cmd_fused_switch=None,
                              cmd_head_sure=True), x, sure)
    assert on == []
    (u,) = [u for u in logs if u.decision.reason.startswith("cmdfused")]
    assert u.decision.reason.startswith("cmdfused: show.fascia") and u.unclear
    assert u.whisper["kind"] == "sure" and u.whisper["addressed"]
    switched, _ = listen(replace(base, min_cmd_fused_veto=0.7, cmd_head_sure=True), x, sure)
    assert [(h.command, h.heard, h.via) for h in switched] == [
        ("show.fascia", "assistant show fascia", "command head")]


def test_where_whisper_refused_the_head_alone_acts_on_a_clear_wake_phrase():
    """Rule M7w through the listener, the shipped defaults: SYNTHETIC "assistant, show
    fascia" in one breath, the classifier made to hear no command (and every rule that
    could act before it off), Whisper's phrase scores not allowed to accept: the real command
    head on the real audio acts alone where the classifier heard the wake phrase at 0.99, not
    where it heard it at 0.9, nor with M7 off."""
    x = with_silence(espeak("assistant, show fascia", voice="en-gb+f1", speed_wpm=150))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                   min_cmd_fused_prob=None, min_cmd_fused_veto=None, min_cmd_head_alone=None,
                   min_cmd_fused_agreed=None, cmd_head_sure=False)
    assert (base.min_cmd_head_unheard, base.min_wake_head_unheard) == (0.8, 0.95)
    p = {"_none_": 0.9, "show.fascia": 0.05}

    def heard_none(wake):
        return lambda r: replace(r, top="_none_", top_prob=0.9, probs=p, wake_prob=wake,
                                 all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    clear, logs = listen(base, x, heard_none(0.99))
    assert [(h.command, h.via) for h in clear] == [("show.fascia", "command head")]
    (u,) = [u for u in logs if u.decision.kind == "accept"]
    assert u.whisper["kind"] == "reject" and u.whisper["cmd_probs"]["show.fascia"] >= 0.8
    assert "Whisper heard no command" in u.decision.reason
    assert listen(base, x, heard_none(0.9))[0] == []
    assert listen(replace(base, min_cmd_head_unheard=None), x, heard_none(0.99))[0] == []


def _said(*parts) -> np.ndarray:
    """SYNTHETIC speech (eSpeak NG en-gb+f1, 150 words a minute) of each text in ``parts``,
    with a pause of each number of seconds, in silence (rules J2 and J3's tests)."""
    return with_silence(np.concatenate([
        np.zeros(int(p * 16000), np.int16) if isinstance(p, float)
        else espeak(p, voice="en-gb+f1", speed_wpm=150) for p in parts]))


def test_after_a_wake_phrase_said_alone_the_head_can_read_it_too(monkeypatch):
    """Rule J2 (``cmd_head_joined_wake``, off by default): SYNTHETIC "assistant" <pause> "show
    fascia", wake activation. The follow-up is decided as one that follows a wake phrase said
    alone; with the setting on, the command head reads the stream from the wake phrase's start
    to the follow-up's end (the very samples fed), its probabilities are logged, and the
    command is still acted on; with it off, the stream is not asked for."""
    x = _said("assistant", 0.7, "show fascia")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, cmd_head_sure=True)
    asked = []
    real = CommandListener._stream_audio

    def spy(self, a_s, b_s):
        got = real(self, a_s, b_s)
        asked.append((a_s, b_s, got))
        return got
    monkeypatch.setattr(CommandListener, "_stream_audio", spy)
    heard, logs = listen(replace(base, cmd_head_joined_wake=True), x, lambda r: r)
    assert [h.command for h in heard] == ["show.fascia"]
    (held,) = [u for u in logs if u.decision.kind == "wake_only"]
    (u,) = [u for u in logs if u.decision.joined and u.whisper and u.whisper.get("cmd_probs")]
    ((a_s, b_s, window),) = asked
    assert a_s < held.start_s < held.end_s < u.start_s < u.end_s < b_s  # wake phrase + follow-up
    assert np.array_equal(window, x[round(a_s * 16000):round(b_s * 16000)])  # the samples fed
    want = WhisperHead(CMD_HEAD_FILE)(shared_model().context_pooled(window)[1]).probs
    assert u.whisper["cmd_probs"] == pytest.approx(want, abs=2e-5)
    asked.clear()
    heard, _ = listen(base, x, lambda r: r)
    assert [h.command for h in heard] == ["show.fascia"] and asked == []


def _unheard(r):
    """The kws classifier's result made deaf to a command (the wake phrase said alone stands:
    rule J3's tests)."""
    if r.top == "_wake_":
        return r
    p = {"_none_": 0.9}
    return replace(r, top="_none_", top_prob=0.9, probs=p,
                   all_probs={**{c: 0.0 for c in r.all_probs}, **p})


def test_the_last_resort_after_a_wake_phrase_said_alone_reads_both(monkeypatch):
    """Rule J3 (``min_cmd_head_joined_window``, 0.8 by default): SYNTHETIC "assistant" <pause>
    "show fascia", wake activation, the follow-up made unheard by every model that reads it
    alone (the classifier hears no command, the command head "other", Whisper's phrase scores
    may not accept). With the rule on, the real command head on the stream from the wake
    phrase's start to the follow-up's end names "show fascia" first and it is acted on at a bar
    under what the head gives; off, or above it, nothing is."""
    x = _said("assistant", 0.7, "show fascia")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0)
    monkeypatch.setattr(CommandListener, "_cmd_probs", lambda self, u, pooled: head_p())
    assert listen(replace(base, min_cmd_head_joined_window=None), x, _unheard)[0] == []
    heard, logs = listen(replace(base, min_cmd_head_joined_window=0.3), x, _unheard)
    assert [(h.command, h.via) for h in heard] == [("show.fascia", "command head")]
    (u,) = [u for u in logs if u.decision.kind == "accept"]
    assert u.decision.joined and u.decision.reason.startswith("cmdjoined: show.fascia")
    probs = u.whisper["joined_window_probs"]
    q = probs["show.fascia"]
    assert max(probs, key=probs.get) == "show.fascia" and q >= 0.3  # 0.40 (a 0.7 s pause)
    assert u.decision.confidence == pytest.approx(q, abs=1e-3)
    assert listen(replace(base, min_cmd_head_joined_window=min(1.0, q + 0.01)), x,
                  _unheard)[0] == []


def test_a_failed_joined_reading_loses_nothing(monkeypatch, caplog):
    """Rule J3's extra encoder pass failing (here made to raise) is logged as an error; the
    follow-up is still decided and logged, and the stream goes on."""
    x = _said("assistant", 0.7, "show fascia", 0.7, "assistant")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                   min_cmd_head_joined_window=0.3)
    monkeypatch.setattr(CommandListener, "_cmd_probs", lambda self, u, pooled: head_p())
    monkeypatch.setattr(CommandListener, "_stream_audio",
                        lambda self, a_s, b_s: np.full(16000, 12345, np.int16))
    model = type(shared_model())
    real = model.context_pooled

    def failing(self, samples):
        if len(samples) and samples[0] == 12345:
            raise RuntimeError("onnxruntime: out of memory")
        return real(self, samples)
    monkeypatch.setattr(model, "context_pooled", failing)
    heard, logs = listen(base, x, _unheard)
    assert heard == [] and "joined reading failed" in caplog.text
    assert [u.decision.kind for u in logs] == ["wake_only", "reject", "wake_only"]


def test_the_joined_reading_does_not_hold_up_the_stream(monkeypatch):
    """Rule J3's encoder pass runs on a thread of its own: while it has not finished (here it
    waits for an event), the stream is still fed and the follow-up's decision waits
    (``check_pending``); once it is done the decision comes out, acted on, with the
    utterances after it decided in the order they were said."""
    import threading
    from speech.audio import chunks
    x = _said("assistant", 0.7, "show fascia", 1.4, "assistant")
    s = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                min_cmd_head_joined_window=0.3)
    monkeypatch.setattr(CommandListener, "_cmd_probs", lambda self, u, pooled: head_p())
    go, started = threading.Event(), threading.Event()
    model = type(shared_model())
    real = model.context_pooled

    def held_back(self, samples):
        if threading.current_thread().name.startswith("joined-window"):
            started.set()
            assert go.wait(30), "never let go"
        return real(self, samples)
    monkeypatch.setattr(model, "context_pooled", held_back)
    from speech import kws
    monkeypatch.setattr(kws.KwsRecognizer, "classify",
                        lambda self, *a, real=kws.KwsRecognizer.classify, **k: _unheard(
                            real(self, *a, **k)))
    lis = CommandListener(s)
    out, fed_while_reading = [], 0
    for c, t in chunks(x, 20):
        out += lis.feed(c, t)
        if started.is_set() and not go.is_set():
            fed_while_reading += 1
            assert lis.check_pending and [u.decision.kind for u in lis.log] == ["wake_only"]
            if fed_while_reading == 10:  # 200 ms of the stream went by meanwhile
                go.set()
    out += lis.flush()
    assert fed_while_reading == 10 and [h.command for h in out] == ["show.fascia"]
    assert [u.decision.kind for u in lis.log] == ["wake_only", "accept", "wake_only"]
    assert not lis.check_pending


def test_the_look_back_keeps_the_last_samples_of_the_stream():
    """Rules J2 and J3's look back (speech/listener.py ``_Ring``): after feeds of any size,
    past its length too, it holds exactly the stream's last samples, and nothing after
    ``clear``."""
    from speech.listener import _Ring
    rng = np.random.default_rng(5)
    ring, fed = _Ring(1000), np.zeros(0, np.int16)
    for k in (0, 320, 700, 1, 2500, 320, 999):
        a = rng.integers(-2000, 2000, k).astype(np.int16)
        ring.append(a)
        fed = np.concatenate([fed, a])
        kept = fed[-1000:]
        assert len(ring) == len(kept) and np.array_equal(ring.span(0, len(ring)), kept)
        assert np.array_equal(ring.span(len(ring) // 3, len(ring) // 2),
                              kept[len(kept) // 3:len(kept) // 2])
    ring.clear()
    assert len(ring) == 0


def test_the_last_resort_acts_only_where_nothing_was_and_on_no_fragment():
    """Rule J3, pure: a multi-word command the head gives at the bar on the joined window;
    not where a command was accepted, not on a fragment, not a single word, not the wake
    phrase, not below the bar, not with the rule off."""
    th = DecisionThresholds(min_cmd_head_joined_window=0.8)
    rej = Decision("reject", reason="not a command", joined=True)
    from speech.decision import joined_window_act as act
    d = act(rej, head_p(**{"show.all": 0.93}), COMMANDS, speech_s=0.36, th=th)
    assert d.kind == "accept" and d.command == "show.all" and d.joined
    assert act(rej, head_p(**{"show.all": 0.79}), COMMANDS, speech_s=0.36, th=th) is None
    assert act(rej, head_p(**{"show.all": 0.93}), COMMANDS, speech_s=0.15, th=th) is None
    assert act(rej, head_p(up=0.95), COMMANDS, speech_s=0.36, th=th) is None
    assert act(rej, head_p(**{WAKE: 0.95}), COMMANDS, speech_s=0.36, th=th) is None
    ok = Decision("accept", command="show.bone", reason="ok", joined=True)
    assert act(ok, head_p(**{"show.all": 0.93}), COMMANDS, speech_s=0.36, th=th) is None
    assert act(rej, head_p(**{"show.all": 0.93}), COMMANDS, speech_s=0.36,
               th=DecisionThresholds(min_cmd_head_joined_window=None)) is None


def _deaf(wake: float):
    """The kws classifier's result made deaf to the wake phrase and to every command: "not
    a command" (``_none_`` 0.6) with the wake phrase at ``wake`` and no wake phrase found
    before the utterance (rule J4's tests)."""
    def f(r):
        p = {"_none_": 0.6, "_wake_": wake}
        return replace(r, top="_none_", top_prob=0.6, probs=p, wake_prob=0.0,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    return f


def test_a_wake_phrase_only_the_command_head_heard_is_read_with_the_command(monkeypatch):
    """Rule J4 (``min_soft_wake_head`` 0.99; the window's bar here 0.5, under what the head
    gives this clean voice with its pause: 0.95 by default): SYNTHETIC "assistant" <pause>
    "show fascia", wake activation, with the classifier deaf to both (the wake phrase at 0.3
    under "not a command") and Whisper accepting nothing. The real command head takes the
    first utterance for the wake phrase: it is held as a soft wake phrase, and the
    follow-up, rejected, is read together with it from the first sample of the one to the
    last of the other; the command is acted on, its start the wake phrase's. Off, above the
    head's reading, or with the classifier ruling the wake phrase out, nothing is."""
    x = _said("assistant", 0.3, "show fascia")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                   min_cmd_head_soft_window=0.5)
    asked = []
    real = CommandListener._stream_audio

    def spy(self, a_s, b_s):
        got = real(self, a_s, b_s)
        asked.append((a_s, b_s))
        return got
    monkeypatch.setattr(CommandListener, "_stream_audio", spy)
    heard, logs = listen(base, x, _deaf(0.3))
    assert [(h.command, h.via) for h in heard] == [("show.fascia", "command head")]
    wake, cmd = logs
    assert wake.decision.kind == "reject" and wake.whisper["soft_wake"]
    assert wake.whisper["cmd_probs"][WAKE] >= 0.99
    assert cmd.decision.reason.startswith("cmdsoftwake: show.fascia") and cmd.decision.wake
    probs = cmd.whisper["soft_window_probs"]
    q = probs["show.fascia"]
    assert max(probs, key=probs.get) == "show.fascia" and q >= 0.5  # 0.78
    assert cmd.decision.confidence == pytest.approx(q, abs=1e-3)
    ((a_s, b_s),) = asked
    assert a_s <= wake.start_s < wake.end_s < cmd.start_s < cmd.end_s <= b_s
    assert heard[0].start_s < cmd.start_s and heard[0].heard == "assistant show fascia"
    assert listen(replace(base, min_cmd_head_soft_window=min(1.0, q + 0.01)), x,
                  _deaf(0.3))[0] == []
    for off in (replace(base, min_soft_wake_head=None), replace(base, min_cmd_head_soft_window=None)):
        asked.clear()
        assert listen(off, x, _deaf(0.3))[0] == [] and asked == []
    heard, logs = listen(base, x, _deaf(0.01))  # the classifier rules the wake phrase out
    assert heard == [] and asked == [] and not logs[0].whisper.get("soft_wake")


def test_a_soft_wake_phrase_is_not_held_past_the_pause_a_wake_phrase_is():
    """Rule J4: the soft wake phrase waits for the next utterance no longer than a wake
    phrase said alone does (``wake_join_gap_ms``): SYNTHETIC "assistant" <2 s> "show
    fascia", the classifier deaf to both: nothing is acted on."""
    x = _said("assistant", 2.0, "show fascia")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0,
                   min_cmd_head_soft_window=0.5)
    heard, logs = listen(base, x, _deaf(0.3))
    assert heard == [] and logs[0].whisper["soft_wake"]
    assert [u.decision.kind for u in logs] == ["reject", "reject"]
    assert "soft_window_probs" not in logs[1].whisper


def test_a_soft_wake_phrase_is_the_wake_phrase_the_head_is_sure_of():
    """Rule J4, pure: an utterance decided "not a command" is a soft wake phrase with the
    command head's wake phrase at the bar, the classifier's at its floor, in speech from
    0.2 s to the wake phrase's longest; no other decision, no other reading, and not with
    the rule off; then, on the two utterances read together, a multi-word command at the
    window's bar is acted on (said after the wake phrase) where the second was decided "not
    a command", and nothing else (not after a wake phrase said alone, whose command is
    still to come)."""
    from speech.decision import soft_wake, soft_window_act
    th = DecisionThresholds()
    rej = Decision("reject", reason="not a command (_none_ 0.38, _wake_ 0.37)")
    clf, head = {"_none_": 0.38, "_wake_": 0.37}, head_p(**{WAKE: 0.9999})
    assert soft_wake(rej, head, clf, speech_s=0.43, th=th)
    assert not soft_wake(rej, head_p(**{WAKE: 0.98}), clf, speech_s=0.43, th=th)
    assert not soft_wake(rej, head, {"_none_": 0.9, "_wake_": 0.04}, speech_s=0.43, th=th)
    assert not soft_wake(rej, head, clf, speech_s=0.15, th=th)
    assert not soft_wake(rej, head, clf, speech_s=1.7, th=th)
    assert not soft_wake(replace(rej, kind="wake_only"), head, clf, speech_s=0.43, th=th)
    assert not soft_wake(rej, None, clf, speech_s=0.43, th=th)
    assert not soft_wake(rej, head, clf, speech_s=0.43,
                         th=replace(th, min_soft_wake_head=None))
    act = soft_window_act
    d = act(rej, head_p(**{"repeat": 0.98}), COMMANDS, th=th)
    assert d.kind == "accept" and d.command == "repeat" and d.wake
    assert d.heard == "assistant repeat" and d.confidence == pytest.approx(0.98)
    assert act(Decision("wake_only", reason="wake phrase alone"), head_p(unmute=0.99),
               COMMANDS, th=th) is None  # the command is still to come
    assert act(rej, head_p(**{"repeat": 0.94}), COMMANDS, th=th) is None
    assert act(rej, head_p(up=0.99), COMMANDS, th=th) is None
    assert act(rej, head_p(**{WAKE: 0.99}), COMMANDS, th=th) is None
    ok = Decision("accept", command="show.bone", reason="ok")
    assert act(ok, head_p(**{"repeat": 0.98}), COMMANDS, th=th) is None
    assert act(rej, head_p(**{"repeat": 0.98}), COMMANDS,
               th=replace(th, min_cmd_head_soft_window=None)) is None


def _sure_of(cmd: str):
    """The kws classifier's result made sure of ``cmd``, its wake phrase too, whatever was
    said (rule D's tests)."""
    def f(r):
        p = {cmd: 0.99}
        return replace(r, top=cmd, top_prob=0.99, probs=p, wake_prob=0.99,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    return f


def test_one_phrase_cut_in_two_is_not_acted_on_twice():
    """Rule D (``same_command_gap_ms``, 300 by default): SYNTHETIC "assistant, mute feedback"
    <1 s> "assistant, mute feedback", wake activation; the endpointer cuts each at the comma
    (its pieces 180 ms apart), and the classifier, made sure of "mute" with its wake phrase,
    accepts every piece. Each phrase is acted on once, its second piece refused as the same
    command again; with the rule off, every piece is acted on, and so is every piece of a
    single word (a deliberate "up ... up" is not swallowed)."""
    x = _said("assistant, mute feedback", 1.0, "assistant, mute feedback")
    base = replace(SpeechSettings(engine="kws"), second_opinion=False)
    heard, logs = listen(base, x, _sure_of("mute"))
    assert [h.command for h in heard] == ["mute", "mute"]
    kinds = [(u.decision.kind, u.decision.reason.split(",")[0]) for u in logs]
    assert kinds == [("accept", "ok"), ("reject", "the same command again"),
                     ("accept", "ok"), ("reject", "the same command again")]
    assert logs[1].start_s - logs[0].end_s < 0.3 < logs[2].start_s - logs[1].end_s
    assert [h.command for h in listen(replace(base, same_command_gap_ms=0), x,
                                      _sure_of("mute"))[0]] == ["mute"] * 4
    assert [h.command for h in listen(base, x, _sure_of("up"))[0]] == ["up"] * 4


def test_the_same_command_again_is_refused_only_close_behind():
    """Rule D, pure: the multi-word command acted on last, again less than the gap after
    it, is refused; not at the gap, not another command, not a single word, not a
    decision that accepted nothing, not with the rule off (0)."""
    from speech.decision import same_command_again as again
    ok = Decision("accept", command="block_next", heard="assistant next block", reason="ok")
    d = again(ok, "block_next", 0.18, COMMANDS, max_gap_ms=300)
    assert d.kind == "reject" and d.reason.startswith("the same command again, 180 ms")
    assert again(ok, "block_next", 0.30, COMMANDS, max_gap_ms=300) is None
    assert again(ok, "block_previous", 0.18, COMMANDS, max_gap_ms=300) is None
    assert again(replace(ok, command="up"), "up", 0.18, COMMANDS, max_gap_ms=300) is None
    assert again(replace(ok, kind="reject"), "block_next", 0.18, COMMANDS,
                 max_gap_ms=300) is None
    assert again(ok, "block_next", 0.18, COMMANDS, max_gap_ms=0) is None
    assert again(ok, None, None, COMMANDS, max_gap_ms=300) is None


def test_rule_m_does_not_stand_in_for_an_unsure_wake_phrase_whisper_did_not_hear():
    """Rule U, after the search: the head and classifier fused at 0.8 on "block.axillary"
    (read speech, wake phrase 0.58, Whisper heard no command) are not acted on where the
    wake phrase is needed; they are where Whisper heard the wake phrase alone, where none
    is needed, with the wake phrase sure, or with the rule off."""
    th = DecisionThresholds(min_cmd_fused_prob=0.6, min_wake_cmd_head=0.9)
    rej = Decision("reject", reason="wake phrase unsure", wake=True, wake_prob=0.58)
    clf, head = {"block.axillary": 0.44, "_none_": 0.17}, head_p(**{"block.axillary": 0.88})

    def act(d=rej, kind="reject", needs_wake=True, t=th):
        m = cmd_fuse(d, clf, head, COMMANDS, addressed=True, th=t, unconfirmed=True,
                     whisper_kind=kind, needs_wake=needs_wake)
        return m and m[0].kind == "accept" and m[0].command
    assert act() is None
    assert act(kind="wake_only") == "block.axillary"
    assert act(needs_wake=False) == "block.axillary"
    assert act(d=replace(rej, wake_prob=0.93)) == "block.axillary"
    assert act(t=replace(th, min_wake_cmd_head=None)) == "block.axillary"


def test_an_unsure_wake_phrase_waits_for_whispers_search():
    """Rule U: SYNTHETIC "assistant show fascia", the classifier made unsure of the command
    (0.5) and of the wake phrase (0.5). With the defaults rule X acts on it before Whisper's
    search; with min_wake_cmd_head 0.9 the search is waited for and its answer used (here it
    heard the wake phrase, which leaves the classifier's command standing)."""
    x = with_silence(espeak("assistant show fascia", voice="en-gb+f1", speed_wpm=170))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False)
    p = {"show.fascia": 0.5, "_none_": 0.3, "hide.fascia": 0.2}

    def unsure(r):
        return replace(r, top="show.fascia", top_prob=0.5, probs=p, wake_prob=0.5,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    early, logs = listen(base, x, unsure)
    assert [h.command for h in early] == ["show.fascia"]
    assert [u.whisper["kind"] for u in logs if u.whisper] == ["early"]
    waited, logs = listen(replace(base, min_wake_cmd_head=0.9), x, unsure)
    assert [h.command for h in waited] == ["show.fascia"]
    (w,) = [u.whisper for u in logs if u.whisper]
    assert w["kind"] != "early" and w["expansions"] > 0  # the search ran and was heard out


def test_a_sure_command_with_an_unsure_wake_phrase_is_checked_by_whisper():
    """Rule V: SYNTHETIC "assistant show fascia", the classifier made sure of the command
    (0.95) but not of the wake phrase (0.5). By default it skips Whisper's check; with
    min_wake_sure 0.9 it is checked (rule X acts first; with rule U on too, after Whisper's
    search, which lets it stand); with the wake phrase at 0.95 it skips the check again."""
    x = with_silence(espeak("assistant show fascia", voice="en-gb+f1", speed_wpm=170))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False)
    p = {"show.fascia": 0.95, "_none_": 0.05}

    def sure(wake):
        return lambda r: replace(r, top="show.fascia", top_prob=0.95, probs=p, wake_prob=wake,
                                 all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    skipped, logs = listen(base, x, sure(0.5))
    assert [h.command for h in skipped] == ["show.fascia"]
    assert [u.whisper for u in logs if u.whisper] == []
    checked, logs = listen(replace(base, min_wake_sure=0.9), x, sure(0.5))
    assert [h.command for h in checked] == ["show.fascia"]
    (w,) = [u.whisper for u in logs if u.whisper]
    assert w["kind"] == "early"  # checked; rule X acted before the search
    checked, logs = listen(replace(base, min_wake_sure=0.9, min_wake_cmd_head=0.9), x, sure(0.5))
    assert [h.command for h in checked] == ["show.fascia"]
    (w,) = [u.whisper for u in logs if u.whisper]
    assert w["expansions"] > 0  # rule U too: the search was heard out
    again, logs = listen(replace(base, min_wake_sure=0.9), x, sure(0.95))
    assert [h.command for h in again] == ["show.fascia"]
    assert [u.whisper for u in logs if u.whisper] == []


def test_a_sure_toggle_is_checked_and_a_swapped_one_put_right():
    """Rule C: SYNTHETIC "assistant, stop recording", the classifier made sure (0.9) of
    "record_start", the swap that changes the session. With the defaults the command head
    checks it (a toggle) and "record_stop" is acted on; with no toggles to check, the
    classifier's answer stands; "show fascia" heard as "hide fascia", not a toggle, is not
    checked by default."""
    x = with_silence(espeak("assistant, stop recording", voice="en-gb+f1", speed_wpm=150))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False)
    q = {"record_start": 0.9, "record_stop": 0.05}

    def sure(r):
        return replace(r, top="record_start", top_prob=0.9, probs=q,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **q})
    checked, logs = listen(base, x, sure)
    assert [(h.command, h.via) for h in checked] == [("record_stop", "command head")]
    (u,) = [u for u in logs if u.decision.kind == "accept"]
    assert u.whisper["kind"] == "sure" and u.whisper["cmd_probs"]["record_stop"] > 0.9
    unchecked, logs = listen(replace(base, cmd_head_sure_for=()), x, sure)
    assert [h.command for h in unchecked] == ["record_start"]
    assert all(u.whisper is None for u in logs if u.decision.kind == "accept")
    y = with_silence(espeak("assistant, show fascia", voice="en-gb+f1", speed_wpm=150))
    p = {"hide.fascia": 0.95, "show.fascia": 0.04}

    def hide(r):
        return replace(r, top="hide.fascia", top_prob=0.95, probs=p,
                       all_probs={**{c: 0.0 for c in r.all_probs}, **p})
    assert [h.command for h in listen(base, y, hide)[0]] == ["hide.fascia"]


def test_a_sure_check_of_an_unknown_command_is_a_clear_error():
    s = replace(SpeechSettings(engine="kws"), cmd_head_sure_for=("freez", "yes", "freeze"))
    with pytest.raises(ValueError, match=r"cmd_head_sure_for: \['freez', 'yes'\]"):
        CommandListener(s)


def test_listener_acts_on_the_command_head_before_whispers_search():
    """SYNTHETIC "assistant, show fascia", the classifier made unsure of it and Whisper's
    phrase scores not allowed to accept: rule M acts after Whisper's search; rule X (the
    default) acts on the same command at the encoder's output, the search not waited for."""
    x = with_silence(espeak("assistant, show fascia", voice="en-gb+f1", speed_wpm=150))
    base = replace(SpeechSettings(engine="kws"), second_opinion=False, min_whisper_regret=100.0)
    p = {"_none_": 0.6, "show.fascia": 0.3}

    def unsure(r):
        return replace(r, top="_none_", top_prob=0.6, probs=p, all_probs={**r.all_probs, **p,
                       **{c: 0.0 for c in r.all_probs if c not in p and c != "_wake_"}})
    got = {}
    for early in (False, True):
        out, logs = listen(replace(base, cmd_early=early), x, unsure)
        assert [(h.command, h.via) for h in out] == [("show.fascia", "command head")]
        (u,) = [u for u in logs if u.decision.kind == "accept"]
        got[early] = u
    assert got[False].whisper["kind"] != "early" and "expansions" in got[False].whisper
    assert "before Whisper's search" not in got[False].decision.reason
    assert got[True].whisper["kind"] == "early" and "text" not in got[True].whisper
    assert "before Whisper's search" in got[True].decision.reason
    assert got[True].whisper["cmd_probs"] == got[False].whisper["cmd_probs"]


def test_rule_m_acting_is_not_held_up_by_the_second_opinion(monkeypatch):
    """SYNTHETIC "assistant, show fascia", the classifier made unsure of it and Whisper's
    phrase scores not allowed to accept, rule X off: rule M acts after Whisper's search.
    PocketSphinx's second opinion (a decode of the whole utterance, about 100 ms) is asked
    first without rule S, and not at all with it (the default): the same command."""
    x = with_silence(espeak("assistant, show fascia", voice="en-gb+f1", speed_wpm=150))
    base = replace(SpeechSettings(engine="kws"), min_whisper_regret=100.0, cmd_early=False)
    p = {"_none_": 0.6, "show.fascia": 0.3}

    def unsure(r):
        return replace(r, top="_none_", top_prob=0.6, probs=p, all_probs={**r.all_probs, **p,
                       **{c: 0.0 for c in r.all_probs if c not in p and c != "_wake_"}})
    asked = []
    real = CommandListener._second_opinion

    def spy(self, *a, **k):
        asked.append(1)
        return real(self, *a, **k)
    monkeypatch.setattr(CommandListener, "_second_opinion", spy)
    got = {}
    for s in (False, True):
        asked.clear()
        out, logs = listen(replace(base, cmd_before_second_opinion=s), x, unsure)
        got[s] = ([(h.command, h.via) for h in out], len(asked))
        assert [u.whisper["kind"] for u in logs if u.decision.kind == "accept"] == ["reject"]
    assert got[False] == ([("show.fascia", "command head")], 1)
    assert got[True] == ([("show.fascia", "command head")], 0)
