"""The voice command set: loading and strict validation of ``commands_<lang>.yaml``,
the JSGF grammar built from it, and phrase -> command id lookup (pure functions).

A site edits the YAML (phrases, synonyms, which commands need confirmation); the
command ids are fixed because the assistant logic acts on exactly these.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

LAYERS = ("nerve", "vessel", "fascia", "muscle", "bone", "pleura", "needle", "all")
BLOCKS = ("pecs1", "pecs2", "interscalene", "supraclavicular", "axillary", "femoral")
SINGLE_WORDS = ("yes", "no", "stop", "go", "up", "down", "left", "right", "on", "off")

#: Every id the assistant logic understands (docs/ARCHITECTURE.md, "Canonical command ids").
CANONICAL_IDS: frozenset[str] = frozenset(
    [f"show.{layer}" for layer in LAYERS]
    + [f"hide.{layer}" for layer in LAYERS]
    + ["quality_score", "needle_depth", "where_target", "freeze", "unfreeze",
       "record_start", "record_stop", "injection_start", "injection_stop",
       "block_next", "block_previous", "repeat", "help", "mute", "unmute"]
    + [f"block.{b}" for b in BLOCKS]
    + list(SINGLE_WORDS)
)

DEFAULT_COMMANDS_FILE = Path(__file__).with_name("commands_en.yaml")

_TOP_KEYS = {"version", "language", "dictionary", "wake_phrases", "commands"}
_CMD_KEYS = {"phrases", "confirm", "reply"}
# letters of any script (another language is another file), apostrophes inside words
_WORD_RE = re.compile(r"^[^\W\d_][^\W\d_']*(?:'[^\W\d_]+)*$")
_PHONE_RE = re.compile(r"^[A-Z]{1,3}$")


class CommandFileError(ValueError):
    """The command YAML (or its dictionary) is invalid; the message names file and key."""


@dataclass(frozen=True)
class Command:
    id: str
    phrases: tuple[str, ...]
    confirm: bool = False  # the assistant asks "yes/no" before acting
    reply: bool = False  # accepted without the wake phrase while an answer is expected


@dataclass(frozen=True)
class CommandSet:
    """A validated command set. ``phrase_to_id`` maps each normalised phrase to its id."""

    path: str
    language: str
    wake_phrases: tuple[str, ...]
    commands: dict[str, Command]
    phrase_to_id: dict[str, str]
    pronunciations: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def words(self) -> set[str]:
        """All words of all phrases and wake phrases (what the dictionary must cover)."""
        out: set[str] = set()
        for p in list(self.phrase_to_id) + list(self.wake_phrases):
            out.update(p.split())
        return out

    def lookup(self, phrase: str) -> str | None:
        """Command id for a recognised phrase (wake phrase already removed), or None."""
        return self.phrase_to_id.get(normalise(phrase))

    def strip_wake(self, text: str) -> tuple[bool, str]:
        """(wake phrase present at the start, the rest)."""
        t = normalise(text)
        for w in sorted(self.wake_phrases, key=len, reverse=True):
            if t == w:
                return True, ""
            if t.startswith(w + " "):
                return True, t[len(w) + 1:]
        return False, t

    def jsgf(self) -> str:
        """A JSGF grammar: a wake phrase alone, or an optional wake phrase and a command.

        The wake phrase alone is in the grammar so that "assistant ... show fascia" said
        with a pause can be held and joined with the next utterance (see listener).
        """
        wake = " | ".join(self.wake_phrases)
        cmds = " | ".join(sorted(self.phrase_to_id))
        return ("#JSGF V1.0;\ngrammar commands;\n"
                f"<wake> = {wake};\n<cmd> = {cmds};\n"
                "public <utt> = <wake> | [<wake>] <cmd>;\n")


def normalise(text: str) -> str:
    """Lower case, single spaces, no punctuation, digits or recognizer fillers (<sil>)."""
    text = re.sub(r"<[^>]*>|\[[^\]]*\]|\(\d+\)", " ", text.lower())
    text = re.sub(r"[^\w' ]+|[\d_]+", " ", text)
    return " ".join(text.split())


def read_dictionary(path: Path) -> dict[str, tuple[str, ...]]:
    """A CMU-style dictionary file: ``word PH ON ES`` per line, ``word(2)`` variants."""
    out: dict[str, list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandFileError(f"dictionary {path}: cannot read: {exc}") from exc
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        parts = line.split()
        word = re.sub(r"\(\d+\)$", "", parts[0]).lower()
        phones = parts[1:]
        if not phones or not all(_PHONE_RE.match(p) for p in phones):
            raise CommandFileError(f"dictionary {path} line {n}: expected 'word PHONE PHONE ...' "
                                   f"(CMU phones, upper case), got {line!r}")
        out.setdefault(word, []).append(" ".join(phones))
    return {w: tuple(v) for w, v in out.items()}


def load_commands(path: str | Path | None = None,
                  known_words: set[str] | None = None) -> CommandSet:
    """Read and validate a command YAML. ``known_words``: the recognizer's base
    dictionary; when given, every phrase word must be in it or in the file's own
    ``dictionary``. Raises CommandFileError naming the file and what was wrong."""
    p = Path(path) if path else DEFAULT_COMMANDS_FILE
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandFileError(f"command file {p}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CommandFileError(f"command file {p}: not valid YAML: {exc}") from exc
    return parse_commands(raw, str(p), known_words)


def parse_commands(raw: object, where: str = "<commands>",
                   known_words: set[str] | None = None) -> CommandSet:
    """Validate an already-parsed command document (see :func:`load_commands`)."""
    def err(msg: str) -> CommandFileError:
        return CommandFileError(f"command file {where}: {msg}")

    if not isinstance(raw, dict):
        raise err("top level must be a mapping with keys " + ", ".join(sorted(_TOP_KEYS)))
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise err(f"unknown top-level key(s) {sorted(map(str, unknown))}; allowed: {sorted(_TOP_KEYS)}")
    if raw.get("version") != 1:
        raise err(f"'version' must be 1, got {raw.get('version')!r}")
    language = raw.get("language")
    if not isinstance(language, str) or not language:
        raise err("'language' must be a non-empty string such as 'en'")

    pron: dict[str, tuple[str, ...]] = {}
    if raw.get("dictionary") is not None:
        if not isinstance(raw["dictionary"], str):
            raise err("'dictionary' must be a file name")
        dpath = Path(raw["dictionary"])
        if not dpath.is_absolute():
            dpath = Path(where).parent / dpath
        if not dpath.exists():
            raise err(f"'dictionary' file {dpath} does not exist")
        pron = read_dictionary(dpath)

    wakes = raw.get("wake_phrases")
    if not isinstance(wakes, list) or not wakes or not all(isinstance(w, str) for w in wakes):
        raise err("'wake_phrases' must be a non-empty list of strings")
    wake_phrases = tuple(_check_phrase(w, "wake_phrases", err) for w in wakes)

    cmds_raw = raw.get("commands")
    if not isinstance(cmds_raw, dict) or not cmds_raw:
        raise err("'commands' must be a non-empty mapping of command id -> {phrases: [...]}")
    commands: dict[str, Command] = {}
    phrase_to_id: dict[str, str] = {}
    for cid, spec in cmds_raw.items():
        if isinstance(cid, bool):
            raise err(f"command id {cid!r} is a YAML boolean: quote the ids \"yes\", \"no\", "
                      f"\"on\", \"off\" (unquoted, YAML reads them as true/false)")
        cid = str(cid)
        if cid not in CANONICAL_IDS:
            raise err(f"unknown command id {cid!r}; known ids: {sorted(CANONICAL_IDS)}")
        if not isinstance(spec, dict):
            raise err(f"command {cid!r}: expected a mapping with 'phrases', got {spec!r}")
        bad = set(spec) - _CMD_KEYS
        if bad:
            raise err(f"command {cid!r}: unknown key(s) {sorted(bad)}; allowed: {sorted(_CMD_KEYS)}")
        phrases = spec.get("phrases")
        if not isinstance(phrases, list) or not phrases:
            raise err(f"command {cid!r}: 'phrases' must be a non-empty list of strings")
        norm = []
        for ph in phrases:
            if not isinstance(ph, str):
                raise err(f"command {cid!r}: phrase {ph!r} is not a string (quote yes/no/on/off)")
            n = _check_phrase(ph, f"command {cid!r}", err)
            if n in phrase_to_id:
                raise err(f"phrase {ph!r} is used by both {phrase_to_id[n]!r} and {cid!r}")
            if n in wake_phrases:
                raise err(f"command {cid!r}: phrase {ph!r} is the wake phrase")
            phrase_to_id[n] = cid
            norm.append(n)
        for key in ("confirm", "reply"):
            if key in spec and not isinstance(spec[key], bool):
                raise err(f"command {cid!r}: '{key}' must be true or false, got {spec[key]!r}")
        commands[cid] = Command(cid, tuple(norm), bool(spec.get("confirm", False)),
                                bool(spec.get("reply", False)))

    cs = CommandSet(where, language, wake_phrases, commands, phrase_to_id, pron)
    if known_words is not None:
        missing = sorted(w for w in cs.words if w not in known_words and w not in pron)
        if missing:
            raise err(f"word(s) {missing} have no pronunciation: add them to the "
                      f"'dictionary' file (CMU phones)")
    return cs


def _check_phrase(phrase: str, what: str, err) -> str:
    n = " ".join(phrase.lower().split())
    if not n or not all(_WORD_RE.match(w) for w in n.split()):
        raise err(f"{what}: phrase {phrase!r} must be words of letters (no digits or "
                  f"punctuation: write 'two', not '2')")
    return n
