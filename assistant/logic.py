"""The assistant's decisions: ``reduce(state, msg, header, now_s) -> (state, actions)``.

Pure: no sockets, no clock, no files. The node (``assistant/node.py``) feeds every
``Frame``, ``SegResult``, ``SpeechCommand``, ``SpeechUnclear`` and ``NodeStatus`` it
receives, plus a :class:`Tick` a few times a second for the timers, and executes the
returned actions in order (see docs/ASSISTANT.md for the contract). ``now_s`` is the time base: media
time in replay, ``time.monotonic()`` live; replay is deterministic because nothing
here reads a clock.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from assistant.blocks import BlockPreset, danger_name, default_presets, find_preset
from assistant.fluid import FluidTrack, FluidView, track_fluid
from assistant.guidance import (compute_guidance, depth_sentence, frame_spacing, number_words,
                                target_classes, target_sentence, unverified_words)
from assistant.logic_settings import AssistantSettings
from assistant.messages import (AssistantState, Frame, Header, NodeStatus, SegResult,
                                SpeechCommand, SpeechUnclear)
from assistant.quality import quality_score
from models.classes import LAYERS

log = logging.getLogger(__name__)

LAYER_NAMES = tuple(LAYERS) + ("all",)
BLOCK_IDS = ("pecs1", "pecs2", "interscalene", "supraclavicular", "axillary", "femoral")
WORDS = ("yes", "no", "stop", "go", "up", "down", "left", "right", "on", "off")
#: every canonical command id the recogniser may send
COMMANDS: tuple[str, ...] = (
    *(f"show.{x}" for x in LAYER_NAMES), *(f"hide.{x}" for x in LAYER_NAMES),
    "quality_score", "needle_depth", "where_target", "freeze", "unfreeze",
    "record_start", "record_stop", "injection_start", "injection_stop",
    "block_next", "block_previous", *(f"block.{b}" for b in BLOCK_IDS),
    "repeat", "help", "mute", "unmute", *WORDS,
)
ROLES = ("operator", "supervisor")
PRIORITIES = ("alert", "answer", "ack")

#: the banner for new fluid at the tip (assistant.fluid): it may be a vessel, so it says so
FLUID_TEXT = "injectate or vessel at the tip?"
HELP_TEXT = ("You can say: show or hide nerve, vessel, fascia, muscle, bone, pleura, "
             "needle or all; quality score; needle depth; where is the target; freeze; "
             "unfreeze; start or stop recording; injection start; injection stop; next "
             "block; previous block; or a block name; repeat; mute; unmute; up or down "
             "for a depth hint; left or right to move the panel; on or off for the overlay.")

_NODE_WORDS = {"seg": "segmentation", "segmentation": "segmentation", "speech": "speech",
               "tts": "speech output", "renderer": "display", "ar": "display",
               "source": "video source"}


# ----------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Tick:
    """Timer input from the node (a few per second): pending-confirmation timeout,
    quality-low and needle-lost alerts, alert expiry."""

    now_s: float


# ----------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Speak:
    """Say ``text``; priority "alert" interrupts other speech, then "answer", "ack"."""

    text: str
    priority: str = "answer"


@dataclass(frozen=True)
class LogEvent:
    """An Event for events.jsonl and the session record.

    kind: command_heard | command_unclear | action | alert | node | recording | injection |
          info | caveat
    """

    kind: str
    text: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SetRecording:
    """Start/stop recording the session's video (the node owns the writer)."""

    on: bool


@dataclass(frozen=True)
class PublishState:
    """Something the renderer draws changed: publish ``to_state_message(state)``."""


@dataclass(frozen=True)
class RecordSample:
    """A time-series sample for the session store: kind "quality" or "needle"."""

    kind: str
    t_s: float
    data: dict


Action = Speak | LogEvent | SetRecording | PublishState | RecordSample


# ----------------------------------------------------------------------------- state

@dataclass(frozen=True)
class Pending:
    """A command waiting for "yes" (or "no"; cancelled at ``deadline_s``).

    ``offer``: not asked for, but offered because the command heard would change nothing
    (:func:`opposite_offer`); it lapses silently, since it may have been said on purpose.
    """

    command: str
    role: str
    prompt: str
    deadline_s: float
    offer: bool = False


@dataclass(frozen=True)
class FrameInfo:
    """A recent Frame, kept to pair a SegResult with its image and spacing."""

    frame_id: int
    image: np.ndarray = field(repr=False, compare=False)
    spacing_mm: float
    depth_mm: float


@dataclass(frozen=True)
class ActiveAlert:
    key: str  # "pleura", "artery", "needle_lost", "quality_low", "node:<name>"
    # "alert" (pleura, artery, needle lost) or "warning": the levels ar/overlay ranks
    level: str
    text: str
    until_s: float


@dataclass(frozen=True)
class State:
    """Everything the assistant knows. Immutable: ``reduce`` returns a new one.

    Mapping fields (``layers``, ``nodes``, ``guidance``, ``quality_parts``) are never
    changed in place: a change makes a new dict.
    """

    settings: AssistantSettings
    presets: tuple[BlockPreset, ...]
    block: str
    layers: Mapping[str, bool]
    overlay_on: bool = True
    frozen: bool = False
    recording: bool = False
    muted: bool = False
    injecting: bool = False
    injection_start_s: float | None = None
    panel: str = "right"  # "left" | "right": where the renderer puts the info panel
    depth_hint: str = ""  # "increase depth" | "decrease depth" (from up/down)
    pending: Pending | None = None
    last_answer: str = ""
    last_heard: str = ""
    notice: str = ""  # shown in the monitor's prompt box until notice_until_s
    notice_until_s: float = 0.0
    now_s: float = 0.0
    frame_id: int = -1
    frames: tuple[FrameInfo, ...] = ()
    spacing_mm: float | None = None
    quality: float | None = None
    quality_reason: str = ""
    quality_parts: Mapping[str, Any] = field(default_factory=dict)
    quality_history: tuple[tuple[float, float], ...] = ()
    quality_low_since_s: float | None = None
    quality_alerted: bool = False
    guidance: Mapping[str, Any] = field(default_factory=dict)
    # classes of the latest segmentation whose confidence was never checked on real scans
    # (SegResult.calibrated); the answers that rest on them say "unverified"
    unverified: frozenset[str] = frozenset()
    caveat_logged: tuple[str, ...] = ()  # the unverified classes last logged as a caveat
    # classes found in the latest segmentation with a confidence below danger_unsure_below
    # (drawn hatched, "unsure", on the monitor)
    unsure: frozenset[str] = frozenset()
    needle_track: tuple[tuple[float, float], ...] = ()  # (t_s, depth_mm) while visible
    needle_last_seen_s: float | None = None
    needle_advancing: bool = False
    needle_lost_alerted: bool = False
    dangers_alerted: frozenset[str] = frozenset()
    dangers_spoken_s: tuple[tuple[str, float], ...] = ()  # when each was last spoken
    fluid: FluidTrack | None = None  # new fluid at the tip vs known vessels (assistant.fluid)
    nodes: Mapping[str, str] = field(default_factory=dict)
    alerts: tuple[ActiveAlert, ...] = ()

    @property
    def preset(self) -> BlockPreset:
        return find_preset(self.presets, self.block)


def initial_state(settings: AssistantSettings | None = None,
                  presets: Sequence[BlockPreset] | None = None) -> State:
    """The state at session start: settings' block, all layers shown, overlay on."""
    settings = settings or AssistantSettings()
    presets = tuple(presets) if presets else default_presets()
    find_preset(presets, settings.block)  # a clear error for a block not in the presets
    return State(settings=settings, presets=presets, block=settings.block,
                 layers={name: True for name in LAYERS})


# ----------------------------------------------------------------------------- reduce

def reduce(state: State, msg: Any, header: Header | None = None,
           now_s: float | None = None) -> tuple[State, list[Action]]:
    """One input -> (new state, actions to execute in order).

    ``msg``: Frame, SegResult, SpeechCommand, SpeechUnclear, NodeStatus or Tick. ``now_s``
    defaults to ``Tick.now_s`` for a Tick and is required otherwise.
    """
    if now_s is None:
        if isinstance(msg, Tick):
            now_s = msg.now_s
        else:
            raise ValueError(f"reduce: now_s is required for a {type(msg).__name__}")
    now_s = float(now_s)
    state = dataclasses.replace(state, now_s=now_s)
    actions: list[Action] = []
    state = _expire(state, now_s, actions)
    if isinstance(msg, SpeechCommand):
        state = _on_command(state, msg, header, now_s, actions)
    elif isinstance(msg, SpeechUnclear):
        state = _on_unclear(state, msg, header, actions)
    elif isinstance(msg, SegResult):
        state = _on_seg(state, msg, now_s, actions)
    elif isinstance(msg, Frame):
        state = _on_frame(state, msg)
    elif isinstance(msg, NodeStatus):
        state = _on_node(state, msg, now_s, actions)
    elif isinstance(msg, Tick):
        state = _timers(state, now_s, actions)
    else:
        raise TypeError(f"reduce: cannot handle a {type(msg).__name__} (expected Frame, "
                        f"SegResult, SpeechCommand, SpeechUnclear, NodeStatus or Tick)")
    return state, actions


def to_state_message(state: State, frame_id: int | None = None) -> AssistantState:
    """The AssistantState the renderer draws (alerts still showing at ``state.now_s``)."""
    g = dict(state.guidance)
    g.pop("dangers_mm", None)
    g["panel"] = state.panel
    if state.depth_hint:
        g["depth_hint"] = state.depth_hint
    if state.injecting:
        g["injecting"] = True
    alerts = [{"level": a.level, "text": a.text} for a in state.alerts
              if a.until_s >= state.now_s]
    return AssistantState(
        frame_id=state.frame_id if frame_id is None else int(frame_id),
        block=state.block, layers=dict(state.layers), overlay_on=state.overlay_on,
        quality=state.quality, quality_reason=state.quality_reason, guidance=g,
        alerts=alerts, frozen=state.frozen, recording=state.recording, muted=state.muted,
        pending_confirmation=state.pending.prompt if state.pending else None,
        nodes=dict(state.nodes), last_heard=state.last_heard,
        notice=state.notice if state.now_s <= state.notice_until_s else "")


# ----------------------------------------------------------------------------- restart

#: what the operator chose by voice: kept in the session record so that an assistant
#: restarted mid-session carries on with the same overlay, block, recording and marks
CHOICE_FIELDS = ("block", "layers", "overlay_on", "frozen", "recording", "muted",
                 "injecting", "injection_start_s", "panel")


#: saved with the choices but never restored: a question left unanswered by a crash is
#: cancelled (a "yes" after a restart must not act on it), and the operator is told
SAVED_NOT_RESTORED = ("pending_prompt",)


def operator_choices(state: State) -> dict:
    """The operator's choices in ``state``, as plain JSON-able values (plus the question
    waiting for "yes", if any: see :func:`restart_actions`)."""
    d = {f: getattr(state, f) for f in CHOICE_FIELDS}
    d["layers"] = dict(state.layers)
    d["pending_prompt"] = state.pending.prompt if state.pending else None
    return d


def restart_actions(state: State, saved: Mapping[str, Any]) -> tuple[State, list]:
    """What a restarted assistant does once its choices are restored: log them and, if a
    confirmation was waiting when it stopped, say that the question was cancelled (the
    restarted assistant has no question open, so a "yes" now does nothing)."""
    data = {k: v for k, v in saved.items() if k not in SAVED_NOT_RESTORED}
    actions: list = [LogEvent("info", "assistant restarted: operator choices restored", data)]
    prompt = saved.get("pending_prompt")
    if isinstance(prompt, str) and prompt.strip():
        what = prompt.split("?")[0].strip()
        actions.append(LogEvent("action", f"cancelled (restart): {what}",
                                {"prompt": prompt, "reason": "restart"}))
        state = _say(state, f"assistant restarted: {what} cancelled, say it again", "answer",
                     actions)
    return state, actions


def restore_choices(state: State, data: Mapping[str, Any]) -> tuple[State, list[str]]:
    """``state`` with the choices of ``data`` (from :func:`operator_choices`) applied.

    Returns the new state and one line per value that was not applied (unknown field,
    wrong type, block not in the presets, layer not known): a damaged record costs that
    value, never the restart.
    """
    if not isinstance(data, Mapping):
        return state, [f"choices must be a mapping, got {type(data).__name__}"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        if key in SAVED_NOT_RESTORED:
            if value is not None and not isinstance(value, str):
                problems.append(f"{key}: expected text or null, got {value!r}")
        elif key not in CHOICE_FIELDS:
            problems.append(f"{key}: not a choice ({', '.join(CHOICE_FIELDS)})")
        elif key == "block":
            ids = [p.id for p in state.presets]
            if value in ids:
                changes[key] = value
            else:
                problems.append(f"block: {value!r} is not one of {', '.join(ids)}")
        elif key == "layers":
            if not isinstance(value, Mapping):
                problems.append(f"layers: expected a mapping, got {type(value).__name__}")
                continue
            layers = dict(state.layers)
            for name, on in value.items():
                if name in layers and isinstance(on, bool):
                    layers[name] = on
                else:
                    problems.append(f"layers.{name}: unknown layer or not true/false ({on!r})")
            changes[key] = layers
        elif key == "injection_start_s":
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value)):
                changes[key] = None if value is None else float(value)
            else:
                problems.append(f"injection_start_s: expected a number or null, got {value!r}")
        elif key == "panel":
            if value in ("left", "right"):
                changes[key] = value
            else:
                problems.append(f"panel: expected 'left' or 'right', got {value!r}")
        elif isinstance(value, bool):
            changes[key] = value
        else:
            problems.append(f"{key}: expected true or false, got {value!r}")
    return dataclasses.replace(state, **changes), problems


# ----------------------------------------------------------------------------- helpers

def _say(state: State, text: str, priority: str, actions: list) -> State:
    """Speak unless muted (alerts are spoken even when muted: safety over silence);
    answers and alerts are remembered for "repeat"."""
    assert priority in PRIORITIES
    if priority == "alert" or not state.muted:
        actions.append(Speak(text, priority))
    if priority in ("answer", "alert"):
        state = dataclasses.replace(state, last_answer=text)
    return state


def _alert(state: State, key: str, level: str, text: str, now_s: float, actions: list,
           speak: bool = True, data: dict | None = None) -> State:
    """Show an alert (replacing one with the same key); speak and log it once."""
    alert = ActiveAlert(key, level, text, now_s + state.settings.alert_show_s)
    state = dataclasses.replace(
        state, alerts=tuple(a for a in state.alerts if a.key != key) + (alert,))
    if speak:
        state = _say(state, text, "alert", actions)
        actions.append(LogEvent("alert", text, {"key": key, **(data or {})}))
    return state


def _restate_alert(state: State, key: str, level: str, text: str | None) -> State:
    """The shown alert ``key`` with new words and level, for as long as it was to stay
    (None: taken down); nothing is spoken or logged, and no alert is raised if none is up."""
    alerts = tuple(dataclasses.replace(a, level=level, text=text) if a.key == key else a
                   for a in state.alerts if a.key != key or text is not None)
    return state if alerts == state.alerts else dataclasses.replace(state, alerts=alerts)


def _expire(state: State, now_s: float, actions: list) -> State:
    if state.pending and now_s > state.pending.deadline_s:
        p = state.pending
        actions.append(LogEvent("action", f"cancelled (no answer): {p.command}",
                                {"command": p.command, "role": p.role, "reason": "timeout"}))
        state = dataclasses.replace(state, pending=None)
        if not p.offer:
            state = _say(state, "cancelled", "ack", actions)
        actions.append(PublishState())
    if state.notice and now_s > state.notice_until_s:
        state = dataclasses.replace(state, notice="")
        actions.append(PublishState())
    if any(a.until_s < now_s for a in state.alerts):
        state = dataclasses.replace(state, alerts=tuple(a for a in state.alerts
                                                        if a.until_s >= now_s))
        actions.append(PublishState())
    return state


# ----------------------------------------------------------------------------- commands

def _needs_confirmation(state: State, cmd: str) -> str | None:
    """The prompt if ``cmd`` must be confirmed now, else None.

    Confirmed: stopping a recording (losing it by a misheard word is costly), and
    changing the block while recording (the presets, alerts and figures change).
    """
    if cmd in ("record_stop", "stop") and state.recording:
        return "stop recording? say yes or no"
    if state.recording and (cmd in ("block_next", "block_previous") or cmd.startswith("block.")):
        target = _block_target(state, cmd)
        if target is not None and target.id != state.block:
            return f"switch to {target.name}? say yes or no"
    return None


#: toggles whose two commands differ by a word or a prefix ("freeze"/"unfreeze", "start"/
#: "stop"), which the recognizer can swap: (the command, the state in which it changes
#: nothing, what is said then, the other command, how it is offered)
_TOGGLES = (
    ("freeze", lambda s: s.frozen, "already frozen", "unfreeze", "unfreeze"),
    ("unfreeze", lambda s: not s.frozen, "already live", "freeze", "freeze"),
    ("record_start", lambda s: s.recording, "already recording", "record_stop",
     "stop recording"),
    ("record_stop", lambda s: not s.recording, "not recording", "record_start",
     "start recording"),
    ("injection_start", lambda s: s.injecting, "injection already marked",
     "injection_stop", "mark injection stop"),
    ("injection_stop", lambda s: not s.injecting, "no injection running",
     "injection_start", "mark injection start"),
)


def opposite_offer(state: State, cmd: str) -> tuple[str, str] | None:
    """(the other command, the question) if ``cmd`` would change nothing now and its
    opposite would: what was said was more likely the opposite, misheard.

    "assistant, unfreeze" heard as "freeze" while the image is frozen, or "record stop"
    heard as "record start" while recording, would otherwise only be acknowledged
    ("already frozen"), and the speaker would have to notice and say it again. Only the
    multi-word toggles: single words ("go", "stop", "on", "off") are said for other
    reasons too, and a question after each would be noise. Showing or hiding a layer is
    not offered either: "show" and "hide" differ in every sound.
    """
    if not state.settings.offer_opposite:
        return None
    for name, noop, said, other, spoken in _TOGGLES:
        if cmd == name and noop(state):
            return other, f"{said}. {spoken}? say yes or no"
    return None


def _block_target(state: State, cmd: str) -> BlockPreset | None:
    ids = [p.id for p in state.presets]
    i = ids.index(state.block)
    if cmd == "block_next":
        return state.presets[(i + 1) % len(ids)]
    if cmd == "block_previous":
        return state.presets[(i - 1) % len(ids)]
    bid = cmd.split(".", 1)[1]
    return state.presets[ids.index(bid)] if bid in ids else None


def _on_command(state: State, msg: SpeechCommand, header: Header | None, now_s: float,
                actions: list) -> State:
    cmd, role = str(msg.command), str(msg.role)
    data = {"command": cmd, "heard": msg.heard, "role": role,
            "confidence": float(msg.confidence), "start_s": msg.start_s, "end_s": msg.end_s}
    if msg.via:
        data["via"] = str(msg.via)  # the record says which path heard it
    if header is not None:
        data["msg_id"] = header.msg_id  # ties the record to the bus log
    who = "supervisor" if role == "supervisor" else "operator"
    actions.append(LogEvent("command_heard", f"{who}: {msg.heard} -> {cmd}", data))
    state = dataclasses.replace(state, last_heard=str(msg.heard), notice="")
    if role not in ROLES:
        log.error("speech command %r has unknown role %r (expected one of %s); ignored",
                  cmd, role, ", ".join(ROLES))
        actions.append(LogEvent("info", f"ignored command with unknown role {role!r}", data))
        return state
    if cmd not in COMMANDS and not _known_block_command(state, cmd):
        log.error("unknown command id %r (heard %r); ignored", cmd, msg.heard)
        actions.append(LogEvent("info", f"unknown command {cmd!r}", data))
        return _say(state, "sorry, I can't do that", "ack", actions)

    if cmd in ("yes", "no"):
        return _answer_pending(state, cmd, role, now_s, actions)
    if state.pending is not None and state.pending.offer:
        # another command instead of an answer: the offer made for the last one is withdrawn
        state = dataclasses.replace(state, pending=None)
        actions.append(PublishState())
    offer = opposite_offer(state, cmd)
    if offer:
        other, prompt = offer
        state = dataclasses.replace(state, pending=Pending(
            other, role, prompt, now_s + state.settings.confirm_timeout_s, offer=True))
        actions.append(LogEvent("action", f"offered: {other} (heard {cmd}, which changes "
                                "nothing now)", {**data, "prompt": prompt, "offered": other}))
        actions.append(PublishState())
        return _say(state, prompt, "answer", actions)
    prompt = _needs_confirmation(state, cmd)
    if prompt:
        state = dataclasses.replace(state, pending=Pending(
            cmd, role, prompt, now_s + state.settings.confirm_timeout_s))
        actions.append(LogEvent("action", f"asked to confirm: {cmd}", {**data, "prompt": prompt}))
        actions.append(PublishState())
        return _say(state, prompt, "answer", actions)
    return _execute(state, cmd, role, now_s, actions)


#: what the monitor shows, and for how long, when a command was asked for but not
#: understood (spoken as "say again"): the spoken word can be lost in a noisy room
NOT_UNDERSTOOD = "not understood: say again"
NOTICE_S = 3.0


def _on_unclear(state: State, msg: SpeechUnclear, header: Header | None,
                actions: list) -> State:
    """A command asked for but not understood: say so, rather than leave the speaker
    wondering whether anything was heard. A question waiting for its answer is asked
    again instead."""
    data = {"heard": msg.heard, "guess": msg.guess, "reason": msg.reason,
            "role": str(msg.role), "start_s": msg.start_s, "end_s": msg.end_s}
    if header is not None:
        data["msg_id"] = header.msg_id
    heard = f"{msg.heard} ..." if msg.heard else "..."
    actions.append(LogEvent("command_unclear", f"not understood: {heard}", data))
    state = dataclasses.replace(state, last_heard=f"{heard} (not understood)",
                                notice=NOT_UNDERSTOOD,
                                notice_until_s=state.now_s + NOTICE_S)
    actions.append(PublishState())
    if state.pending is not None:
        return _say(state, state.pending.prompt, "answer", actions)
    return _say(state, "say again", "ack", actions)


def _known_block_command(state: State, cmd: str) -> bool:
    # presets from config may add blocks beyond the six canonical ids
    return cmd.startswith("block.") and cmd.split(".", 1)[1] in {p.id for p in state.presets}


def _answer_pending(state: State, cmd: str, role: str, now_s: float, actions: list) -> State:
    p = state.pending
    if p is None:
        return _say(state, "nothing to confirm", "ack", actions)
    # the one who asked answers; a supervisor may answer for the operator
    if role != p.role and role != "supervisor":
        actions.append(LogEvent("info", f"{role} cannot answer the {p.role}'s question",
                                {"command": cmd, "role": role, "pending": p.command}))
        return state
    state = dataclasses.replace(state, pending=None)
    actions.append(PublishState())
    if cmd == "no":
        actions.append(LogEvent("action", f"cancelled: {p.command}",
                                {"command": p.command, "role": role, "reason": "no"}))
        return _say(state, "OK" if p.offer else "cancelled", "ack", actions)
    actions.append(LogEvent("action", f"confirmed: {p.command}",
                            {"command": p.command, "role": role}))
    return _execute(state, p.command, p.role, now_s, actions)


def _execute(state: State, cmd: str, role: str, now_s: float, actions: list) -> State:
    """Carry out an accepted (and, if needed, confirmed) command."""
    rep = dataclasses.replace
    sup = role == "supervisor"

    def act(text: str, **data: Any) -> None:
        actions.append(LogEvent("action", text, {"command": cmd, "role": role, **data}))

    if cmd.startswith(("show.", "hide.")):
        verb, layer = cmd.split(".", 1)
        on = verb == "show"
        names = list(state.layers) if layer == "all" else [layer]
        layers = {**state.layers, **{n: on for n in names}}
        # asking to see a layer implies wanting the overlay
        state = rep(state, layers=layers, overlay_on=state.overlay_on or on)
        act(f"{verb} {layer}")
        actions.append(PublishState())
        return _say(state, "OK", "ack", actions)
    if cmd in ("quality_score", "needle_depth", "where_target") and _seg_offline(state):
        return _say(state, "segmentation offline", "answer", actions)
    if cmd == "quality_score":
        if state.quality is None:
            return _say(state, "no quality score yet", "answer", actions)
        text = f"{number_words(state.quality)}: {state.quality_reason}"
        words = unverified_words(c for c in state.preset.key_structures if c in state.unverified)
        return _say(state, text + (f", {words} unverified" if words else ""), "answer", actions)
    if cmd == "needle_depth":
        return _say(state, depth_sentence(state.guidance, state.preset, state.unverified),
                    "answer", actions)
    if cmd == "where_target":
        return _say(state, target_sentence(state.guidance, state.preset, state.unverified,
                                           state.unsure), "answer", actions)
    if cmd in ("freeze", "unfreeze"):
        state = rep(state, frozen=cmd == "freeze")
        act(cmd)
        actions.append(PublishState())
        return _say(state, "frozen" if state.frozen else "live", "ack", actions)
    if cmd in ("record_start", "go"):
        if state.recording:
            return _say(state, "already recording", "ack", actions)
        state = rep(state, recording=True)
        actions += [SetRecording(True),
                    LogEvent("recording", "recording started", {"command": cmd, "role": role}),
                    PublishState()]
        return _say(state, "recording", "ack", actions)
    if cmd in ("record_stop", "stop"):
        if not state.recording:
            return _say(state, "not recording", "ack", actions)
        state = rep(state, recording=False)
        actions += [SetRecording(False),
                    LogEvent("recording", "recording stopped", {"command": cmd, "role": role}),
                    PublishState()]
        return _say(state, "recording stopped", "ack", actions)
    if cmd == "injection_start":
        if state.injecting:
            return _say(state, "injection already marked", "ack", actions)
        state = rep(state, injecting=True, injection_start_s=now_s)
        actions += [LogEvent("injection", "injection start",
                             {"mark": "start", "role": role, "t_s": now_s}), PublishState()]
        return _say(state, "injection start", "ack", actions)
    if cmd == "injection_stop":
        if not state.injecting:
            return _say(state, "no injection running", "ack", actions)
        dur = now_s - (state.injection_start_s if state.injection_start_s is not None else now_s)
        state = rep(state, injecting=False, injection_start_s=None)
        actions += [LogEvent("injection", "injection stop",
                             {"mark": "stop", "role": role, "t_s": now_s, "duration_s": dur}),
                    PublishState()]
        return _say(state, f"injection stopped, {number_words(dur)} seconds", "ack", actions)
    if cmd in ("block_next", "block_previous") or cmd.startswith("block."):
        target = _block_target(state, cmd)
        if target is None:  # not reachable from _on_command; kept for direct calls
            return _say(state, "sorry, I don't know that block", "ack", actions)
        if target.id != state.block:
            # a new block: old quality, guidance and alerts belong to the old preset
            state = rep(state, block=target.id, quality=None, quality_reason="",
                        quality_parts={}, quality_low_since_s=None, quality_alerted=False,
                        guidance={}, dangers_alerted=frozenset(), dangers_spoken_s=(),
                        alerts=tuple(a for a in state.alerts if a.key.startswith("node:")))
            act(f"block {target.id}", block=target.id)
            actions.append(PublishState())
        return _say(state, target.name, "ack", actions)
    if cmd == "repeat":
        return _say(state, state.last_answer or "nothing to repeat", "answer", actions)
    if cmd == "help":
        actions.append(LogEvent("info", "help", {"commands": list(COMMANDS)}))
        return _say(state, HELP_TEXT, "answer", actions)
    if cmd == "mute":
        state = _say(state, "muted", "ack", actions)  # the last word before silence
        state = rep(state, muted=True)
        act("mute")
        actions.append(PublishState())
        return state
    if cmd == "unmute":
        state = rep(state, muted=False)
        act("unmute")
        actions.append(PublishState())
        return _say(state, "sound on", "ack", actions)
    if cmd in ("up", "down"):
        hint = "decrease depth" if cmd == "up" else "increase depth"
        state = rep(state, depth_hint=hint)
        act(f"depth hint: {hint}")
        actions.append(PublishState())
        # a supervisor's nudge is a prompt to the operator: say who suggests it
        return _say(state, f"supervisor suggests {hint}" if sup else hint, "answer", actions)
    if cmd in ("left", "right"):
        state = rep(state, panel=cmd)
        act(f"panel {cmd}")
        actions.append(PublishState())
        return _say(state, "OK", "ack", actions)
    if cmd in ("on", "off"):
        state = rep(state, overlay_on=cmd == "on")
        act(f"overlay {cmd}")
        actions.append(PublishState())
        return _say(state, "overlay on" if state.overlay_on else "overlay off", "ack", actions)
    # COMMANDS and this function must agree; a test walks every id
    raise AssertionError(f"command {cmd!r} is in COMMANDS but has no handler")


# ----------------------------------------------------------------------------- frames, seg

def _on_frame(state: State, msg: Frame) -> State:
    if not (isinstance(msg.spacing_mm, (int, float)) and msg.spacing_mm > 0):
        log.error("frame %s has spacing_mm %r; must be > 0 mm per pixel; ignored",
                  msg.frame_id, msg.spacing_mm)
        return state
    info = FrameInfo(int(msg.frame_id), msg.image, float(msg.spacing_mm), float(msg.depth_mm))
    frames = (state.frames + (info,))[-state.settings.frame_buffer:]
    return dataclasses.replace(state, frames=frames, spacing_mm=info.spacing_mm)


def _frame_images(state: State, frame_id: int) -> tuple[np.ndarray | None, np.ndarray | None,
                                                        float | None]:
    """(image, previous image, spacing) for the frame a SegResult segments."""
    image = prev = None
    spacing = state.spacing_mm
    for i, f in enumerate(state.frames):
        if f.frame_id == frame_id:
            image, spacing = f.image, f.spacing_mm
            earlier = [g for g in state.frames[:i] if g.frame_id < frame_id]
            if earlier:
                prev = earlier[-1].image
            break
    return image, prev, spacing


def _on_seg(state: State, seg: SegResult, now_s: float, actions: list) -> State:
    rep = dataclasses.replace
    s = state.settings
    preset = state.preset
    image, prev, spacing = _frame_images(state, int(seg.frame_id))
    labels = seg.labels
    try:
        if image is not None and getattr(image, "shape", None) is not None \
                and image.shape[:2] != labels.shape:
            # a resized frame cannot be compared pixel for pixel with the labels
            image = prev = None
        if prev is not None and prev.shape != image.shape:
            prev = None
        q = quality_score(image, labels, seg.confidence, preset, prev_image=prev,
                          spacing_mm=spacing, classes=seg.classes)
        fluid_track, view = state.fluid, FluidView(None, None)
        if s.fluid_rule and "vessel" in preset.avoid and "vessel" in seg.classes:
            needle = seg.needle or {}
            seen = bool(needle.get("visible"))
            fluid_track, view = track_fluid(
                state.fluid, labels, list(seg.classes).index("vessel"),
                needle.get("tip_px") if seen else None,
                frame_spacing(spacing, needle), now_s, birth_mm=s.fluid_birth_mm,
                hidden_mm=s.artery_alert_mm,
                memory_s=s.fluid_memory_s, still_s=s.fluid_still_s, still_mm=s.fluid_still_mm,
                hidden_s=s.fluid_hidden_s, hidden_frames=s.fluid_hidden_frames,
                image=image, follow_probe=s.fluid_follow_probe,
                entry_px=needle.get("entry_px") if seen else None, pending=s.fluid_pending,
                pending_frames=s.fluid_pending_frames)
        g = compute_guidance(seg.needle, labels, preset, spacing, classes=seg.classes,
                             fluid=view.fluid, held=view.held, pending=view.pending)
    except (ValueError, TypeError) as exc:
        log.error("segmentation of frame %s rejected: %s", seg.frame_id, exc)
        actions.append(LogEvent("info", f"bad segmentation result: {exc}",
                                {"frame_id": int(seg.frame_id)}))
        return state

    history = (state.quality_history + ((now_s, q.score),))[-s.quality_history_len:]
    unverified = (frozenset(c for c in seg.classes if c != "background" and c not in seg.calibrated)
                  if isinstance(seg.calibrated, list) else frozenset())
    unsure = frozenset(c for c, conf, found in zip(seg.classes, seg.confidence, seg.present)
                       if c != "background" and found and float(conf) < s.danger_unsure_below)
    state = rep(state, fluid=fluid_track, frame_id=int(seg.frame_id), quality=q.score,
                quality_reason=q.reason, quality_parts=_summary(q.parts),
                quality_history=history, guidance=g, unverified=unverified, unsure=unsure)
    # the session record says which of its figures rest on outlines never checked on real
    # scans (the quality's key structures, the needle, the dangers, the target), once per change
    used = dict.fromkeys(preset.key_structures + ("needle",) + preset.avoid
                         + target_classes(preset))
    caveat = tuple(c for c in used if c in unverified)
    if caveat and caveat != state.caveat_logged:
        actions.append(LogEvent("caveat", "figures rest on outlines never checked on real "
                                f"scans: {unverified_words(caveat)}",
                                {"unverified": list(caveat), "block": state.block}))
        state = rep(state, caveat_logged=caveat)
    actions.append(RecordSample("quality", now_s, {"score": q.score, "reason": q.reason,
                                                   "frame_id": int(seg.frame_id)}))
    if seg.needle:
        actions.append(RecordSample("needle", now_s, {
            "visible": g["visible"], "depth_mm": g.get("depth_mm"),
            "to_target_mm": g.get("to_target_mm"), "tip_px": g.get("tip_px"),
            "nearest_danger": g.get("nearest_danger"), "frame_id": int(seg.frame_id)}))

    # quality low for a while
    if q.score < s.quality_low_threshold:
        if state.quality_low_since_s is None:
            state = rep(state, quality_low_since_s=now_s)
    else:
        state = rep(state, quality_low_since_s=None, quality_alerted=False)

    # needle track: advancing = deeper by needle_advance_min_mm within the window
    if g["visible"] and g.get("depth_mm") is not None:
        depth = float(g["depth_mm"])
        track = tuple(p for p in state.needle_track if now_s - p[0] <= s.needle_track_window_s)
        track = track + ((now_s, depth),)
        advancing = state.needle_advancing
        shallowest = min(p[1] for p in track)
        deepest = max(p[1] for p in track)
        if depth - shallowest >= s.needle_advance_min_mm:
            advancing = True
        elif deepest - depth >= s.needle_advance_min_mm:
            advancing = False  # withdrawing
        state = rep(state, needle_track=track, needle_last_seen_s=now_s,
                    needle_advancing=advancing, needle_lost_alerted=False,
                    alerts=tuple(a for a in state.alerts if a.key != "needle_lost"))

    # dangers: speak once on entering the zone, keep showing while inside, re-arm
    # only once clearly out (hysteresis: no chatter at the edge)
    alerted = set(state.dangers_alerted)
    spoken = dict(state.dangers_spoken_s)
    confidence = _danger_confidence(seg, preset)
    for name, dist in (g.get("dangers_mm") or {}).items() if g["visible"] else ():
        limit = s.pleura_alert_mm if name == "pleura" else s.artery_alert_mm
        doubt = "possible " if confidence.get(name, 1.0) < s.danger_unsure_below else ""
        # a remembered vessel the mask lost (assistant.fluid): the outline is stale, said so
        unseen = ", not seen now" if name in (g.get("dangers_held") or ()) else ""
        if dist <= limit:
            mm = number_words(dist)
            text = (f"stop, {doubt}{name} {mm} {'millimetre' if mm == 'one' else 'millimetres'}"
                    f"{unseen}")
            speak = (name not in alerted
                     and now_s - spoken.get(name, float("-inf")) >= s.danger_repeat_s)
            state = _alert(state, name, "alert", text, now_s, actions, speak=speak,
                           data={"distance_mm": dist})
            if speak:
                spoken[name] = now_s
            alerted.add(name)
        else:
            # out of the zone: a banner still up must not show the old, nearer distance;
            # it says the distance now (not "stop"), and goes once clearly out (re-armed)
            rearmed = dist > limit * s.danger_rearm_factor
            state = _restate_alert(state, name, "warning", None if rearmed else
                                   f"{doubt}{name} {number_words(dist)} millimetres{unseen}")
            if rearmed:
                alerted.discard(name)
    # new fluid at the tip (injectate, or a vessel never seen before): shown, not spoken
    # as a "stop"; logged once per appearance as information, so that the record's alert
    # counts (teaching figures) stay those of dangers
    fluid_mm = g.get("fluid_mm") if g["visible"] else None
    if fluid_mm is not None and fluid_mm <= s.artery_alert_mm:
        if not any(a.key == "fluid" for a in state.alerts):
            actions.append(LogEvent("info", FLUID_TEXT, {"key": "fluid",
                                                         "distance_mm": fluid_mm}))
        state = _alert(state, "fluid", "warning", FLUID_TEXT, now_s, actions, speak=False)
    state = rep(state, dangers_alerted=frozenset(alerted),
                dangers_spoken_s=tuple(sorted(spoken.items())))
    state = _timers(state, now_s, actions)
    actions.append(PublishState())
    return state


def _danger_confidence(seg: SegResult, preset: BlockPreset) -> dict:
    """Spoken danger name ("artery", "pleura") -> the segmentation's confidence in that class
    (the highest where two classes share a name); classes it did not report are left out.
    A class whose confidence was never checked on real scans (not in ``seg.calibrated``)
    counts 0: its alert says "possible"."""
    out: dict = {}
    for cls in preset.avoid:
        try:
            c = float(seg.confidence[list(seg.classes).index(cls)])
        except (ValueError, IndexError, TypeError):
            continue
        if isinstance(seg.calibrated, list) and cls not in seg.calibrated:
            c = 0.0
        name = danger_name(cls)
        out[name] = max(c, out.get(name, 0.0))
    return out


def _summary(parts: Mapping[str, Any]) -> dict:
    """The JSON-friendly top level of the quality parts (for state and records)."""
    return {k: v for k, v in parts.items() if isinstance(v, (int, float))}


def _seg_offline(state: State) -> bool:
    return any(v == "offline" for k, v in state.nodes.items()
               if _NODE_WORDS.get(k) == "segmentation")


def _timers(state: State, now_s: float, actions: list) -> State:
    s = state.settings
    if (state.quality_low_since_s is not None and not state.quality_alerted
            and now_s - state.quality_low_since_s >= s.quality_low_alert_s):
        text = f"quality low: {state.quality_reason}" if state.quality_reason else "quality low"
        state = _alert(state, "quality_low", "warning", text, now_s, actions,
                       data={"quality": state.quality})
        state = dataclasses.replace(state, quality_alerted=True)
    if (not _seg_offline(state) and state.needle_advancing and not state.needle_lost_alerted
            and state.needle_last_seen_s is not None
            and not state.guidance.get("visible")
            and now_s - state.needle_last_seen_s > s.needle_lost_alert_s):
        state = _alert(state, "needle_lost", "alert", "needle lost, stop advancing", now_s,
                       actions, data={"last_seen_s": state.needle_last_seen_s})
        state = dataclasses.replace(state, needle_lost_alerted=True)
        actions.append(PublishState())
    return state


# ----------------------------------------------------------------------------- nodes

def _on_node(state: State, msg: NodeStatus, now_s: float, actions: list) -> State:
    name = str(msg.node)
    spoken = _NODE_WORDS.get(name, name.replace("_", " "))
    old = state.nodes.get(name)
    if msg.state == "restarted":
        # A new process was spawned but is not ready yet: still offline, nothing said.
        actions.append(LogEvent("node", f"{name} restarted",
                                {"node": name, "state": msg.state, "detail": msg.detail,
                                 "restarts": int(msg.restarts)}))
        return state
    new = "offline" if msg.state in ("offline", "failed") else "online"
    actions.append(LogEvent("node", f"{name} {msg.state}",
                            {"node": name, "state": msg.state, "detail": msg.detail,
                             "restarts": int(msg.restarts)}))
    state = dataclasses.replace(state, nodes={**state.nodes, name: new})
    if new == old and msg.state != "failed":
        return state  # repeated status: said already
    if new == "offline":
        text = f"{spoken} failed" if msg.state == "failed" else f"{spoken} offline"
        if spoken == "segmentation":
            # what a dead segmentation fed must not be shown or used stale
            state = dataclasses.replace(state, guidance={}, quality=None, quality_reason="",
                                        quality_low_since_s=None, needle_advancing=False,
                                        needle_track=())
        state = _alert(state, f"node:{name}", "warning", text, now_s, actions,
                       data={"node": name})
    elif old == "offline":
        state = dataclasses.replace(state, alerts=tuple(a for a in state.alerts
                                                        if a.key != f"node:{name}"))
        state = _say(state, f"{spoken} back", "answer", actions)
    actions.append(PublishState())
    return state
