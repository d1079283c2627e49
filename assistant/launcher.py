"""Starts every node as its own process, runs the bus proxy, watches heartbeats,
restarts crashed nodes with doubling back-off, writes the event log, and stops
everything (Ctrl-C / SIGTERM) within ~2 s, leaving no process behind."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from assistant import messages as m
from assistant.bus import BusClient, Endpoints, Proxy, resolve_endpoints
from assistant.node import set_parent_death_signal

log = logging.getLogger(__name__)


@dataclass
class NodeProc:
    name: str
    proc: subprocess.Popen | None = None
    pid: int | None = None
    started_at: float = 0.0
    last_hb: float | None = None
    ready: bool = False
    online: bool = False  # announced online (heartbeats arriving)
    restarts: int = 0
    backoff_ms: int = 0
    restart_due: float | None = None
    log_path: str = ""
    stats: dict = field(default_factory=dict)


class EventLog:
    """events.jsonl: one JSON object per line, flushed as written (nothing lost on a crash)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._f = open(self.path, "w", encoding="utf-8") if self.path else None
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.count = 0
        self.last_text = ""

    def write(self, record: dict) -> None:
        with self.lock:
            self.count += 1
            self.last_text = record.get("text", "")
            if self._f:
                self._f.write(json.dumps(record, sort_keys=True) + "\n")
                self._f.flush()

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


class Launcher:
    def __init__(self, settings, config_path: str | None, overrides: dict | None = None,
                 nodes: tuple[str, ...] | None = None, replay: bool = False,
                 run_dir: str | None = None, events_path: str | None = None,
                 log_dir: str | None = None):
        self.settings = settings
        self.config_path = config_path
        self.overrides = overrides or {}
        self.replay = replay
        # A run folder the launcher made is its own to remove at stop (the bus sockets, and
        # the folder itself unless the node logs were written there: `assistant run` says where).
        self._own_run_dir = run_dir is None
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="usra-run-")
        self.endpoints: Endpoints = resolve_endpoints(settings.bus, self.run_dir)
        self.log_dir = Path(log_dir or self.run_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        names = nodes if nodes is not None else settings.launcher.nodes
        self.nodes = {n: NodeProc(n) for n in names}
        self.events = EventLog(events_path)
        self.ctx = zmq.Context()
        self.proxy = Proxy(self.endpoints, self.ctx)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hb_timeout_s = settings.bus.heartbeat_ms * settings.bus.offline_after_missed / 1000
        self.event_hooks: list = []
        self.run_id = uuid.uuid4().hex[:12]  # callables(header, msg) run in the supervisor thread

    # ------------------------------------------------------------------ processes
    def _spawn(self, np_: NodeProc) -> None:
        cmd = [sys.executable, "-m", "assistant.node_main", np_.name,
               "--pub", self.endpoints.pub, "--sub", self.endpoints.sub,
               "--overrides", json.dumps(self.overrides), "--run-id", self.run_id]
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        if self.replay:
            cmd.append("--replay")
        np_.log_path = str(self.log_dir / f"{np_.name}.log")
        logf = open(np_.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # One core per process at most: the nodes share a small machine.
        env.setdefault("OMP_NUM_THREADS", "1")
        np_.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=set_parent_death_signal)
        logf.close()
        np_.pid = np_.proc.pid
        np_.started_at = time.monotonic()
        np_.last_hb = None
        np_.ready = False
        np_.restart_due = None
        log.info("started %s (pid %d)", np_.name, np_.pid)

    def start(self) -> "Launcher":
        self.proxy.start()
        self.client = BusClient(self.endpoints, "launcher", ("hb", "event", "node_status"), ctx=self.ctx)
        for np_ in self.nodes.values():
            self._spawn(np_)
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every node has said 'ready' (its subscriptions are live)."""
        timeout_s = timeout_s or self.settings.launcher.ready_timeout_s
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                waiting = [n for n, p in self.nodes.items() if not p.ready]
                dead = [n for n, p in self.nodes.items()
                        if p.proc is not None and p.proc.poll() is not None and p.restarts == 0]
            if not waiting:
                return
            if self._stop.is_set():
                break
            time.sleep(0.02)
        raise RuntimeError(f"nodes not ready after {timeout_s:.0f} s: {', '.join(waiting)} "
                           f"(see their logs in {self.log_dir})")

    # ------------------------------------------------------------------ supervision
    def _publish_status(self, np_: NodeProc, state: str, detail: str) -> None:
        self.client.publish(m.NodeStatus(node=np_.name, state=state, detail=detail,
                                         restarts=np_.restarts))
        self.client.publish(m.Event(kind="node", text=f"{np_.name} {state}",
                                    data={"node": np_.name, "state": state, "detail": detail,
                                          "restarts": np_.restarts}))

    def _supervise(self) -> None:
        while not self._stop.is_set():
            got = self.client.recv(20)
            batch = ([got] if got else []) + self.client.drain()
            now = time.monotonic()
            for header, msg in batch:
                if isinstance(msg, m.Heartbeat):
                    self._on_heartbeat(msg, now)
                elif isinstance(msg, m.Event):
                    self.events.write({"t_s": round(now - self.events.t0, 4),
                                       "source": header.source.split(":")[0],
                                       "kind": msg.kind, "text": msg.text,
                                       "media_time_s": msg.media_time_s,
                                       "frame_id": msg.frame_id, "data": msg.data})
                for hook in self.event_hooks:
                    hook(header, msg)
            self._check(now)

    def _on_heartbeat(self, hb: m.Heartbeat, now: float) -> None:
        with self._lock:
            np_ = self.nodes.get(hb.node)
            if np_ is None or hb.pid != np_.pid:
                return
            np_.last_hb = now
            np_.stats = hb.stats
            if hb.state == "ready":
                np_.ready = True
            if not np_.online and np_.ready:
                np_.online = True
                if np_.restarts:
                    self._publish_status(np_, "online", f"back after restart {np_.restarts}")
                    np_.backoff_ms = self.settings.launcher.restart_backoff_ms

    def _check(self, now: float) -> None:
        if self._stop.is_set():
            return
        ls = self.settings.launcher
        with self._lock:
            for np_ in self.nodes.values():
                if np_.proc is None:
                    continue
                code = np_.proc.poll()
                if code is None and np_.online and np_.last_hb is not None \
                        and now - np_.last_hb > self.hb_timeout_s:
                    # Alive but silent: hung. Kill it; it is restarted below.
                    log.warning("%s missed %d heartbeats; killing pid %d", np_.name,
                                self.settings.bus.offline_after_missed, np_.pid)
                    np_.proc.kill()
                    np_.proc.wait(2)
                    code = np_.proc.returncode
                if code is not None and np_.restart_due is None:
                    np_.online = False
                    np_.ready = False
                    np_.backoff_ms = min(max(np_.backoff_ms * 2, ls.restart_backoff_ms),
                                         ls.restart_backoff_max_ms)
                    np_.restart_due = now + np_.backoff_ms / 1000
                    log.warning("%s exited with code %s; restarting in %d ms", np_.name, code,
                                np_.backoff_ms)
                    self._publish_status(np_, "offline", f"exit code {code}")
                elif code is not None and np_.restart_due is not None and now >= np_.restart_due:
                    np_.restarts += 1
                    self._spawn(np_)
                    self._publish_status(np_, "restarted", f"restart {np_.restarts}")

    # ------------------------------------------------------------------ stop
    def kill_node(self, name: str, sig: int = signal.SIGKILL) -> int:
        """For tests and fault drills: signal one node's process; returns its pid."""
        with self._lock:
            np_ = self.nodes[name]
            os.kill(np_.pid, sig)
            return np_.pid

    def node_info(self, name: str) -> NodeProc:
        with self._lock:
            return self.nodes[name]

    def stop(self) -> None:
        """Stop every node: ask over the bus, then SIGTERM, then SIGKILL (<= ~2 s)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self.client.publish(m.Control(action="stop"))
        except Exception:  # the bus may already be gone
            pass
        procs = [p.proc for p in self.nodes.values() if p.proc is not None]
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.settings.launcher.stop_timeout_ms / 1000
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.wait(1)
        if self._thread:
            self._thread.join(1.0)
        self.client.close()
        self.proxy.stop()
        self.events.close()
        self.ctx.destroy(linger=0)  # closes any socket a caller left open: never hangs
        self._remove_run_files()

    def _remove_run_files(self) -> None:
        """Delete the ipc:// socket files of the bus in a run folder the launcher made, then
        the folder if nothing else is in it (each test, demo and replay used to leave one)."""
        if not self._own_run_dir:
            return
        run_dir = Path(self.run_dir)
        for ep in (self.endpoints.pub, self.endpoints.sub):
            if ep.startswith("ipc://"):
                path = Path(ep[len("ipc://"):])
                if path.parent == run_dir:
                    path.unlink(missing_ok=True)
        try:
            run_dir.rmdir()  # only if empty: logs written here are kept
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_forever(launcher: Launcher) -> int:
    """`assistant run`: until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    launcher.start()
    try:
        try:
            launcher.wait_ready()
            print(f"all nodes ready: {', '.join(launcher.nodes)}", file=sys.stderr, flush=True)
        except RuntimeError as exc:
            if not stop.is_set():
                print(f"warning: {exc}", file=sys.stderr, flush=True)
        while not stop.wait(0.1):
            pass
    finally:
        launcher.stop()
    return 0
