"""The one module of message types shared by every process.

Wire form (a ZeroMQ multipart message):

    [topic, header-json, body-json, buffer0, buffer1, ...]

* ``topic`` is the message type name (subscribers filter on it).
* ``header`` is ``{"type", "proto", "msg_id", "parent_id", "source", "t_mono"}``.
  ``proto`` is the protocol version (separate from the package version).
* ``body`` is the dataclass's fields as JSON; a numpy array field is replaced by
  ``{"__array__": i, "dtype": "...", "shape": [...]}`` and its bytes travel raw as
  ``buffer i``. Nothing is pickled.

``decode`` raises :class:`DecodeError` (naming what was wrong) for anything that is
not a well-formed message of a known type and the current protocol version; the
receivers count it, log it and drop it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

PROTOCOL_VERSION = 1
NOT_FOR_CLINICAL_USE = "not for clinical use"


class DecodeError(ValueError):
    """A message that cannot be decoded: bad framing, JSON, type, version or array."""


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Header:
    type: str
    source: str
    msg_id: str = field(default_factory=new_id)
    parent_id: str | None = None
    t_mono: float = field(default_factory=time.monotonic)
    proto: int = PROTOCOL_VERSION


_REGISTRY: dict[str, type["Message"]] = {}


def message(cls):
    """Class decorator: a dataclass registered under its ``TYPE`` for decoding."""
    cls = dataclass(cls)
    if not getattr(cls, "TYPE", None):
        raise TypeError(f"{cls.__name__} needs a TYPE")
    _REGISTRY[cls.TYPE] = cls
    return cls


class Message:
    TYPE: ClassVar[str] = ""
    #: reliable messages are acknowledged with an Ack and retried until acknowledged
    RELIABLE: ClassVar[bool] = False

    def problem(self) -> str | None:
        """What is wrong inside a decoded message's fields (beyond their types), or None."""
        return None


# ----------------------------------------------------------------------------- system

@message
class Heartbeat(Message):
    """Sent by every node once per ``heartbeat_ms``. ``state`` is starting|ready|stopping."""

    TYPE: ClassVar[str] = "hb"
    node: str
    pid: int
    seq: int
    state: str = "ready"
    stats: dict = field(default_factory=dict)


@message
class NodeStatus(Message):
    """From the launcher: a node went offline, came back, or was restarted."""

    TYPE: ClassVar[str] = "node_status"
    node: str
    state: str  # "online" | "offline" | "restarted" | "failed"
    detail: str = ""
    restarts: int = 0


@message
class Ack(Message):
    """Acknowledges a reliable message; header.parent_id is the acknowledged msg_id."""

    TYPE: ClassVar[str] = "ack"
    to: str  # node that sent the acknowledged message
    ok: bool = True
    detail: str = ""


@message
class Control(Message):
    """Launcher/replay driver to nodes: ``stop``, or ``finish`` (the renderer closes its video at
    the end of a replay)."""

    TYPE: ClassVar[str] = "control"
    action: str
    target: str = "*"
    data: dict = field(default_factory=dict)


@message
class Event(Message):
    """Something of consequence, written to events.jsonl and the session record.

    kind: command_heard | command_unclear | action | alert | node | speech | recording |
          injection | info | caveat
    """

    TYPE: ClassVar[str] = "event"
    kind: str
    text: str
    media_time_s: float | None = None
    frame_id: int | None = None
    data: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- video

@message
class Frame(Message):
    """One ultrasound frame. ``image`` is uint8, (H, W) grey or (H, W, 3) BGR."""

    TYPE: ClassVar[str] = "frame"
    frame_id: int
    media_time_s: float
    image: np.ndarray
    spacing_mm: float  # mm per pixel (square pixels)
    depth_mm: float  # imaging depth of the whole image height
    source_name: str = ""
    replay: bool = False


@message
class SegResult(Message):
    """Segmentation of one frame.

    ``labels`` is uint8 (H, W) at the frame's size: 0 background, i = ``classes[i]``.
    ``confidence[i]`` is the model's confidence that class i is present and correctly
    outlined (0..1); ``present[i]`` says whether it was found at all.
    ``calibrated`` names the classes whose confidence was calibrated on real scans (the
    model's manifest, ``confidence_calibration``); the others' is the raw mean probability,
    checked against nothing real, and is shown as "unverified". None: not said (a
    ground-truth or test producer).
    ``needle`` is a dict from :func:`needle_dict` (or empty when no needle model).
    """

    TYPE: ClassVar[str] = "seg"
    frame_id: int
    media_time_s: float
    frame_t_mono: float  # header.t_mono of the Frame it segments (staleness checks)
    labels: np.ndarray
    classes: list
    confidence: list
    present: list
    needle: dict = field(default_factory=dict)
    timings_ms: dict = field(default_factory=dict)
    model: str = ""
    calibrated: list | None = None

    def problem(self) -> str | None:
        """A needle point (``tip_px``, ``tip_mm``, ``entry_px``) that is not None or two
        finite numbers: the assistant measures distances from them."""
        for key in NEEDLE_POINTS:
            v = self.needle.get(key)
            if v is not None:
                try:
                    needle_point(v, key)
                except ValueError:
                    return f"needle {key} should be two finite numbers (x, y), got {v!r}"
        return None


#: the needle dict's points: (x, y) each
NEEDLE_POINTS = ("tip_px", "tip_mm", "entry_px")


def needle_point(value, name: str) -> tuple[float, float]:
    """A needle point as (x, y) floats, or a ValueError naming ``name``: it must be two
    finite numbers (not strings, not booleans). The one check for every reader of one."""
    if (not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 2
            or not all(_TYPE_CHECKS["float"](v) or isinstance(v, np.number) for v in value)):
        raise ValueError(f"{name} must be two numbers (x, y), got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x, y


def needle_dict(visible: bool, tip_px=None, tip_mm=None, angle_deg=None,
                depth_mm=None, confidence: float = 0.0, entry_px=None,
                frames_missing: int = 0) -> dict:
    """The needle part of a SegResult: tip (x, y) in pixels and mm from the top-left,
    shaft angle in degrees from horizontal, depth in mm below the skin line."""
    return {"visible": bool(visible), "tip_px": tip_px, "tip_mm": tip_mm,
            "angle_deg": angle_deg, "depth_mm": depth_mm,
            "confidence": float(confidence), "entry_px": entry_px,
            "frames_missing": int(frames_missing)}


@message
class Rendered(Message):
    """Renderer to replay driver: frame_id is drawn (the credit for back-pressure)."""

    TYPE: ClassVar[str] = "rendered"
    frame_id: int
    render_ms: float = 0.0
    latency_ms: float = 0.0  # frame header t_mono to render done
    digest: str = ""  # replay: CRC chain of the frames written so far (determinism checks)


# ----------------------------------------------------------------------------- audio / speech

@message
class AudioChunk(Message):
    """16 kHz mono int16 audio; start_s is the media time of the first sample."""

    TYPE: ClassVar[str] = "audio"
    seq: int
    start_s: float
    samples: np.ndarray
    sample_rate: int = 16000
    final: bool = False


@message
class SpeechProgress(Message):
    """Recognizer has consumed audio up to ``upto_s`` (media time); any command heard
    before that point was published before this message (replay ordering)."""

    TYPE: ClassVar[str] = "speech_progress"
    upto_s: float


@message
class SpeechCommand(Message):
    """A recognised command, as it reaches the assistant (reliable, acknowledged)."""

    TYPE: ClassVar[str] = "speech_cmd"
    RELIABLE: ClassVar[bool] = True
    command: str  # canonical id, e.g. "show.fascia", "quality_score", "yes"
    heard: str  # the words heard
    confidence: float
    start_s: float
    end_s: float
    role: str = "operator"  # operator | supervisor
    via: str = ""  # "" the engine alone; "second opinion", "whisper", "head", "fused" or
    # "command head": which path of speech/decision.py acted


@message
class SpeechUnclear(Message):
    """A command asked for but not understood: the wake phrase clearly heard (or the pedal
    down), then words the recognizer could not act on. The assistant asks for it again
    (reliable, acknowledged, like SpeechCommand)."""

    TYPE: ClassVar[str] = "speech_unclear"
    RELIABLE: ClassVar[bool] = True
    heard: str  # the wake phrase when one was heard ("" with the pedal)
    start_s: float
    end_s: float
    guess: str | None = None  # the recognizer's best command, too unsure to act on
    reason: str = ""
    role: str = "operator"  # operator | supervisor


@message
class Say(Message):
    """Assistant to speech output (reliable). priority: alert > answer > ack."""

    TYPE: ClassVar[str] = "say"
    RELIABLE: ClassVar[bool] = True
    text: str
    priority: str = "answer"  # "alert" | "answer" | "ack"


@message
class SpeakingState(Message):
    """Speech output is speaking (recognizer mutes itself, plus a tail)."""

    TYPE: ClassVar[str] = "speaking"
    speaking: bool
    text: str = ""


# ----------------------------------------------------------------------------- assistant

@message
class AssistantState(Message):
    """What the renderer draws besides the image and masks.

    Published after each SegResult (live) and once per frame in replay.
    ``layers``: name -> shown. ``alerts``: [{"level", "text"}]. ``guidance``: needle
    depth, distance to target plane etc. ``nodes``: node -> "online"|"offline".
    """

    TYPE: ClassVar[str] = "state"
    frame_id: int
    block: str
    layers: dict
    overlay_on: bool = True
    quality: float | None = None
    quality_reason: str = ""
    guidance: dict = field(default_factory=dict)
    alerts: list = field(default_factory=list)
    frozen: bool = False
    recording: bool = False
    muted: bool = False
    pending_confirmation: str | None = None
    nodes: dict = field(default_factory=dict)
    last_heard: str = ""
    # a short-lived line for the monitor's prompt box (e.g. "not understood: say again")
    notice: str = ""


# ----------------------------------------------------------------------------- codec

def _to_jsonable(value: Any, buffers: list) -> Any:
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        buffers.append(memoryview(arr).cast("B") if arr.size else b"")
        return {"__array__": len(buffers) - 1, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v, buffers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, buffers) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_jsonable(value: Any, buffers: list) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            try:
                idx = int(value["__array__"])
                dtype = np.dtype(value["dtype"])
                shape = tuple(int(s) for s in value["shape"])
                if dtype.hasobject:
                    raise DecodeError("object arrays are not allowed on the wire")
                buf = buffers[idx]
                arr = np.frombuffer(buf, dtype=dtype)
                return arr.reshape(shape)
            except DecodeError:
                raise
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise DecodeError(f"bad array descriptor {value!r}: {exc}") from exc
        return {k: _from_jsonable(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v, buffers) for v in value]
    return value


def encode(msg: Message, source: str, parent_id: str | None = None,
           msg_id: str | None = None) -> tuple[list, Header]:
    """Message -> (list of frames to send_multipart, header)."""
    header = Header(type=msg.TYPE, source=source, parent_id=parent_id)
    if msg_id:
        header.msg_id = msg_id
    buffers: list = []
    body = {f.name: _to_jsonable(getattr(msg, f.name), buffers) for f in dataclasses.fields(msg)}
    frames = [msg.TYPE.encode(), json.dumps(dataclasses.asdict(header)).encode(),
              json.dumps(body, allow_nan=True).encode(), *buffers]
    return frames, header


def decode(frames: list) -> tuple[Header, Message]:
    """Frames -> (header, message). Raises DecodeError naming what was wrong."""
    if len(frames) < 3:
        raise DecodeError(f"expected at least 3 frames (topic, header, body), got {len(frames)}")
    topic = bytes(frames[0]).decode("utf-8", "replace")
    try:
        h = json.loads(bytes(frames[1]))
        header = Header(**h)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"header of '{topic}' message is not a valid header: {exc}") from exc
    if header.proto != PROTOCOL_VERSION:
        raise DecodeError(f"'{topic}' message has protocol version {header.proto!r}, "
                          f"expected {PROTOCOL_VERSION}")
    cls = _REGISTRY.get(header.type)
    if cls is None or header.type != topic:
        raise DecodeError(f"unknown message type {header.type!r} (topic {topic!r})")
    try:
        body = json.loads(bytes(frames[2]))
    except ValueError as exc:
        raise DecodeError(f"body of '{topic}' message is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DecodeError(f"body of '{topic}' message is not an object")
    buffers = [bytes(f) if not isinstance(f, (bytes, memoryview)) else f for f in frames[3:]]
    values = _from_jsonable(body, buffers)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise DecodeError(f"'{topic}' message has unknown fields {sorted(unknown)}")
    for f in dataclasses.fields(cls):
        if f.name in values and not _type_ok(values[f.name], f.type):
            raise DecodeError(f"'{topic}' message field {f.name!r} should be {f.type}, "
                              f"got {type(values[f.name]).__name__}")
    try:
        msg = cls(**values)
    except TypeError as exc:
        raise DecodeError(f"'{topic}' message fields are wrong: {exc}") from exc
    problem = msg.problem()
    if problem:
        raise DecodeError(f"'{topic}' message: {problem}")
    return header, msg


_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "np.ndarray": lambda v: isinstance(v, np.ndarray),
    "None": lambda v: v is None,
}


def _type_ok(value: Any, annotation: str) -> bool:
    """Checks a decoded value against a field annotation such as ``float | None``."""
    for part in str(annotation).split("|"):
        check = _TYPE_CHECKS.get(part.strip())
        if check is None or check(value):
            return True
    return False


def message_types() -> dict[str, type[Message]]:
    return dict(_REGISTRY)


def node_source(name: str) -> str:
    """A header source: node name plus pid, so restarts are visible in logs."""
    return f"{name}:{os.getpid()}"
