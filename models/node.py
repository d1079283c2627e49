"""Segmentation node: newest frame in (live) or every frame (replay), SegResult out
(labels, per-class confidence, tracked needle, timings)."""

from __future__ import annotations

import logging
import time

from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)


def segment_frame(segmenter, tracker, image, frame_id: int, media_time_s: float,
                  spacing_mm: float, frame_t_mono: float = 0.0) -> m.SegResult:
    """One frame's work (pure but for the tracker's state): labels, per-class confidence,
    the tracked needle and timings as a SegResult. A bad image raises ValueError."""
    from models.needle import NEEDLE

    t0 = time.monotonic()
    out = segmenter.segment(image)
    needle_conf = float(out.confidence[NEEDLE]) if NEEDLE < len(out.confidence) else None
    needle = tracker.update(out.labels, spacing_mm, media_time_s, needle_conf)
    timings = dict(out.timings_ms)
    timings["total"] = (time.monotonic() - t0) * 1000
    return m.SegResult(frame_id=frame_id, media_time_s=media_time_s, frame_t_mono=frame_t_mono,
                       labels=out.labels, classes=list(out.classes),
                       confidence=[float(c) for c in out.confidence],
                       present=[bool(p) for p in out.present], needle=needle,
                       timings_ms=timings, model=getattr(segmenter, "model_name", ""),
                       calibrated=list(out.calibrated))


class SegmentationNode(Node):
    NAME = "segmentation"
    TOPICS = ("frame",)
    STREAM_TYPES = ("frame",)

    def setup(self) -> None:
        from models.needle import NeedleTracker
        from models.segmenter import Segmenter

        seg = self.settings.segmentation
        self.segmenter = Segmenter(seg)
        self.tracker = NeedleTracker.from_settings(seg)
        self.done = 0
        self.errors = 0
        self.last_ms = 0.0

    def handle(self, header: m.Header, msg: m.Message) -> None:
        if not isinstance(msg, m.Frame):
            return
        try:
            res = segment_frame(self.segmenter, self.tracker, msg.image, msg.frame_id,
                                msg.media_time_s, msg.spacing_mm, header.t_mono)
        except ValueError as exc:
            # A bad frame is logged and skipped; the stream goes on.
            self.errors += 1
            log.error("frame %d from %s: %s", msg.frame_id, header.source, exc)
            return
        self.last_ms = res.timings_ms["total"]
        self.publish(res, parent_id=header.msg_id)
        self.done += 1

    def stats(self) -> dict:
        return {"segmented": self.done, "errors": self.errors, "last_ms": round(self.last_ms, 2)}
