"""The thin shell every process runs: a loop over bus messages with heartbeats,
reliable sends, newest-only streams (live) and a clean stop.

A node subclass declares ``NAME``, ``TOPICS`` (what it subscribes to) and
``STREAM_TYPES`` (topics of which it only wants the newest in live mode), and
overrides ``setup``, ``handle`` and ``tick``. The decisions live in pure functions
elsewhere; nodes only move messages.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque

from assistant import messages as m
from assistant.bus import BusClient, Endpoints, ReliableSender, newest_only

log = logging.getLogger(__name__)


class Node:
    NAME = "node"
    TOPICS: tuple[str, ...] = ()
    STREAM_TYPES: tuple[str, ...] = ()
    POLL_MS = 20

    def __init__(self, settings, endpoints: Endpoints, replay: bool = False, ctx=None):
        self.settings = settings
        self.endpoints = endpoints
        self.replay = replay
        self.source = m.node_source(self.NAME)
        topics = tuple(dict.fromkeys(self.TOPICS + ("ack", "control", "hb")))
        self.bus = BusClient(endpoints, self.source, topics, ctx=ctx)
        self.reliable = ReliableSender(self.bus, settings.bus.command_timeout_ms,
                                       settings.bus.command_retries)
        self._stop = threading.Event()
        self._hb_seq = 0
        self._hb_due = 0.0
        self.ready = False  # our SUB has seen our own heartbeat: subscriptions are live
        self._seen_reliable: deque[str] = deque(maxlen=512)
        self._seen_set: set[str] = set()
        self.life = "starting"
        self.run_id = ""  # set by node_main from the launcher: one id per run  # starting | ready | stopping (sent in heartbeats)

    # ------------------------------------------------------------------ overridables
    def setup(self) -> None:
        """Load models, open devices. Runs before the first heartbeat says 'ready'."""

    def handle(self, header: m.Header, msg: m.Message) -> None:
        """One message (in order; in live mode only the newest of each stream type)."""

    def tick(self, now: float) -> None:
        """Called every loop turn (at least every POLL_MS)."""

    def teardown(self) -> None:
        """Release devices; called once on the way out."""

    def stats(self) -> dict:
        return {}

    def poll_timeout_ms(self, now: float) -> int:
        """How long the loop may wait for a message before calling tick again."""
        return self.POLL_MS

    # ------------------------------------------------------------------ helpers
    def publish(self, msg: m.Message, parent_id: str | None = None) -> m.Header:
        return self.bus.publish(msg, parent_id=parent_id)

    def send_reliable(self, msg: m.Message, parent_id: str | None = None) -> str:
        return self.reliable.send(msg, parent_id=parent_id)

    def ack(self, header: m.Header, ok: bool = True, detail: str = "") -> None:
        """Acknowledge a reliable message; returns nothing. Call once per receipt."""
        sender = header.source.split(":")[0]
        self.bus.publish(m.Ack(to=sender, ok=ok, detail=detail), parent_id=header.msg_id)

    def first_time(self, header: m.Header) -> bool:
        """De-duplicates retried reliable messages by msg_id."""
        if header.msg_id in self._seen_set:
            return False
        if len(self._seen_reliable) == self._seen_reliable.maxlen:
            self._seen_set.discard(self._seen_reliable[0])
        self._seen_reliable.append(header.msg_id)
        self._seen_set.add(header.msg_id)
        return True

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ loop
    def _heartbeat(self, now: float) -> None:
        """Publish a heartbeat when one is due (cheap otherwise)."""
        if now < self._hb_due:
            return
        self._hb_due = now + self.settings.bus.heartbeat_ms / 1000
        self._hb_seq += 1
        stats = {**{k: int(v) for k, v in self.bus.stats.items()}, **self.stats()}
        self.bus.publish(m.Heartbeat(node=self.NAME, pid=os.getpid(), seq=self._hb_seq,
                                     state=self.life, stats=stats))

    def _dispatch(self, header: m.Header, msg: m.Message) -> None:
        if isinstance(msg, m.Heartbeat):
            if msg.pid == os.getpid() and msg.node == self.NAME and not self.ready:
                self.ready = True
                if self.life == "starting":
                    self.life = "ready"
                    self._hb_due = 0.0  # tell everyone at once
            if "hb" not in self.TOPICS:
                return
        elif isinstance(msg, m.Ack):
            if msg.to == self.NAME:
                self.reliable.on_ack(header, msg)
            if "ack" not in self.TOPICS:
                return
        elif isinstance(msg, m.Control):
            if msg.target in ("*", self.NAME) and msg.action == "stop":
                log.info("%s: stop requested by %s", self.NAME, header.source)
                self.stop()
            if "control" not in self.TOPICS:
                return
        if msg.RELIABLE:
            self.ack(header)
            if not self.first_time(header):
                return
        try:
            self.handle(header, msg)
        except Exception:
            # One bad message must not take the node down: logged, counted, dropped.
            self.bus.stats["handler_errors"] += 1
            log.exception("%s: error handling %s from %s", self.NAME, header.type, header.source)

    def run(self) -> int:
        """Loop until stopped. Returns the exit code."""
        try:
            self.setup()
        except Exception:
            log.exception("%s: setup failed", self.NAME)
            self.bus.close()
            return 2
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._heartbeat(now)
                got = self.bus.recv(self.poll_timeout_ms(now))
                if got is not None:
                    batch = [got] + self.bus.drain()
                    if not self.replay:
                        batch = newest_only(batch, self.STREAM_TYPES)
                    for header, msg in batch:
                        self._dispatch(header, msg)
                        if self._stop.is_set():
                            break
                        # a long batch (replay hands over many audio blocks at once) is
                        # work, not a hang: keep beating between messages; a handler that
                        # hangs still stops the heartbeats
                        self._heartbeat(time.monotonic())
                self.reliable.tick()
                self.tick(time.monotonic())
        finally:
            self.life = "stopping"
            try:
                self.teardown()
            finally:
                self.bus.close()
        return 0


#: after SIGTERM/SIGINT a node that has not finished its teardown within this is ended: the
#: launcher escalates to SIGKILL itself after ~2 s, but when the launcher was killed
#: (parent-death SIGTERM) nobody else would, and a blocked teardown left an orphan
STOP_GRACE_S = 3.0


def install_signal_handlers(node: Node) -> None:
    """SIGTERM and SIGINT stop the loop cleanly (the launcher's Ctrl-C reaches us too);
    a teardown that takes longer than STOP_GRACE_S is cut short."""
    def handler(signum, _frame):
        if not node.stopping:
            t = threading.Timer(STOP_GRACE_S, os._exit, args=(128 + signum,))
            t.daemon = True
            t.start()
        node.stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this process if its parent (the launcher) dies, so no
    orphan outlives a killed launcher. Used as Popen's preexec_fn."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
