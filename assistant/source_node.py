"""Live frame source node: publishes frames at the source's rate (newest-only for
consumers). Replay does not use this node: the replay driver sends every frame."""

from __future__ import annotations

import logging
import time

from assistant import messages as m
from assistant.node import Node
from assistant.sources import SourceError, open_source

log = logging.getLogger(__name__)


class SourceNode(Node):
    NAME = "source"
    TOPICS = ()

    def setup(self) -> None:
        self.frames = open_source(self.settings.source)
        self.period_s = 1.0 / self.settings.source.fps
        self.next_due = time.monotonic()
        self.frame_id = 0
        self.failed = False

    def tick(self, now: float) -> None:
        if self.failed or now < self.next_due:
            return
        self.next_due = max(self.next_due + self.period_s, now)
        try:
            sf = next(self.frames)
        except StopIteration:
            log.info("source ended after %d frames", self.frame_id)
            self.failed = True
            return
        except SourceError as exc:
            log.error("%s", exc)
            self.publish(m.Event(kind="alert", text=f"video source failed: {exc}"))
            self.failed = True
            return
        self.publish(m.Frame(frame_id=self.frame_id, media_time_s=sf.media_time_s,
                             image=sf.image, spacing_mm=sf.spacing_mm, depth_mm=sf.depth_mm,
                             source_name=self.settings.source.kind))
        self.frame_id += 1

    def poll_timeout_ms(self, now: float) -> int:
        return max(0, min(self.POLL_MS, int((self.next_due - now) * 1000)))

    def stats(self) -> dict:
        return {"frames": self.frame_id}
