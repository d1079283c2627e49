"""The bus in threads over real ipc:// sockets: fan-out, newest-only, malformed
messages, reliable commands with retries."""
import threading

import numpy as np
import pytest
import zmq

from assistant import messages as m
from assistant.bus import BusClient, Endpoints, Proxy, ReliableSender, newest_only
from assistant.config import Settings
from assistant.node import Node
from conftest import wait_for


@pytest.fixture
def bus(tmp_path):
    ctx = zmq.Context()
    ep = Endpoints(pub=f"ipc://{tmp_path}/pub", sub=f"ipc://{tmp_path}/sub")
    proxy = Proxy(ep, ctx).start()
    yield ep, ctx
    proxy.stop()
    ctx.term()


def subscribed(client: BusClient, probe: BusClient, topic_msg) -> None:
    """Wait until ``client`` receives what ``probe`` publishes (no sleeping)."""
    def got():
        probe.publish(topic_msg)
        return client.recv(20) is not None
    wait_for(got, 5, what="subscription to be live")
    client.drain()


def test_frame_fan_out_and_malformed_dropped(bus):
    ep, ctx = bus
    a = BusClient(ep, "a", ("frame", "say"), ctx=ctx)
    b = BusClient(ep, "b", (), ctx=ctx)
    subscribed(a, b, m.Say(text="ping"))
    img = np.random.default_rng(1).integers(0, 255, (542, 562), np.uint8)
    b.publish(m.Frame(frame_id=7, media_time_s=0.35, image=img, spacing_mm=0.07, depth_mm=40))
    # A malformed message on the same topic: counted, logged, dropped; the next one arrives.
    b.pub.send_multipart([b"frame", b"{broken", b"{}"])
    b.publish(m.Say(text="after"))
    got = []
    wait_for(lambda: got.extend(a.drain()) or len(got) >= 2, 5, what="two good messages")
    assert isinstance(got[0][1], m.Frame) and np.array_equal(got[0][1].image, img)
    assert got[1][1].text == "after"
    assert a.stats["decode_errors"] == 1
    a.close(); b.close()


def test_newest_only_keeps_commands_and_latest_frame():
    def h(t):
        return m.Header(type=t, source="x")
    batch = [(h("frame"), 1), (h("speech_cmd"), "c1"), (h("frame"), 2), (h("seg"), "s1"),
             (h("frame"), 3), (h("speech_cmd"), "c2")]
    out = newest_only(batch, ("frame", "seg"))
    assert [x[1] for x in out] == ["c1", "s1", 3, "c2"]


class Echo(Node):
    """A node in a thread that acknowledges 'say' (reliable) but drops the first copy
    of each, to force a retry."""
    NAME = "echo"
    TOPICS = ("say",)

    def setup(self):
        self.handled = []
        self.seen_first = set()

    def _dispatch(self, header, msg):
        if isinstance(msg, m.Say) and header.msg_id not in self.seen_first:
            self.seen_first.add(header.msg_id)  # simulate a lost message: no ack
            return
        super()._dispatch(header, msg)

    def handle(self, header, msg):
        self.handled.append(msg.text)


def test_reliable_command_is_retried_acked_and_deduplicated(bus):
    ep, ctx = bus
    settings = Settings()
    node = Echo(settings, ep, ctx=ctx)
    t = threading.Thread(target=node.run, daemon=True)
    t.start()
    wait_for(lambda: node.ready, 10, what="node ready")
    sender = BusClient(ep, "sender", ("ack",), ctx=ctx)
    rel = ReliableSender(sender, timeout_ms=50, retries=5)
    probe = BusClient(ep, "probe", (), ctx=ctx)
    subscribed(sender, probe, m.Ack(to="sender"))

    msg_id = rel.send(m.Say(text="quality seventy"))

    def acked():
        for h, msg in sender.drain():
            if isinstance(msg, m.Ack):
                rel.on_ack(h, msg)
        rel.tick()
        return not rel.pending
    wait_for(acked, 5, what="acknowledgement")
    # a duplicate of the same message id is acknowledged again but handled once
    sender.publish(m.Say(text="quality seventy"), msg_id=msg_id)
    wait_for(lambda: any(isinstance(x[1], m.Ack) for x in sender.drain()), 5, what="second ack")
    assert node.handled == ["quality seventy"]
    node.stop(); t.join(5)
    sender.close(); probe.close()


def test_reliable_sender_gives_up_after_retries(bus):
    ep, ctx = bus
    sender = BusClient(ep, "lonely", ("ack",), ctx=ctx)
    rel = ReliableSender(sender, timeout_ms=10, retries=2)
    rel.send(m.Say(text="nobody listens"))
    failed = []
    wait_for(lambda: failed.extend(rel.tick()) or failed, 5, what="give-up")
    assert failed[0].text == "nobody listens" and not rel.pending
    sender.close()


class SlowViewer(Node):
    """Takes 50 ms per frame (slower than the 100 fps source): must skip, not queue."""
    NAME = "slow"
    TOPICS = ("frame",)
    STREAM_TYPES = ("frame",)

    def setup(self):
        self.ages_ms = []
        self.ids = []

    def handle(self, header, msg):
        import time
        self.ages_ms.append((time.monotonic() - header.t_mono) * 1000)
        self.ids.append(msg.frame_id)
        time.sleep(0.05)  # the work of a slow consumer (not a wait for a condition)


def test_live_consumer_gets_newest_frame_and_no_queue_grows(bus):
    import time
    ep, ctx = bus
    node = SlowViewer(Settings(), ep, ctx=ctx)
    t = threading.Thread(target=node.run, daemon=True)
    t.start()
    wait_for(lambda: node.ready, 10, what="node ready")
    pub = BusClient(ep, "src", (), ctx=ctx)
    img = np.zeros((542, 562), np.uint8)
    for i in range(300):  # 3 s at 100 fps
        pub.publish(m.Frame(frame_id=i, media_time_s=i / 100, image=img, spacing_mm=0.1, depth_mm=54))
        time.sleep(0.01)  # the source's frame period
    wait_for(lambda: node.ids and node.ids[-1] >= 290, 5, what="the last frames")
    node.stop(); t.join(5)
    pub.close()
    assert len(node.ids) < 150, "the slow consumer processed every frame: it queued"
    assert node.ids == sorted(node.ids)
    late = node.ages_ms[len(node.ages_ms) // 2:]
    # a frame waits at most about one handling time (50 ms) plus a poll, never a growing queue
    assert max(late) < 200, f"frame age grew to {max(late):.0f} ms"


class SlowReplay(Node):
    """A replay node whose every message takes 150 ms of work (a Whisper check, say)."""
    NAME = "slowreplay"
    TOPICS = ("say",)

    def setup(self):
        self.handled = 0

    def handle(self, header, msg):
        import time
        time.sleep(0.15)  # the work of a busy handler (not a wait for a condition)
        self.handled += 1


def test_a_long_batch_of_work_keeps_the_heartbeats_coming(bus):
    """Replay hands a node many messages at once. 24 x 150 ms of work is 3.6 s, longer
    than the 1.5 s of silence after which the launcher kills a node as hung: the node must
    keep beating between the messages of a batch."""
    ep, ctx = bus
    settings = Settings()
    node = SlowReplay(settings, ep, replay=True, ctx=ctx)
    t = threading.Thread(target=node.run, daemon=True)
    t.start()
    watcher = BusClient(ep, "watcher", ("hb",), ctx=ctx)
    sender = BusClient(ep, "sender", (), ctx=ctx)
    try:
        wait_for(lambda: node.ready, 10, what="node ready")
        beats = []

        def collect():
            for h, msg in watcher.drain():
                if isinstance(msg, m.Heartbeat) and msg.node == "slowreplay":
                    beats.append(h.t_mono)
        wait_for(lambda: collect() or len(beats) >= 2, 5, what="heartbeats")
        import time
        beats.clear()
        t0 = time.monotonic()
        for i in range(24):
            sender.publish(m.Say(text=f"block {i}"))
        wait_for(lambda: collect() or node.handled == 24, 10, what="the batch handled")
        t1 = time.monotonic()
        collect()
        limit_s = settings.bus.heartbeat_ms * settings.bus.offline_after_missed / 1000
        gaps = np.diff([t0] + [b for b in beats if b < t1] + [t1])  # the silences while busy
        assert gaps.max() < limit_s, f"silences between heartbeats {gaps.round(2)} s"
    finally:
        node.stop()
        t.join(5)
        watcher.close()
        sender.close()


def test_wake_ends_a_recv_wait_from_another_thread(bus):
    """Live audio arrives on the microphone's thread: BusClient.wake() makes the node
    loop's recv() return at once instead of at its timeout, and a message still comes
    through afterwards."""
    ep, ctx = bus
    a = BusClient(ep, "a", ("say",), ctx=ctx)
    b = BusClient(ep, "b", (), ctx=ctx)
    subscribed(a, b, m.Say(text="ping"))
    done = threading.Event()
    result = []

    def wait_long():
        result.append(a.recv(60_000))  # a minute, unless woken
        done.set()

    t = threading.Thread(target=wait_long, daemon=True)
    t.start()
    for _ in range(3):  # wakes that pile up count as one
        a.wake()
    assert done.wait(5), "recv() was not woken"
    assert result == [None]
    b.publish(m.Say(text="after"))
    got = wait_for(lambda: a.recv(50), 5, what="a message after the wake")
    assert got[1].text == "after"
    assert a.recv(0) is None  # no stale wake left behind
    a.close(); b.close()
