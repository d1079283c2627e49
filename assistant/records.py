"""Session records in SQLite, and the teaching figures computed from them.

One file holds every session (default: :func:`default_db_path`). WAL journal, each
write its own committed transaction (autocommit), so when any process dies, every row
written before is in the file; readers (the report) never block the writer.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`, also in table ``meta``):

* ``sessions(id, uid, operator, block, started_wall, ended_wall, start_s, end_s,
  source, notes)``: ``start_s``/``end_s`` are on the node's time base (media time in
  replay, monotonic live), like every ``t_s`` below; ``started_wall`` is Unix time.
* ``events(session_id, t_s, kind, text, data)``: kinds as :class:`assistant.logic.LogEvent`
  (command_heard, command_unclear, action, alert, node, recording, injection, info); ``data`` JSON.
* ``quality(session_id, t_s, score, reason)``
* ``needle(session_id, t_s, visible, depth_mm, to_target_mm, tip_x, tip_y,
  danger_name, danger_mm)``
* ``choices(session_id, t_s, data)``: the operator's latest choices (overlay, layers,
  block, recording, injection mark...; :func:`assistant.logic.operator_choices`), one
  row per session, so that a restarted assistant carries on with them (version 2)

Privacy: no patient fields exist. Operator names are stored (the learning curve needs
them) but logs carry only :func:`operator_id`, a short hash.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
APP_DIR = "usra-assistant"
DB_NAME = "sessions.sqlite"
#: a gap between samples longer than this (s) is not counted as viewing time
MAX_SAMPLE_GAP_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    operator TEXT NOT NULL,
    block TEXT NOT NULL,
    started_wall REAL NOT NULL,
    ended_wall REAL,
    start_s REAL NOT NULL,
    end_s REAL,
    source TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    t_s REAL NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS quality (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    t_s REAL NOT NULL,
    score REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS needle (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    t_s REAL NOT NULL,
    visible INTEGER NOT NULL,
    depth_mm REAL,
    to_target_mm REAL,
    tip_x REAL,
    tip_y REAL,
    danger_name TEXT,
    danger_mm REAL
);
CREATE TABLE IF NOT EXISTS choices (
    session_id INTEGER PRIMARY KEY REFERENCES sessions(id),
    t_s REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id, t_s);
CREATE INDEX IF NOT EXISTS quality_session ON quality(session_id, t_s);
CREATE INDEX IF NOT EXISTS needle_session ON needle(session_id, t_s);
CREATE INDEX IF NOT EXISTS sessions_operator ON sessions(operator, started_wall);
"""

EVENT_KINDS = ("command_heard", "command_unclear", "action", "alert", "node", "recording",
               "injection", "info", "speech", "caveat")


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME/usra-assistant/sessions.sqlite, else ~/.local/share/...

    Resolved when called (never at import), from ``env`` (default ``os.environ``).
    """
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / APP_DIR / DB_NAME


def operator_id(name: str) -> str:
    """A short, stable, non-reversible id for logs: never log the name itself."""
    return "op-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def pseudonym(name: str, salt: str = "") -> str:
    """A stable pseudonym for de-identified exports ("operator-3fa2c1")."""
    return "operator-" + hashlib.sha256((salt + "\0" + name).encode("utf-8")).hexdigest()[:6]


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class SessionDbError(RuntimeError):
    """A file that cannot be used as the session database, said in words."""


class SessionStore:
    """The session database. One per process; not shared across threads."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = Path(path) if path else default_db_path()
        if not create and not self.path.exists():
            raise FileNotFoundError(f"session database {self.path} does not exist")
        if self.path.is_dir():
            raise SessionDbError(f"session database {self.path} is a folder, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, every statement is committed when it returns
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        try:  # before anything writes to it: is this ours?
            tables = {r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise SessionDbError(f"{self.path} is not an SQLite session database ({exc})") from None
        if not create and "sessions" not in tables:
            self._db.close()  # a reader must not turn someone else's database into ours
            raise SessionDbError(f"{self.path} is not a session database (no 'sessions' table)")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a committed write survives a crash of the process (not of the
        # OS); FULL would fsync every frame's sample
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- lifecycle
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"session database {self.path} has schema version {version}, "
                               f"newer than this program's {SCHEMA_VERSION}; upgrade it")
        if version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES "
                                 "('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "SessionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing
    def start_session(self, operator: str, block: str, start_s: float = 0.0,
                      source: str = "", notes: str = "",
                      started_wall: float | None = None, uid: str | None = None) -> int:
        """A new session; returns its id. ``start_s`` on the node's time base. ``uid``
        (default: a new random one) names the run, so a restarted process can resume it
        (:meth:`resume_or_start`)."""
        if not operator or not isinstance(operator, str):
            raise ValueError(f"operator must be a non-empty string, got {operator!r}")
        if not block or not isinstance(block, str):
            raise ValueError(f"block must be a non-empty string, got {block!r}")
        uid = uid or uuid.uuid4().hex[:12]
        cur = self._db.execute(
            "INSERT INTO sessions(uid, operator, block, started_wall, start_s, source, notes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (uid, operator, block, time.time() if started_wall is None else started_wall,
             float(start_s), source, notes))
        sid = int(cur.lastrowid)
        log.info("session %d (%s) started: operator %s, block %s", sid, uid,
                 operator_id(operator), block)
        return sid

    def resume_or_start(self, uid: str, operator: str, block: str, start_s: float = 0.0,
                        source: str = "") -> tuple[int, bool]:
        """The session of run ``uid`` if one exists (a process restarted mid-run: what
        was recorded before the crash stays, new records append), else a new one.
        Returns (session id, resumed)."""
        row = self._db.execute("SELECT id FROM sessions WHERE uid = ?", (str(uid),)).fetchone()
        if row is not None:
            return int(row[0]), True
        return self.start_session(operator, block, start_s, source=source, uid=uid), False

    def end_session(self, session_id: int, end_s: float,
                    ended_wall: float | None = None) -> None:
        self._db.execute("UPDATE sessions SET end_s = ?, ended_wall = ? WHERE id = ?",
                         (float(end_s), time.time() if ended_wall is None else ended_wall,
                          int(session_id)))

    def add_event(self, session_id: int, t_s: float, kind: str, text: str,
                  data: Mapping[str, Any] | None = None) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        self._db.execute("INSERT INTO events(session_id, t_s, kind, text, data) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (int(session_id), float(t_s), kind, str(text),
                          json.dumps(dict(data or {}), default=str)))

    def add_quality(self, session_id: int, t_s: float, score: float, reason: str = "") -> None:
        score = float(score)
        if not 0.0 <= score <= 100.0:
            raise ValueError(f"quality score must be within 0..100, got {score!r}")
        self._db.execute("INSERT INTO quality(session_id, t_s, score, reason) VALUES (?,?,?,?)",
                         (int(session_id), float(t_s), score, str(reason)))

    def add_needle(self, session_id: int, t_s: float, visible: bool,
                   depth_mm: float | None = None, to_target_mm: float | None = None,
                   tip_px: Iterable[float] | None = None,
                   nearest_danger: Mapping[str, Any] | None = None) -> None:
        tip = list(tip_px) if tip_px else [None, None]
        danger = nearest_danger or {}
        self._db.execute(
            "INSERT INTO needle(session_id, t_s, visible, depth_mm, to_target_mm, tip_x, "
            "tip_y, danger_name, danger_mm) VALUES (?,?,?,?,?,?,?,?,?)",
            (int(session_id), float(t_s), int(bool(visible)), _num(depth_mm),
             _num(to_target_mm), _num(tip[0]), _num(tip[1]), danger.get("name"),
             _num(danger.get("distance_mm"))))

    def record_action(self, session_id: int, action: Any, t_s: float) -> bool:
        """Write a :mod:`assistant.logic` action that belongs in the record.

        LogEvent -> events; RecordSample "quality"/"needle" -> its table. Returns
        whether anything was written (Speak, PublishState... are not records).
        """
        from assistant.logic import LogEvent, RecordSample  # no import cycle at load

        if isinstance(action, LogEvent):
            self.add_event(session_id, t_s, action.kind, action.text, action.data)
            return True
        if isinstance(action, RecordSample):
            d = action.data
            if action.kind == "quality":
                self.add_quality(session_id, action.t_s, d["score"], d.get("reason", ""))
            elif action.kind == "needle":
                self.add_needle(session_id, action.t_s, d.get("visible", False),
                                d.get("depth_mm"), d.get("to_target_mm"), d.get("tip_px"),
                                d.get("nearest_danger"))
            else:
                raise ValueError(f"unknown RecordSample kind {action.kind!r}")
            return True
        return False

    def save_choices(self, session_id: int, t_s: float, data: Mapping[str, Any]) -> None:
        """Replace the session's saved operator choices (one row per session)."""
        self._db.execute("INSERT OR REPLACE INTO choices(session_id, t_s, data) VALUES (?,?,?)",
                         (int(session_id), float(t_s), json.dumps(dict(data), default=str)))

    def load_choices(self, session_id: int) -> dict | None:
        """The session's saved operator choices, or None if none were saved. A row that
        is not a JSON object raises ValueError naming the session."""
        row = self._db.execute("SELECT data FROM choices WHERE session_id = ?",
                               (int(session_id),)).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except json.JSONDecodeError as exc:
            raise ValueError(f"session {session_id}: saved choices are not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"session {session_id}: saved choices are not a JSON object")
        return data

    # -- reading
    def session(self, key: int | str) -> dict:
        """A session by numeric id or uid; KeyError naming it if absent."""
        row = None
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (int(key),)).fetchone()
        if row is None:
            row = self._db.execute("SELECT * FROM sessions WHERE uid = ?", (str(key),)).fetchone()
        if row is None:
            raise KeyError(f"no session {key!r} in {self.path}")
        return dict(row)

    def sessions(self, operator: str | None = None) -> list[dict]:
        """All sessions (of ``operator``), oldest first."""
        if operator is None:
            rows = self._db.execute("SELECT * FROM sessions ORDER BY started_wall, id")
        else:
            rows = self._db.execute("SELECT * FROM sessions WHERE operator = ? "
                                    "ORDER BY started_wall, id", (operator,))
        return [dict(r) for r in rows]

    def events(self, session_id: int, kind: str | None = None) -> list[dict]:
        q = "SELECT t_s, kind, text, data FROM events WHERE session_id = ?"
        args: tuple = (int(session_id),)
        if kind:
            q += " AND kind = ?"
            args += (kind,)
        rows = self._db.execute(q + " ORDER BY t_s, id", args)
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def quality(self, session_id: int) -> list[tuple[float, float, str]]:
        return [tuple(r) for r in self._db.execute(
            "SELECT t_s, score, reason FROM quality WHERE session_id = ? ORDER BY t_s, rowid",
            (int(session_id),))]

    def needle(self, session_id: int) -> list[dict]:
        return [dict(r) for r in self._db.execute(
            "SELECT t_s, visible, depth_mm, to_target_mm, tip_x, tip_y, danger_name, danger_mm "
            "FROM needle WHERE session_id = ? ORDER BY t_s, rowid", (int(session_id),))]


# ----------------------------------------------------------------------------- figures

def _durations(ts: list[float], end_s: float | None) -> list[float]:
    """Time each sample stands for: until the next one, gaps capped at MAX_SAMPLE_GAP_S
    (the segmentation was offline or the session paused: not viewing time)."""
    out = []
    for i, t in enumerate(ts):
        nxt = ts[i + 1] if i + 1 < len(ts) else (end_s if end_s is not None else t)
        out.append(min(max(nxt - t, 0.0), MAX_SAMPLE_GAP_S))
    return out


def session_figures(store: SessionStore, session_id: int, adequate: float = 60.0) -> dict:
    """Teaching figures of one session.

    ``time_to_adequate_s``: from session start to the first quality >= ``adequate``
    (None: never); ``adequate_share``: share of scored time with quality >= adequate;
    ``needle_visible_s``; ``injection_s`` (start/stop marks; an open one runs to the
    session end); ``alerts`` (count, and by kind); ``supervisor_commands``;
    ``commands_unclear``: commands asked for (wake phrase heard) but not understood;
    ``commands_second_opinion``: commands acted on because PocketSphinx agreed with an
    unsure classifier (``via`` "second opinion"); ``commands_whisper``: commands
    Whisper's check acted on where the classifier had none or another (``via`` "whisper");
    ``unverified``: the classes these figures rested on whose outlines were never checked
    on real scans (from the assistant's "caveat" events).
    """
    s = store.session(session_id)
    sid = s["id"]
    q = store.quality(sid)
    nd = store.needle(sid)
    ev = store.events(sid)
    last_t = max([t for t, *_ in q] + [r["t_s"] for r in nd] + [e["t_s"] for e in ev]
                 + [s["start_s"]])
    end_s = s["end_s"] if s["end_s"] is not None else last_t
    qt = [t for t, _, _ in q]
    qd = _durations(qt, end_s)
    scored = sum(qd)
    adequate_time = sum(d for d, (_, sc, _) in zip(qd, q) if sc >= adequate)
    first = next((t for t, sc, _ in q if sc >= adequate), None)
    nt = [r["t_s"] for r in nd]
    visible_s = sum(d for d, r in zip(_durations(nt, end_s), nd) if r["visible"])

    injection_s, open_at = 0.0, None
    for e in ev:
        if e["kind"] != "injection":
            continue
        mark = e["data"].get("mark")
        if mark == "start" and open_at is None:
            open_at = e["t_s"]
        elif mark == "stop" and open_at is not None:
            injection_s += e["t_s"] - open_at
            open_at = None
    if open_at is not None:
        injection_s += max(0.0, end_s - open_at)
    alerts = [e for e in ev if e["kind"] == "alert"]
    by_key: dict[str, int] = {}
    for e in alerts:
        key = e["data"].get("key", "other")
        by_key[key] = by_key.get(key, 0) + 1
    depths = [r["depth_mm"] for r in nd if r["visible"] and r["depth_mm"] is not None]
    unverified: dict = {}  # classes the assistant said were never checked on real scans
    for e in ev:
        if e["kind"] == "caveat":
            unverified.update(dict.fromkeys(str(c) for c in e["data"].get("unverified", [])))
    return {
        "session_id": sid, "uid": s["uid"], "operator": s["operator"], "block": s["block"],
        "started_wall": s["started_wall"], "duration_s": max(0.0, end_s - s["start_s"]),
        "adequate_threshold": adequate,
        "time_to_adequate_s": None if first is None else first - s["start_s"],
        "adequate_share": adequate_time / scored if scored > 0 else 0.0,
        "mean_quality": sum(sc for _, sc, _ in q) / len(q) if q else None,
        "needle_visible_s": visible_s,
        "max_depth_mm": max(depths) if depths else None,
        "injection_s": injection_s,
        "alerts": len(alerts), "alerts_by_key": by_key,
        "commands": sum(1 for e in ev if e["kind"] == "command_heard"),
        "supervisor_commands": sum(1 for e in ev if e["kind"] == "command_heard"
                                   and e["data"].get("role") == "supervisor"),
        "commands_unclear": sum(1 for e in ev if e["kind"] == "command_unclear"),
        "commands_second_opinion": sum(1 for e in ev if e["kind"] == "command_heard"
                                       and e["data"].get("via") == "second opinion"),
        "commands_whisper": sum(1 for e in ev if e["kind"] == "command_heard"
                                and e["data"].get("via") == "whisper"),
        "unverified": list(unverified),
    }


def learning_curve(store: SessionStore, operator: str, adequate: float = 60.0) -> list[dict]:
    """The operator's sessions in order, each with its figures and its number (1, 2...)."""
    out = []
    for n, s in enumerate(store.sessions(operator), start=1):
        f = session_figures(store, s["id"], adequate)
        f["n"] = n
        out.append(f)
    return out
