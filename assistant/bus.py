"""ZeroMQ transport: endpoints, the XPUB/XSUB proxy, and a small client.

Every process connects one PUB socket to the proxy's ``pub`` side and one SUB socket to
its ``sub`` side. Topics are message type names. ``linger = 0`` on every socket so
nothing blocks shutdown.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass

import zmq

from assistant import messages as m

log = logging.getLogger(__name__)

# Enough for a few frames in flight to each subscriber; live consumers drain their
# socket and keep the newest frame, replay keeps at most max_in_flight frames in flight.
STREAM_HWM = 64


@dataclass(frozen=True)
class Endpoints:
    pub: str  # nodes' PUB sockets connect here (the proxy's XSUB binds it)
    sub: str  # nodes' SUB sockets connect here (the proxy's XPUB binds it)


def resolve_endpoints(bus_settings, run_dir: str | None = None) -> Endpoints:
    """'auto' becomes an ipc:// socket in ``run_dir`` (a fresh private folder if None)."""
    pub, sub = bus_settings.pub_endpoint, bus_settings.sub_endpoint
    if "auto" in (pub, sub):
        run_dir = run_dir or tempfile.mkdtemp(prefix="usra-")
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
    if pub == "auto":
        pub = f"ipc://{run_dir}/bus-pub"
    if sub == "auto":
        sub = f"ipc://{run_dir}/bus-sub"
    return Endpoints(pub=pub, sub=sub)


class Proxy:
    """The XSUB/XPUB forwarder, in a thread of the launcher (or of a test)."""

    def __init__(self, endpoints: Endpoints, ctx: zmq.Context | None = None):
        self.endpoints = endpoints
        self.ctx = ctx or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._ctrl_addr = f"inproc://proxy-ctrl-{id(self)}"
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> "Proxy":
        self._thread = threading.Thread(target=self._run, name="bus-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0):
            raise RuntimeError("bus proxy did not start in 5 s")
        if self._error:
            raise RuntimeError(f"bus proxy could not bind: {self._error}") from self._error
        return self

    def _run(self) -> None:
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        ctrl = self.ctx.socket(zmq.PAIR)
        for s in (xsub, xpub, ctrl):
            s.linger = 0
        xpub.sndhwm = STREAM_HWM
        xsub.rcvhwm = STREAM_HWM
        try:
            xsub.bind(self.endpoints.pub)
            xpub.bind(self.endpoints.sub)
            ctrl.bind(self._ctrl_addr)
        except zmq.ZMQError as exc:
            self._error = exc
            self._ready.set()
            for s in (xsub, xpub, ctrl):
                s.close()
            return
        self._ready.set()
        try:
            zmq.proxy_steerable(xsub, xpub, None, ctrl)
        except zmq.ContextTerminated:
            pass
        finally:
            for s in (xsub, xpub, ctrl):
                s.close(linger=0)

    def stop(self) -> None:
        if not self._thread:
            return
        cmd = self.ctx.socket(zmq.PAIR)
        cmd.linger = 0
        cmd.connect(self._ctrl_addr)
        cmd.send(b"TERMINATE")
        self._thread.join(2.0)
        cmd.close()
        self._thread = None


class BusClient:
    """One PUB and one SUB socket on the bus, with decoding and error counting."""

    def __init__(self, endpoints: Endpoints, source: str, topics: tuple[str, ...],
                 ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.source = source
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        for s in (self.pub, self.sub):
            s.linger = 0
        self.pub.sndhwm = STREAM_HWM
        self.sub.rcvhwm = STREAM_HWM
        for t in topics:
            self.sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.pub.connect(endpoints.pub)
        self.sub.connect(endpoints.sub)
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        # wake(): a pipe in the same poll, so that work arriving outside the bus (live
        # audio, on the microphone's thread) ends a recv() wait at once
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller.register(self._wake_r, zmq.POLLIN)
        self.stats: Counter = Counter()
        self._lock = threading.Lock()  # PUB sockets are not thread-safe

    def publish(self, msg: m.Message, parent_id: str | None = None, msg_id: str | None = None) -> m.Header:
        frames, header = m.encode(msg, self.source, parent_id=parent_id, msg_id=msg_id)
        with self._lock:
            self.pub.send_multipart(frames, copy=False)
        self.stats["sent"] += 1
        return header

    def recv(self, timeout_ms: int) -> tuple[m.Header, m.Message] | None:
        """The next decodable message within timeout_ms, or None. Undecodable
        messages are counted, logged and dropped."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            events = dict(self.poller.poll(remaining))
            if not events:
                return None
            if self._wake_r in events:  # wake(): back to the caller's loop now
                self._drain_wake()
                return self.recv_nowait()
            got = self.recv_nowait()
            if got is not None:
                return got
            if time.monotonic() >= deadline:
                return None

    def wake(self) -> None:
        """Make a recv() waiting in another thread return now (safe from any thread): a
        node whose input arrives outside the bus (live audio) is not left waiting for
        the recv timeout. Wakes that pile up before the recv count as one."""
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:  # the pipe is full: a wake is pending anyway
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def recv_nowait(self) -> tuple[m.Header, m.Message] | None:
        try:
            frames = self.sub.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        self.stats["received"] += 1
        try:
            return m.decode([f.buffer for f in frames])
        except m.DecodeError as exc:
            self.stats["decode_errors"] += 1
            log.warning("%s: dropped a malformed message (%d so far): %s",
                        self.source, self.stats["decode_errors"], exc)
            return None

    def drain(self, max_messages: int = 10_000) -> list[tuple[m.Header, m.Message]]:
        """Everything waiting now, in order (bounded, so a flood cannot starve the loop)."""
        out = []
        for _ in range(max_messages):
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.stats["received"] += 1
            try:
                out.append(m.decode([f.buffer for f in frames]))
            except m.DecodeError as exc:
                self.stats["decode_errors"] += 1
                log.warning("%s: dropped a malformed message (%d so far): %s",
                            self.source, self.stats["decode_errors"], exc)
        return out

    def close(self) -> None:
        self.pub.close(linger=0)
        self.sub.close(linger=0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def newest_only(batch: list[tuple[m.Header, m.Message]], stream_types: tuple[str, ...]):
    """Keep every non-stream message in order, and of each stream type only the newest.

    This is the live video policy: no queue grows, a slow consumer skips frames."""
    last_index: dict[str, int] = {}
    for i, (h, _) in enumerate(batch):
        if h.type in stream_types:
            last_index[h.type] = i
    return [(h, msg) for i, (h, msg) in enumerate(batch)
            if h.type not in stream_types or last_index[h.type] == i]


class ReliableSender:
    """Retries reliable messages until an Ack arrives or the retries run out (Lazy Pirate
    over the bus). The owner calls ``on_ack`` and ``tick``."""

    def __init__(self, client: BusClient, timeout_ms: int, retries: int):
        self.client = client
        self.timeout_s = timeout_ms / 1000
        self.retries = retries
        self.pending: dict[str, dict] = {}
        self.failed: list[tuple[m.Message, str]] = []

    def send(self, msg: m.Message, parent_id: str | None = None) -> str:
        header = self.client.publish(msg, parent_id=parent_id)
        self.pending[header.msg_id] = {"msg": msg, "parent": parent_id, "tries": 1,
                                       "due": time.monotonic() + self.timeout_s}
        return header.msg_id

    def on_ack(self, header: m.Header, ack: m.Ack) -> bool:
        return self.pending.pop(header.parent_id or "", None) is not None

    def tick(self, now: float | None = None) -> list[m.Message]:
        """Resend what is due; returns messages that failed for good this tick."""
        now = time.monotonic() if now is None else now
        failed = []
        for msg_id, p in list(self.pending.items()):
            if now < p["due"]:
                continue
            if p["tries"] > self.retries:
                del self.pending[msg_id]
                failed.append(p["msg"])
                log.warning("%s: no acknowledgement for %s after %d tries",
                            self.client.source, p["msg"].TYPE, p["tries"])
                continue
            self.client.publish(p["msg"], parent_id=p["parent"], msg_id=msg_id)
            p["tries"] += 1
            p["due"] = now + self.timeout_s * (2 ** (p["tries"] - 1))
        return failed
