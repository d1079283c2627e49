"""The assistant's pure decision logic: reduce(state, msg, header, now_s)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assistant.logic import (COMMANDS, HELP_TEXT, NOTICE_S, LogEvent, PublishState, RecordSample,
                             SetRecording, Speak, Tick, initial_state, reduce,
                             to_state_message)
from assistant.logic_settings import AssistantSettings
from assistant.messages import (AssistantState, Frame, NodeStatus, SegResult, SpeechCommand,
                                SpeechUnclear, decode, encode, needle_dict)
from models.classes import CLASS_INDEX, CLASSES, LAYERS


def cmd(command: str, role: str = "operator", heard: str | None = None) -> SpeechCommand:
    return SpeechCommand(command=command, heard=heard or command.replace(".", " "),
                         confidence=0.9, start_s=0.0, end_s=0.5, role=role)


def speaks(actions, priority=None) -> list[str]:
    return [a.text for a in actions if isinstance(a, Speak)
            and (priority is None or a.priority == priority)]


def events(actions, kind=None) -> list[LogEvent]:
    return [a for a in actions if isinstance(a, LogEvent) and (kind is None or a.kind == kind)]


def pecs_labels(h=200, w=200, pleura_row=170) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[30:60] = CLASS_INDEX["pec_major"]
    lab[60:100] = CLASS_INDEX["pec_minor"]
    lab[100:140] = CLASS_INDEX["serratus"]
    lab[pleura_row:pleura_row + 6] = CLASS_INDEX["pleura"]
    return lab


def seg(frame_id: int, labels: np.ndarray, needle: dict | None = None,
        confidence=None) -> SegResult:
    n = len(CLASSES)
    return SegResult(frame_id=frame_id, media_time_s=0.0, frame_t_mono=0.0, labels=labels,
                     classes=list(CLASSES), confidence=confidence or [1.0] * n,
                     present=[True] * n, needle=needle or {})


def run(state, msgs_at):
    """Feed [(now_s, msg), ...]; return final state and all actions."""
    out = []
    for t, m in msgs_at:
        state, acts = reduce(state, m, None, t)
        out += acts
    return state, out


# ----------------------------------------------------------------------------- every command

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_handled_logged_and_acknowledged(command):
    state = initial_state(AssistantSettings())
    new, actions = reduce(state, cmd(command), None, 1.0)
    heard = events(actions, "command_heard")
    assert len(heard) == 1 and heard[0].data["command"] == command
    assert heard[0].data["role"] == "operator"
    said = [a for a in actions if isinstance(a, Speak)]
    assert len(said) == 1, f"{command} should say exactly one thing, said {said}"
    assert said[0].priority in ("ack", "answer")
    assert said[0].text
    assert new.last_heard == command.replace(".", " ")
    # the state message is always encodable on the wire
    frames, _ = encode(to_state_message(new, 7), "test")
    _, back = decode(frames)
    assert isinstance(back, AssistantState) and back.frame_id == 7


def test_command_list_matches_the_contract():
    layers = ["nerve", "vessel", "fascia", "muscle", "bone", "pleura", "needle", "all"]
    expected = ({f"show.{x}" for x in layers} | {f"hide.{x}" for x in layers}
                | {"quality_score", "needle_depth", "where_target", "freeze", "unfreeze",
                   "record_start", "record_stop", "injection_start", "injection_stop",
                   "block_next", "block_previous", "repeat", "help", "mute", "unmute"}
                | {f"block.{b}" for b in ("pecs1", "pecs2", "interscalene",
                                          "supraclavicular", "axillary", "femoral")}
                | set("yes no stop go up down left right on off".split()))
    assert set(COMMANDS) == expected


@pytest.mark.parametrize("layer", list(LAYERS))
def test_show_hide_layer(layer):
    s = initial_state()
    s, acts = reduce(s, cmd(f"hide.{layer}"), None, 0.0)
    assert s.layers[layer] is False
    assert all(v for k, v in s.layers.items() if k != layer)
    assert any(isinstance(a, PublishState) for a in acts)
    assert to_state_message(s).layers[layer] is False
    s, _ = reduce(s, cmd(f"show.{layer}"), None, 0.1)
    assert s.layers[layer] is True


def test_hide_all_then_show_one_turns_overlay_back_on():
    s = initial_state()
    s, _ = reduce(s, cmd("hide.all"), None, 0)
    assert not any(s.layers.values())
    s, _ = reduce(s, cmd("off"), None, 1)
    assert s.overlay_on is False
    s, _ = reduce(s, cmd("show.fascia"), None, 2)
    assert s.layers["fascia"] and s.overlay_on


def test_unknown_command_is_a_logged_error_not_a_crash(caplog):
    s = initial_state()
    with caplog.at_level("ERROR", logger="assistant.logic"):
        new, acts = reduce(s, cmd("launch.rocket"), None, 0)
    assert "launch.rocket" in caplog.text
    assert any("unknown command" in e.text for e in events(acts, "info"))
    assert speaks(acts) == ["sorry, I can't do that"]
    assert dataclasses.replace(new, last_heard="", now_s=0) == \
        dataclasses.replace(s, last_heard="", now_s=0)


def test_unknown_role_is_ignored_with_a_clear_error(caplog):
    s = initial_state()
    with caplog.at_level("ERROR", logger="assistant.logic"):
        new, acts = reduce(s, cmd("freeze", role="patient"), None, 0)
    assert "patient" in caplog.text and not new.frozen
    assert not speaks(acts)


def test_reduce_rejects_other_message_types_and_missing_time():
    s = initial_state()
    with pytest.raises(TypeError, match="cannot handle"):
        reduce(s, "freeze", None, 0.0)
    with pytest.raises(ValueError, match="now_s"):
        reduce(s, cmd("freeze"), None, None)


# ----------------------------------------------------------------------------- confirmations

def test_record_stop_needs_yes():
    s = initial_state()
    s, acts = reduce(s, cmd("record_start"), None, 0)
    assert s.recording and SetRecording(True) in acts
    s, acts = reduce(s, cmd("record_stop"), None, 1)
    assert s.recording and s.pending is not None
    assert "say yes or no" in speaks(acts)[0]
    assert to_state_message(s).pending_confirmation == s.pending.prompt
    s, acts = reduce(s, cmd("yes"), None, 2)
    assert not s.recording and s.pending is None
    assert SetRecording(False) in acts
    assert [e.text for e in events(acts, "recording")] == ["recording stopped"]


def test_no_cancels():
    s = initial_state()
    s, _ = reduce(s, cmd("go"), None, 0)
    s, _ = reduce(s, cmd("stop"), None, 1)
    s, acts = reduce(s, cmd("no"), None, 2)
    assert s.recording and s.pending is None
    assert speaks(acts) == ["cancelled"]
    assert not any(isinstance(a, SetRecording) for a in acts)


def test_confirmation_times_out_on_tick():
    settings = AssistantSettings(confirm_timeout_s=5.0)
    s = initial_state(settings)
    s, _ = reduce(s, cmd("record_start"), None, 0)
    s, _ = reduce(s, cmd("record_stop"), None, 10)
    s, acts = reduce(s, Tick(14.9), None, 14.9)
    assert s.pending is not None and not acts
    s, acts = reduce(s, Tick(15.1))
    assert s.pending is None and s.recording
    assert speaks(acts) == ["cancelled"]
    assert events(acts, "action")[0].data["reason"] == "timeout"
    # a late "yes" confirms nothing
    s, acts = reduce(s, cmd("yes"), None, 16)
    assert s.recording and speaks(acts) == ["nothing to confirm"]


def test_freeze_heard_while_frozen_offers_unfreeze_and_yes_unfreezes():
    # "assistant, unfreeze" heard as "freeze" (measured for some eSpeak voices): the
    # speaker is offered what they more likely said, and one "yes" does it
    s = initial_state()
    s, _ = reduce(s, cmd("freeze"), None, 0)
    assert s.frozen and s.pending is None
    s, acts = reduce(s, cmd("freeze"), None, 1)
    assert s.frozen and s.pending.command == "unfreeze" and s.pending.offer
    assert speaks(acts) == ["already frozen. unfreeze? say yes or no"]
    assert to_state_message(s).pending_confirmation == s.pending.prompt
    assert events(acts, "action")[0].data["offered"] == "unfreeze"
    s, acts = reduce(s, cmd("yes"), None, 2)
    assert not s.frozen and s.pending is None and speaks(acts) == ["live"]


def test_record_start_heard_while_recording_offers_stop_and_yes_is_the_confirmation():
    s = initial_state()
    s, _ = reduce(s, cmd("record_start"), None, 0)
    s, acts = reduce(s, cmd("record_start"), None, 1)
    assert s.recording and s.pending.command == "record_stop"
    assert speaks(acts) == ["already recording. stop recording? say yes or no"]
    assert not any(isinstance(a, SetRecording) for a in acts)
    s, acts = reduce(s, cmd("yes"), None, 2)  # no second question
    assert not s.recording and s.pending is None and SetRecording(False) in acts


@pytest.mark.parametrize("said,state_kw,offered", [
    ("unfreeze", {}, "freeze"),
    ("record_stop", {}, "record_start"),
    ("injection_start", {"injecting": True}, "injection_stop"),
    ("injection_stop", {}, "injection_start"),
])
def test_every_multiword_toggle_offers_its_opposite_only_when_it_changes_nothing(
        said, state_kw, offered):
    s = dataclasses.replace(initial_state(), **state_kw)
    s2, acts = reduce(s, cmd(said), None, 0)
    assert s2.pending is not None and s2.pending.command == offered
    assert speaks(acts)[0].endswith("? say yes or no")
    # the same command where it does change something: done at once, nothing offered
    s3, _ = reduce(s2, cmd(offered), None, 1)
    assert s3.pending is None or s3.pending.command != offered


def test_single_words_and_show_hide_offer_nothing():
    s = initial_state()  # not recording, overlay on, every layer shown
    for word in ("stop", "on", "show.nerve"):
        s2, acts = reduce(s, cmd(word), None, 0)
        assert s2.pending is None, word


def test_an_offer_lapses_silently_or_is_declined_with_ok():
    s = initial_state(AssistantSettings(confirm_timeout_s=5.0))
    s, _ = reduce(s, cmd("unfreeze"), None, 0)
    s, acts = reduce(s, Tick(5.1))
    assert s.pending is None and not speaks(acts) and not s.frozen
    assert events(acts, "action")[0].data["reason"] == "timeout"
    s, _ = reduce(s, cmd("unfreeze"), None, 6)
    s, acts = reduce(s, cmd("no"), None, 7)
    assert s.pending is None and not s.frozen and speaks(acts) == ["OK"]


def test_another_command_withdraws_an_offer():
    s = initial_state()
    s, _ = reduce(s, cmd("unfreeze"), None, 0)
    s, _ = reduce(s, cmd("quality_score"), None, 1)
    assert s.pending is None
    s, acts = reduce(s, cmd("yes"), None, 2)  # a late "yes" does not freeze the image
    assert not s.frozen and speaks(acts) == ["nothing to confirm"]


def test_offer_opposite_off_only_acknowledges():
    s = initial_state(AssistantSettings(offer_opposite=False))
    s, _ = reduce(s, cmd("freeze"), None, 0)
    s, acts = reduce(s, cmd("freeze"), None, 1)
    assert s.pending is None and speaks(acts) == ["frozen"]


def test_block_change_while_recording_needs_confirmation_but_not_otherwise():
    s = initial_state(AssistantSettings(block="pecs2"))
    s, acts = reduce(s, cmd("block.pecs1"), None, 0)
    assert s.block == "pecs1" and speaks(acts) == ["PECS one"]
    s, _ = reduce(s, cmd("record_start"), None, 1)
    s, acts = reduce(s, cmd("block_next"), None, 2)
    assert s.block == "pecs1" and s.pending.command == "block_next"
    assert "switch to PECS two" in speaks(acts)[0]
    s, acts = reduce(s, cmd("yes"), None, 3)
    assert s.block == "pecs2" and speaks(acts) == ["PECS two"]


def test_only_the_asker_or_a_supervisor_answers():
    s = initial_state()
    s, _ = reduce(s, cmd("record_start", role="supervisor"), None, 0)
    s, _ = reduce(s, cmd("record_stop", role="supervisor"), None, 1)
    s, acts = reduce(s, cmd("yes", role="operator"), None, 2)
    assert s.pending is not None and s.recording
    s, acts = reduce(s, cmd("yes", role="supervisor"), None, 3)
    assert s.pending is None and not s.recording


def test_supervisor_may_answer_for_the_operator():
    s = initial_state()
    s, _ = reduce(s, cmd("go"), None, 0)
    s, _ = reduce(s, cmd("stop"), None, 1)
    s, _ = reduce(s, cmd("yes", role="supervisor"), None, 2)
    assert not s.recording


# ----------------------------------------------------------------------------- repeat, help, mute

def test_repeat_says_the_last_answer_again():
    s = initial_state()
    s, acts = reduce(s, cmd("repeat"), None, 0)
    assert speaks(acts) == ["nothing to repeat"]
    s, _ = run(s, [(0.5, seg(1, pecs_labels()))])
    s, acts = reduce(s, cmd("quality_score"), None, 1)
    answer = speaks(acts)[0]
    s, _ = reduce(s, cmd("freeze"), None, 2)  # an ack is not an answer
    s, acts = reduce(s, cmd("repeat"), None, 3)
    assert speaks(acts) == [answer]


def test_help_lists_what_can_be_said():
    s = initial_state()
    s, acts = reduce(s, cmd("help"), None, 0)
    assert speaks(acts, "answer") == [HELP_TEXT]
    for phrase in ("quality score", "needle depth", "freeze", "repeat", "next block"):
        assert phrase in HELP_TEXT
    info = [e for e in events(acts, "info") if e.text == "help"]
    assert set(info[0].data["commands"]) == set(COMMANDS)


def test_mute_silences_acks_and_answers_but_not_alerts():
    s = initial_state()
    s, acts = reduce(s, cmd("mute"), None, 0)
    assert s.muted and speaks(acts) == ["muted"]
    s, acts = reduce(s, cmd("freeze"), None, 1)
    assert s.frozen and not speaks(acts)
    s, acts = reduce(s, NodeStatus(node="segmentation", state="offline"), None, 2)
    assert speaks(acts, "alert") == ["segmentation offline"]
    s, acts = reduce(s, cmd("unmute"), None, 3)
    assert not s.muted and speaks(acts) == ["sound on"]


def test_the_record_says_which_commands_came_through_the_second_opinion():
    s, acts = reduce(initial_state(), cmd("show.nerve"), None, 1)
    (e,) = events(acts, "command_heard")
    assert "via" not in e.data
    second = dataclasses.replace(cmd("show.nerve"), via="second opinion")
    s, acts = reduce(s, second, None, 2)
    (e,) = events(acts, "command_heard")
    assert e.data["via"] == "second opinion" and events(acts, "action")  # acted on as any
    assert decode(encode(second, "speech:1")[0])[1] == second  # it survives the wire


def test_a_command_not_understood_is_asked_again_and_changes_nothing_else():
    s0 = initial_state()
    unclear = SpeechUnclear(heard="assistant", start_s=1.0, end_s=1.8, guess="show.nerve",
                            reason="show.nerve only 0.22")
    s, acts = reduce(s0, unclear, None, 2)
    assert speaks(acts, "ack") == ["say again"]
    (e,) = events(acts, "command_unclear")
    assert e.data["guess"] == "show.nerve" and e.data["heard"] == "assistant"
    assert to_state_message(s).last_heard == "assistant ... (not understood)"
    assert not events(acts, "action")  # nothing was done
    assert dataclasses.replace(s, last_heard="", notice="", notice_until_s=0.0,
                               now_s=0.0) == dataclasses.replace(s0, now_s=0.0)
    # the monitor says it too, for a few seconds (the spoken word can be lost in the noise)
    assert to_state_message(s).notice == "not understood: say again"
    later, acts = reduce(s, Tick(now_s=2 + NOTICE_S - 0.1), None)
    assert to_state_message(later).notice and not any(isinstance(a, PublishState) for a in acts)
    later, acts = reduce(later, Tick(now_s=2 + NOTICE_S + 0.1), None)
    assert not to_state_message(later).notice and any(isinstance(a, PublishState) for a in acts)
    # a command understood next clears it at once
    s2, _ = reduce(s, cmd("show.nerve"), None, 2.5)
    assert not to_state_message(s2).notice
    # "repeat" still says the last answer, not "say again"
    assert s.last_answer == s0.last_answer
    # a question waiting for yes or no is asked again
    s, _ = reduce(initial_state(), cmd("go"), None, 0)
    s, _ = reduce(s, cmd("stop"), None, 1)
    s, acts = reduce(s, unclear, None, 2)
    assert speaks(acts) == ["stop recording? say yes or no"] and s.pending is not None
    # muted: shown and logged, not spoken
    s, _ = reduce(initial_state(), cmd("mute"), None, 0)
    s, acts = reduce(s, unclear, None, 1)
    assert not speaks(acts) and events(acts, "command_unclear")
    # it travels as a message of its own
    back = decode(encode(unclear, "speech:1")[0])[1]
    assert back == unclear


# ----------------------------------------------------------------------------- supervisor

def test_supervisor_commands_are_logged_as_such_and_prompts_named():
    s = initial_state()
    s, acts = reduce(s, cmd("down", role="supervisor", heard="down"), None, 0)
    heard = events(acts, "command_heard")[0]
    assert heard.data["role"] == "supervisor" and heard.text.startswith("supervisor:")
    assert speaks(acts) == ["supervisor suggests increase depth"]
    assert to_state_message(s).guidance["depth_hint"] == "increase depth"
    assert all(e.data.get("role") == "supervisor" for e in events(acts, "action"))
    s, acts = reduce(s, cmd("up"), None, 1)
    assert speaks(acts) == ["decrease depth"]


def test_panel_and_overlay_words():
    s = initial_state()
    s, _ = reduce(s, cmd("left"), None, 0)
    assert to_state_message(s).guidance["panel"] == "left"
    s, _ = reduce(s, cmd("right"), None, 0)
    assert to_state_message(s).guidance["panel"] == "right"
    s, _ = reduce(s, cmd("off"), None, 0)
    assert to_state_message(s).overlay_on is False
    s, _ = reduce(s, cmd("on"), None, 0)
    assert to_state_message(s).overlay_on is True


def test_block_next_and_previous_wrap_around():
    s = initial_state(AssistantSettings(block="femoral"))
    ids = [p.id for p in s.presets]
    s, _ = reduce(s, cmd("block_next"), None, 0)
    assert s.block == ids[0]
    s, _ = reduce(s, cmd("block_previous"), None, 0)
    assert s.block == "femoral"


def test_injection_marks():
    s = initial_state()
    s, acts = reduce(s, cmd("injection_start"), None, 10.0)
    assert s.injecting and events(acts, "injection")[0].data["mark"] == "start"
    s, acts = reduce(s, cmd("injection_stop"), None, 16.0)
    ev = events(acts, "injection")[0]
    assert ev.data["mark"] == "stop" and ev.data["duration_s"] == pytest.approx(6.0)
    assert speaks(acts) == ["injection stopped, six seconds"]


def test_initial_state_rejects_a_block_not_in_presets():
    with pytest.raises(ValueError, match="unknown block 'knee'"):
        initial_state(AssistantSettings(block="knee"))


# ----------------------------------------------------------------------------- segmentation

def test_seg_updates_quality_guidance_records_and_publishes():
    s = initial_state()
    rng = np.random.default_rng(0)
    img = rng.rayleigh(45, (200, 200)).clip(0, 255).astype(np.uint8)
    nd = needle_dict(True, tip_px=[100, 80], tip_mm=[20, 16], angle_deg=30, depth_mm=16.0)
    s, acts = run(s, [(0.0, Frame(frame_id=1, media_time_s=0, image=img, spacing_mm=0.2,
                                  depth_mm=40)),
                      (0.05, seg(1, pecs_labels(), nd))])
    assert s.quality is not None and "image" in s.quality_parts
    assert s.guidance["to_target_mm"] == pytest.approx((100 - 80) * 0.2, abs=0.3)
    kinds = [a.kind for a in acts if isinstance(a, RecordSample)]
    assert kinds == ["quality", "needle"]
    assert isinstance(acts[-1], PublishState)
    s, acts = reduce(s, cmd("needle_depth"), None, 1)
    assert speaks(acts) == ["depth sixteen millimetres, four above the plane"]
    msg = to_state_message(s)
    assert msg.quality == s.quality and msg.guidance["target_plane_px"]
    assert msg.guidance["nearest_danger"]["name"] == "pleura"


def test_quality_answer_names_the_missing_structure():
    s = initial_state(AssistantSettings(block="pecs2"))
    lab = pecs_labels()
    lab[lab == CLASS_INDEX["serratus"]] = 0
    s, _ = run(s, [(0, seg(1, lab))])
    s, acts = reduce(s, cmd("quality_score"), None, 1)
    text = speaks(acts)[0]
    assert text.endswith(": serratus not seen")
    assert text.split(":")[0] in ("sixty", "sixty one", "sixty two", "fifty nine",
                                  "sixty three", "sixty four", "sixty five", "sixty six",
                                  "sixty seven")


def test_quality_low_alert_after_set_time_once_and_rearms():
    settings = AssistantSettings(quality_low_threshold=50, quality_low_alert_s=3.0)
    s = initial_state(settings)
    bad = np.zeros((200, 200), np.uint8)  # nothing found: score 0
    out = []
    for i in range(0, 50):  # 10 Hz for 5 s
        s, acts = reduce(s, seg(i, bad), None, i * 0.1)
        out.append((i * 0.1, speaks(acts, "alert")))
    alerts = [(t, a) for t, a in out if a]
    assert len(alerts) == 1
    t_alert, texts = alerts[0]
    assert 3.0 <= t_alert < 3.2 and texts[0].startswith("quality low")
    s, _ = reduce(s, seg(60, pecs_labels()), None, 6.0)  # good again: re-arms
    assert s.quality_low_since_s is None and not s.quality_alerted


def test_node_offline_and_back():
    s = initial_state()
    s, _ = run(s, [(0, seg(1, pecs_labels(),
                           needle_dict(True, [100, 80], [20, 16], 30, 16.0)))])
    assert s.guidance
    s, acts = reduce(s, NodeStatus(node="segmentation", state="offline"), None, 1)
    assert speaks(acts) == ["segmentation offline"] and speaks(acts, "alert")
    assert s.guidance == {} and to_state_message(s).nodes["segmentation"] == "offline"
    assert events(acts, "node")
    s, acts = reduce(s, NodeStatus(node="segmentation", state="offline"), None, 1.5)
    assert not speaks(acts)  # said once
    s, acts = reduce(s, NodeStatus(node="segmentation", state="restarted", restarts=1),
                     None, 2)
    assert not speaks(acts) and s.nodes["segmentation"] == "offline"  # spawned, not ready yet
    assert events(acts, "node")
    s, acts = reduce(s, NodeStatus(node="segmentation", state="online", restarts=1), None, 2.5)
    assert speaks(acts) == ["segmentation back"]
    assert s.nodes["segmentation"] == "online"
    assert not any(a["text"] == "segmentation offline" for a in to_state_message(s).alerts)


def test_bad_segmentation_is_logged_and_dropped(caplog):
    s = initial_state()
    with caplog.at_level("ERROR", logger="assistant.logic"):
        new, acts = reduce(s, seg(1, np.zeros((4, 4, 4), np.uint8)), None, 0)
    assert "labels must be" in caplog.text
    assert new.quality is None and events(acts, "info")


def test_replay_is_deterministic():
    def session():
        s = initial_state()
        out = []
        for i in range(30):
            nd = needle_dict(True, [100, 40 + 4 * i], None, 40, (40 + 4 * i) * 0.2)
            s, a = reduce(s, seg(i, pecs_labels(), nd), None, i * 0.1)
            out += a
            if i == 10:
                s, a = reduce(s, cmd("needle_depth"), None, i * 0.1 + 0.01)
                out += a
        return s, out
    s1, a1 = session()
    s2, a2 = session()
    assert a1 == a2
    assert to_state_message(s1) == to_state_message(s2)


def test_needle_lost_while_advancing_alerts_after_set_time():
    settings = AssistantSettings(needle_lost_alert_s=2.0)
    s = initial_state(settings)
    lab = pecs_labels()
    t = 0.0
    for i in range(10):  # advancing 0.5 mm per 0.1 s
        t = i * 0.1
        s, _ = reduce(s, seg(i, lab, needle_dict(True, [100, 50 + 2.5 * i], None, 40,
                                                 10 + 0.5 * i)), None, t)
    assert s.needle_advancing
    lost_at = t
    said = []
    for k in range(1, 40):
        now = lost_at + k * 0.1
        s, acts = reduce(s, seg(100 + k, lab, needle_dict(False, frames_missing=k)), None, now)
        said += [(now, x) for x in speaks(acts, "alert")]
    assert len(said) == 1 and said[0][1].startswith("needle lost")
    assert 2.0 < said[0][0] - lost_at <= 2.15


def test_needle_lost_without_advancing_is_not_an_alert():
    s = initial_state()
    lab = pecs_labels()
    for i in range(10):  # still needle
        s, _ = reduce(s, seg(i, lab, needle_dict(True, [100, 60], None, 40, 12.0)), None, i * 0.1)
    for k in range(1, 40):
        s, acts = reduce(s, Tick(1 + k * 0.1))
        assert not speaks(acts, "alert")


def test_questions_while_segmentation_is_offline_say_so():
    s = initial_state()
    s, _ = run(s, [(0, seg(1, pecs_labels()))])
    s, _ = reduce(s, NodeStatus(node="segmentation", state="offline"), None, 1)
    for q in ("quality_score", "needle_depth", "where_target"):
        s, acts = reduce(s, cmd(q), None, 2)
        assert speaks(acts) == ["segmentation offline"]
    # a block change keeps the node alert on screen
    s, _ = reduce(s, cmd("block.pecs1"), None, 2.5)
    assert [a["text"] for a in to_state_message(s).alerts] == ["segmentation offline"]


def test_command_record_carries_the_bus_message_id():
    from assistant.messages import Header

    h = Header(type="speech_cmd", source="speech:1")
    _, acts = reduce(initial_state(), cmd("freeze"), h, 0)
    assert events(acts, "command_heard")[0].data["msg_id"] == h.msg_id


def test_danger_alerts_use_the_level_the_renderer_ranks_first():
    from ar.overlay import LEVEL_RANK

    s = initial_state()
    lab = pecs_labels(pleura_row=170)
    nd = needle_dict(True, [100, 150], [20.0, 30.0], 40, 30.0)  # 0.2 mm/px: 4 mm away
    s, acts = reduce(s, seg(1, lab, nd), None, 0)
    assert speaks(acts, "alert") == ["stop, pleura four millimetres"]
    (alert,) = to_state_message(s).alerts
    assert alert["level"] == "alert" and LEVEL_RANK[alert["level"]] == 0
    s, _ = reduce(s, NodeStatus(node="speech", state="offline"), None, 0.1)
    levels = {a["text"]: a["level"] for a in to_state_message(s).alerts}
    assert levels["speech offline"] == "warning" and "warning" in LEVEL_RANK


@pytest.mark.parametrize("vessel_confidence, said", [
    (0.9, "stop, artery two millimetres"),
    (0.2, "stop, possible artery two millimetres"),  # still said: doubt is no reason to go on
])
def test_an_unsure_vessel_is_spoken_as_a_possible_artery(vessel_confidence, said):
    lab = pecs_labels(pleura_row=190)  # pleura 8 mm away: no pleura alert
    lab[160:170, 95:106] = CLASS_INDEX["vessel"]  # 10 px = 2 mm below the tip
    conf = [1.0] * len(CLASSES)
    conf[CLASS_INDEX["vessel"]] = vessel_confidence
    nd = needle_dict(True, [100, 150], [20.0, 30.0], 40, 30.0)  # 0.2 mm/px
    # first seen at the tip, the vessel waits two segmentations (rules P, P2; test_fluid.py)
    s = initial_state()
    for i in range(2):
        s, acts = reduce(s, seg(1 + i, lab, nd, confidence=conf), None, 0.05 * i)
        assert speaks(acts, "alert") == []
    s, acts = reduce(s, seg(3, lab, nd, confidence=conf), None, 0.1)
    assert speaks(acts, "alert") == [said]
    assert [a["text"] for a in to_state_message(s).alerts] == [said]
    with pytest.raises(ValueError, match="danger_unsure_below must be within 0..1"):
        AssistantSettings(danger_unsure_below=1.5)


def test_danger_alert_is_not_spoken_again_within_the_repeat_time_when_the_mask_flickers():
    s = initial_state()
    near = needle_dict(True, [100, 150], [20.0, 30.0], 40, 30.0)  # 4 mm above the pleura
    far = needle_dict(True, [100, 100], [20.0, 20.0], 40, 30.0)  # 14 mm: re-arms (> 7.5)
    spoken = []
    t = 0.0
    for i, nd in enumerate([near, far, near, far, near]):  # 0.5 s apart: a flicker
        s, acts = reduce(s, seg(i + 1, pecs_labels(pleura_row=170), nd), None, t)
        spoken += speaks(acts, "alert")
        t += 0.5
    assert spoken == ["stop, pleura four millimetres"]
    assert any(a["text"].startswith("stop, pleura") for a in to_state_message(s).alerts)
    s, acts = reduce(s, seg(9, pecs_labels(pleura_row=170), far), None, t)
    s, acts = reduce(s, seg(10, pecs_labels(pleura_row=170), near), None, t + 4.0)
    assert speaks(acts, "alert") == ["stop, pleura four millimetres"]  # after 4 s: again


def test_a_danger_banner_never_shows_an_older_nearer_distance_than_the_tip_is_now():
    s = initial_state()
    lab = pecs_labels(pleura_row=170)  # 0.2 mm/px below
    tip = {4: 150, 6: 140, 14: 100}  # mm above the pleura -> tip row
    s, acts = reduce(s, seg(1, lab, needle_dict(True, [100, tip[4]], [20.0, 30.0], 40, 30.0)),
                     None, 0)
    assert [(a["level"], a["text"]) for a in to_state_message(s).alerts] == [
        ("alert", "stop, pleura four millimetres")]
    # withdrawn to 6 mm (out of the 5 mm zone, not yet re-armed): the banner says so
    s, acts = reduce(s, seg(2, lab, needle_dict(True, [100, tip[6]], [20.0, 28.0], 40, 28.0)),
                     None, 0.5)
    assert not speaks(acts, "alert")
    assert [(a["level"], a["text"]) for a in to_state_message(s).alerts] == [
        ("warning", "pleura six millimetres")]
    # clearly out (14 mm > 7.5): taken down before its time is up
    s, acts = reduce(s, seg(3, lab, needle_dict(True, [100, tip[14]], [20.0, 20.0], 40, 20.0)),
                     None, 1.0)
    assert to_state_message(s).alerts == []


# ----------------------------------------------------------------------------- restart

def test_operator_choices_survive_a_round_trip_through_json():
    """What the operator chose by voice is saved as JSON and applied to a fresh state (a
    restarted assistant), including the running injection mark."""
    import json

    from assistant.logic import operator_choices, restore_choices
    s, _ = run(initial_state(), [(1, cmd("hide.fascia")), (2, cmd("freeze")),
                                 (3, cmd("injection_start")), (4, cmd("mute"))])
    saved = json.loads(json.dumps(operator_choices(s)))
    fresh = initial_state()
    assert operator_choices(fresh) != saved
    back, problems = restore_choices(fresh, saved)
    assert problems == [] and operator_choices(back) == operator_choices(s)
    assert back.layers["fascia"] is False and back.frozen and back.muted
    # the restored injection is stopped with its real duration
    _, acts = reduce(back, cmd("injection_stop"), None, 10)
    assert events(acts, "injection")[0].data["duration_s"] == pytest.approx(7)


def test_a_question_open_at_a_crash_is_cancelled_and_said_so():
    """A restarted assistant does not hold a confirmation open across the crash: it says
    the question was cancelled, and a later "yes" does nothing."""
    import json

    from assistant.logic import operator_choices, restart_actions, restore_choices
    s, _ = run(initial_state(), [(1, cmd("record_start")), (2, cmd("record_stop"))])
    assert s.pending is not None and s.recording
    saved = json.loads(json.dumps(operator_choices(s)))
    assert saved["pending_prompt"].startswith("stop recording")
    back, problems = restore_choices(initial_state(), saved)
    assert problems == [] and back.pending is None and back.recording
    back, acts = restart_actions(back, saved)
    said = [a.text for a in acts if isinstance(a, Speak)]
    assert said == ["assistant restarted: stop recording cancelled, say it again"]
    assert any(isinstance(a, LogEvent) and a.text == "cancelled (restart): stop recording"
               for a in acts)
    after, acts = reduce(back, cmd("yes"), None, 5)
    assert after.recording and [a.text for a in acts if isinstance(a, Speak)] == [
        "nothing to confirm"]
    # nothing open: the restart is only logged
    quiet, acts = restart_actions(initial_state(), operator_choices(initial_state()))
    assert [type(a).__name__ for a in acts] == ["LogEvent"]
    assert restore_choices(initial_state(), {"pending_prompt": 3})[1]


def test_damaged_choices_cost_only_the_bad_values():
    from assistant.logic import restore_choices
    s, problems = restore_choices(initial_state(), {
        "overlay_on": False, "frozen": "yes", "block": "no_such_block", "panel": "up",
        "layers": {"fascia": False, "spleen": False}, "injection_start_s": float("nan"),
        "colour": "red"})
    assert s.overlay_on is False and s.layers["fascia"] is False
    assert s.frozen is False and s.block == initial_state().block and s.panel == "right"
    text = "\n".join(problems)
    for name in ("frozen", "no_such_block", "panel", "layers.spleen", "injection_start_s",
                 "colour"):
        assert name in text, (name, text)
    assert restore_choices(initial_state(), ["not", "a", "mapping"])[1]


# ----------------------------------------------------------------------------- unverified

SHIPPED_CALIBRATED = ["nerve", "vessel", "fascia"]  # what the shipped manifest calibrates


def calibrated_seg(frame_id, labels, needle=None, calibrated=SHIPPED_CALIBRATED):
    return dataclasses.replace(seg(frame_id, labels, needle), calibrated=calibrated)


def test_answers_resting_on_classes_never_checked_on_real_scans_say_unverified():
    nd = needle_dict(True, [100, 90], [20.0, 30.0], 40, 18.0)  # 0.2 mm/px
    s, _ = run(initial_state(), [(0, calibrated_seg(1, pecs_labels(), nd))])
    assert s.block == "pecs2"
    assert s.unverified >= {"pec_major", "pec_minor", "serratus", "pleura", "needle"}
    assert not s.unverified & {"nerve", "vessel", "fascia"}
    said = {q: speaks(reduce(s, cmd(q), None, 1)[1])[0]
            for q in ("quality_score", "needle_depth", "where_target")}
    # PECS II's key structures are the three muscles: one word for them
    assert said["quality_score"].endswith(", muscles unverified"), said
    assert said["needle_depth"].startswith("depth eighteen millimetres")
    assert said["needle_depth"].endswith(", unverified")
    assert said["where_target"].startswith("the plane between pec minor and serratus")
    assert said["where_target"].endswith(", unverified")

    # the same frames from a producer that makes no claim (ground truth): nothing added
    g, _ = run(initial_state(), [(0, calibrated_seg(1, pecs_labels(), nd, calibrated=None))])
    assert g.unverified == frozenset()
    plain = {q: speaks(reduce(g, cmd(q), None, 1)[1])[0]
             for q in ("quality_score", "needle_depth", "where_target")}
    assert not any("unverified" in t for t in plain.values()), plain
    assert said["quality_score"] == plain["quality_score"] + ", muscles unverified"


def test_a_block_whose_target_is_calibrated_is_not_called_unverified():
    lab = np.zeros((200, 200), np.uint8)
    lab[80:100, 90:110] = CLASS_INDEX["nerve"]
    lab[120:140, 40:60] = CLASS_INDEX["vessel"]
    s = initial_state(AssistantSettings(block="supraclavicular"))
    s, _ = run(s, [(0, calibrated_seg(1, lab))])
    q = speaks(reduce(s, cmd("quality_score"), None, 1)[1])[0]
    t = speaks(reduce(s, cmd("where_target"), None, 1)[1])[0]
    assert "unverified" not in q and "unverified" not in t, (q, t)
    assert t.startswith("the nerve")


def test_an_alert_about_a_class_never_checked_on_real_scans_says_possible():
    lab = pecs_labels(pleura_row=170)
    nd = needle_dict(True, [100, 150], [20.0, 30.0], 40, 30.0)  # 4 mm above the pleura
    _, acts = reduce(initial_state(), calibrated_seg(1, lab, nd), None, 0)
    assert speaks(acts, "alert") == ["stop, possible pleura four millimetres"]
    # the vessel is calibrated: a sure vessel is still a plain "artery"
    lab = pecs_labels(pleura_row=190)
    lab[160:170, 95:106] = CLASS_INDEX["vessel"]
    s, _ = reduce(initial_state(), calibrated_seg(1, lab, nd), None, 0)  # rules P, P2: waits
    s, _ = reduce(s, calibrated_seg(2, lab, nd), None, 0.05)  # ...two segmentations
    _, acts = reduce(s, calibrated_seg(3, lab, nd), None, 0.1)
    assert speaks(acts, "alert") == ["stop, artery two millimetres"]


@pytest.mark.parametrize("names, words", [
    (["pec_major", "pec_minor", "serratus"], "muscles"),
    (["pec_minor", "serratus"], "pec minor and serratus"),
    (["pec_major", "pec_minor", "serratus", "pleura"], "muscles and pleura"),
    (["bone", "pleura", "needle"], "bone, pleura and needle"),
    ([], ""),
])
def test_unverified_words(names, words):
    from assistant.guidance import unverified_words
    assert unverified_words(names) == words


def test_where_is_the_target_says_unsure_when_the_nerve_is_unsure():
    lab = np.zeros((200, 200), np.uint8)
    lab[80:100, 90:110] = CLASS_INDEX["nerve"]
    conf = [1.0] * len(CLASSES)
    conf[CLASS_INDEX["nerve"]] = 0.3  # calibrated: a 30 % chance the outline is good
    s = initial_state(AssistantSettings(block="supraclavicular"))
    s, _ = run(s, [(0, dataclasses.replace(seg(1, lab, confidence=conf),
                                           calibrated=SHIPPED_CALIBRATED))])
    assert "nerve" in s.unsure
    t = speaks(reduce(s, cmd("where_target"), None, 1)[1])[0]
    assert t.startswith("the nerve") and t.endswith(", unsure"), t
    conf[CLASS_INDEX["nerve"]] = 0.8
    s, _ = run(s, [(1, dataclasses.replace(seg(2, lab, confidence=conf),
                                           calibrated=SHIPPED_CALIBRATED))])
    t = speaks(reduce(s, cmd("where_target"), None, 2)[1])[0]
    assert not t.endswith(", unsure") and "unverified" not in t, t
