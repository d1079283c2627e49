"""Strict reading of config.yaml into frozen settings dataclasses.

Every key must be known and every value of the expected type: anything else stops
start-up with one :class:`ConfigError` that names the file, the line, the dotted key and
what was expected. Each package owns its settings dataclass; this module composes them.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ar.settings import HmdSettings, RenderSettings
from assistant.blocks import BlockPreset, default_presets
from assistant.logic_settings import AssistantSettings
from models.settings import SegmentationSettings
from speech.settings import SpeechSettings, TTSSettings, settings_problem

NODE_NAMES = ("source", "segmentation", "speech", "tts", "assistant", "renderer")


class ConfigError(ValueError):
    """A bad config file: names the file, line, key and what was expected."""


@dataclass(frozen=True)
class BusSettings:
    # "auto": ipc:// sockets in a private folder made for this run
    pub_endpoint: str = "auto"
    sub_endpoint: str = "auto"
    allow_remote: bool = False  # tcp endpoints on non-loopback hosts need this
    heartbeat_ms: int = 500
    offline_after_missed: int = 3
    command_timeout_ms: int = 400
    command_retries: int = 4


@dataclass(frozen=True)
class SourceSettings:
    kind: Literal["simulated", "video", "images", "camera"] = "simulated"
    path: str = ""  # video file or image folder
    camera_index: int = 0
    fps: float = 20.0  # for image folders, cameras and the simulator
    loop: bool = True  # loop a video file or folder in live mode
    spacing_mm: float = 0.0  # mm per pixel; 0 = depth_mm / image height, or a sidecar file
    depth_mm: float = 40.0
    seed: int = 0  # simulator


@dataclass(frozen=True)
class LauncherSettings:
    nodes: tuple[str, ...] = NODE_NAMES
    restart_backoff_ms: int = 250
    restart_backoff_max_ms: int = 8000
    stop_timeout_ms: int = 1500
    ready_timeout_s: float = 60.0


@dataclass(frozen=True)
class ReplaySettings:
    max_in_flight: int = 3
    frame_timeout_s: float = 30.0  # a frame not rendered by then fails the replay
    audio_chunk_ms: int = 50


@dataclass(frozen=True)
class Settings:
    bus: BusSettings = field(default_factory=BusSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    tts: TTSSettings = field(default_factory=TTSSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    hmd: HmdSettings = field(default_factory=HmdSettings)
    assistant: AssistantSettings = field(default_factory=AssistantSettings)
    blocks: tuple[BlockPreset, ...] = field(default_factory=default_presets)


def default_config_path() -> Path:
    return Path(__file__).resolve().parent.parent / "config.yaml"


def load_settings(path: str | Path | None = None, overrides: dict | None = None) -> Settings:
    """Read ``path`` (default: the repo's config.yaml) strictly; ``overrides`` is a nested
    dict applied on top (from the command line), checked the same way."""
    path = Path(path) if path else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_settings(text, str(path), overrides)


def parse_settings(text: str, filename: str = "<config>", overrides: dict | None = None) -> Settings:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    settings = Settings() if root is None else _build(Settings, root, filename, "")
    if overrides:
        settings = apply_overrides(settings, overrides)
    try:
        _check_cross_field(settings, filename)
    except ConfigError as exc:  # add the key's line where the file gives it
        raise ConfigError(_with_line(str(exc), filename, _key_lines(root))) from None
    return settings


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """dotted key -> line of its value in the YAML file (mappings only, as the loader keys
    are dotted)."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[key] = _line(k)
            out.update(_key_lines(v, key))
    return out


def _with_line(message: str, filename: str, lines: dict[str, int]) -> str:
    """``FILE: dotted.key...`` -> ``FILE:LINE: dotted.key...`` when the key is in the file."""
    head = f"{filename}: "
    if not message.startswith(head):
        return message
    m = re.match(r"[A-Za-z_]+(?:\.[A-Za-z_]+)+", message[len(head):])
    if not m or m.group(0) not in lines:
        return message
    return f"{filename}:{lines[m.group(0)]}: {message[len(head):]}"


def apply_overrides(settings: Settings, overrides: dict) -> Settings:
    """Overrides like {"source": {"path": "x.mp4"}} checked as strictly as the file."""
    text = yaml.safe_dump(_merge(dataclass_to_dict(settings), overrides), sort_keys=False)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    return _build(Settings, root, "<command line>", "")


def dataclass_to_dict(obj) -> dict:
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _line(node) -> int:
    return node.start_mark.line + 1


def _err(filename: str, node, key: str, what: str) -> ConfigError:
    return ConfigError(f"{filename}:{_line(node)}: {key or '<top level>'}: {what}")


def _build(cls, node, filename: str, prefix: str):
    if not isinstance(node, yaml.MappingNode):
        raise _err(filename, node, prefix, f"expected a mapping of {cls.__name__} keys")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise _err(filename, key_node, dotted,
                       f"unknown key; expected one of: {', '.join(names)}")
        if key in values:
            raise _err(filename, key_node, dotted, "key given twice")
        values[key] = _convert(hints[key], value_node, filename, dotted)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _err(filename, node, prefix, f"missing keys {missing}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise _err(filename, node, prefix, str(exc)) from None


_BOOL = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def _convert(tp, node, filename: str, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, node, filename, key)
    if origin in (typing.Union, types.UnionType):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, node, filename, key)
            except ConfigError as exc:
                errors.append(str(exc).split(": ", 2)[-1])
        raise _err(filename, node, key, " or ".join(errors))
    if origin is Literal:
        if not isinstance(node, yaml.ScalarNode) or node.value not in [str(a) for a in args]:
            raise _err(filename, node, key, f"expected one of {', '.join(map(str, args))}, "
                       f"got {_show(node)}")
        return next(a for a in args if str(a) == node.value)
    if origin in (tuple, list):
        if not isinstance(node, yaml.SequenceNode):
            raise _err(filename, node, key, f"expected a list, got {_show(node)}")
        item_tp = args[0] if args else str
        items = [_convert(item_tp, n, filename, f"{key}[{i}]") for i, n in enumerate(node.value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise _err(filename, node, key, f"expected a mapping, got {_show(node)}")
        val_tp = args[1] if len(args) > 1 else str
        return {k.value: _convert(val_tp, v, filename, f"{key}.{k.value}") for k, v in node.value}
    if not isinstance(node, yaml.ScalarNode):
        raise _err(filename, node, key, f"expected a {tp.__name__}, got a "
                   f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
    raw, tag = node.value, node.tag
    if tp is bool:
        if raw.lower() in _BOOL and not tag.endswith(":str"):
            return _BOOL[raw.lower()]
        raise _err(filename, node, key, f"expected true or false, got {_show(node)}")
    if tp is int:
        if tag.endswith(":int"):
            return int(raw)
        raise _err(filename, node, key, f"expected an integer, got {_show(node)}")
    if tp is float:
        if tag.endswith(":int") or tag.endswith(":float"):
            return float(raw)
        raise _err(filename, node, key, f"expected a number, got {_show(node)}")
    if tp is str:
        if tag.endswith(":null"):
            return ""
        return str(raw)
    raise _err(filename, node, key, f"unsupported setting type {tp!r}")


def _show(node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _positive(filename: str, key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{filename}: {key}: expected a {'non-negative' if allow_zero else 'positive'}"
                          f" number, got {value!r}")


def _check_cross_field(s: Settings, filename: str) -> None:
    for name in s.launcher.nodes:
        if name not in NODE_NAMES:
            raise ConfigError(f"{filename}: launcher.nodes: unknown node {name!r}; "
                              f"expected some of {', '.join(NODE_NAMES)}")
    _positive(filename, "bus.heartbeat_ms", s.bus.heartbeat_ms)
    _positive(filename, "bus.offline_after_missed", s.bus.offline_after_missed)
    _positive(filename, "bus.command_timeout_ms", s.bus.command_timeout_ms)
    _positive(filename, "source.fps", s.source.fps)
    _positive(filename, "source.depth_mm", s.source.depth_mm)
    _positive(filename, "source.spacing_mm", s.source.spacing_mm, allow_zero=True)
    _positive(filename, "replay.max_in_flight", s.replay.max_in_flight)
    _positive(filename, "render.width_px", s.render.width_px)
    _positive(filename, "render.height_px", s.render.height_px)
    if not 0.0 < s.speech.kws_none_scale <= 1.0:
        raise ConfigError(f"{filename}: speech.kws_none_scale: expected a number in (0, 1], "
                          f"got {s.speech.kws_none_scale!r}")
    problem = settings_problem(s.speech)
    if problem:
        raise ConfigError(f"{filename}: {problem}")
    if s.speech.commands_file:
        from speech.commands import CommandFileError, load_commands
        try:  # a site's own command file: checked now, not when the speech process starts
            load_commands(s.speech.commands_file)
        except CommandFileError as exc:
            raise ConfigError(f"{filename}: speech.commands_file: {exc}") from None
    ids = [b.id for b in s.blocks]
    if not ids:
        raise ConfigError(f"{filename}: blocks: at least one block preset is needed")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{filename}: blocks: duplicate block ids {dup}")
    if s.assistant.block not in ids:
        raise ConfigError(f"{filename}: assistant.block: {s.assistant.block!r} is not a block "
                          f"preset; expected one of {', '.join(ids)}")
    if s.source.kind in ("video", "images") and not s.source.path:
        raise ConfigError(f"{filename}: source.path: required when source.kind is {s.source.kind!r}")
    for key in ("pub_endpoint", "sub_endpoint"):
        ep = getattr(s.bus, key)
        check_endpoint(ep, s.bus.allow_remote, f"{filename}: bus.{key}")


def config_warnings(s: "Settings") -> list[str]:
    """What is allowed but will not work as a site may expect (``assistant check-config``
    prints these): nothing here stops a start, because voice must fail soft."""
    out = []
    sp = s.speech
    from speech.engines import vosk_model_problem

    if sp.engine == "vosk" and vosk_model_problem(sp.vosk_model_dir):
        d = sp.vosk_model_dir
        what = "holds no Vosk model (no am/ folder)" if d and Path(d).is_dir() else "is not a folder"
        out.append(f"speech.engine is vosk but speech.vosk_model_dir "
                   f"{sp.vosk_model_dir or '(not set)'} {what}: the speech process "
                   f"will use PocketSphinx ('assistant models fetch vosk-en' where there is "
                   f"internet)")
    if sp.head_moonshine and sp.whisper and not sp.whisper_head_file:
        from speech.moonshine import MoonshineError, encoder_path
        try:
            encoder_path()
        except MoonshineError as e:
            out.append(f"speech.head_moonshine is true but {e}: the single-word head will "
                       f"read Whisper's encoder alone")
    for key, what in (("kws_model", "the classifier: the speech process will use PocketSphinx"),
                      ("whisper_head_file", "the single-word head: it will be off")):
        path = getattr(sp, key)
        if path and not Path(path).is_file():  # e.g. a site's retrained model not yet there
            out.append(f"speech.{key} {path!r} is not a file ({what})")
    spec = sp.input
    if spec not in ("", "none", "mic") and not spec.startswith("mic:") and not Path(spec).is_file():
        out.append(f"speech.input {spec!r} is not a file (nor 'mic', 'mic:N' or 'none'): "
                   f"voice control will be off")
    if s.source.kind in ("video", "images") and s.source.path and not Path(s.source.path).exists():
        out.append(f"source.path {s.source.path!r} does not exist")
    from models.segmenter import host_int8_weights
    if s.segmentation.int8_weights == "s8" and host_int8_weights() == "u8":
        out.append("segmentation.int8_weights is s8 on an x86 CPU without VNNI (or whose "
                   "flags cannot be read): onnxruntime's int8 sums saturate here and the "
                   "masks differ from the model's measured figures; 'auto' runs its u8 copy")
    if s.segmentation.int8_weights == "s7" and host_int8_weights() == "s8":
        out.append("segmentation.int8_weights is s7 on a CPU whose int8 sums do not saturate "
                   "(VNNI, ARM): its 7-bit weights are coarser and no faster there; 'auto' "
                   "runs the model's own int8 weights")
    return out


def check_endpoint(ep: str, allow_remote: bool, where: str) -> None:
    if ep == "auto" or ep.startswith("ipc://") or ep.startswith("inproc://"):
        return
    if ep.startswith("tcp://"):
        host = ep[len("tcp://"):].rsplit(":", 1)[0]
        if host in ("127.0.0.1", "localhost", "[::1]") or host.startswith("127."):
            return
        if allow_remote:
            return
        raise ConfigError(f"{where}: {ep!r} binds beyond this machine; use loopback "
                          "(tcp://127.0.0.1:PORT) or ipc://, or set bus.allow_remote: true")
    raise ConfigError(f"{where}: expected 'auto', ipc://PATH or tcp://HOST:PORT, got {ep!r}")
