"""Segmentation node: newest frame in (live) or every frame (replay), SegResult out
(labels, per-class confidence, tracked needle, timings)."""

from __future__ import annotations

import logging
import time

from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)


class SegmentationNode(Node):
    NAME = "segmentation"
    TOPICS = ("frame",)
    STREAM_TYPES = ("frame",)

    def setup(self) -> None:
        from models.needle import NEEDLE, NeedleTracker
        from models.segmenter import Segmenter

        seg = self.settings.segmentation
        self.segmenter = Segmenter(seg)
        self.tracker = NeedleTracker(
            min_length_mm=seg.needle_min_length_mm, min_elongation=seg.needle_min_elongation,
            min_confidence=seg.needle_min_confidence, confirm_frames=seg.needle_confirm_frames)
        self.needle_index = NEEDLE
        self.done = 0
        self.errors = 0
        self.last_ms = 0.0

    def handle(self, header: m.Header, msg: m.Message) -> None:
        if not isinstance(msg, m.Frame):
            return
        t0 = time.monotonic()
        try:
            out = self.segmenter.segment(msg.image)
        except ValueError as exc:
            # A bad frame is logged and skipped; the stream goes on.
            self.errors += 1
            log.error("frame %d from %s: %s", msg.frame_id, header.source, exc)
            return
        needle_conf = (float(out.confidence[self.needle_index])
                       if self.needle_index < len(out.confidence) else None)
        needle = self.tracker.update(out.labels, msg.spacing_mm, msg.media_time_s, needle_conf)
        timings = dict(out.timings_ms)
        timings["total"] = (time.monotonic() - t0) * 1000
        self.last_ms = timings["total"]
        self.publish(m.SegResult(frame_id=msg.frame_id, media_time_s=msg.media_time_s,
                                 frame_t_mono=header.t_mono, labels=out.labels,
                                 classes=list(out.classes), confidence=[float(c) for c in out.confidence],
                                 present=[bool(p) for p in out.present], needle=needle,
                                 timings_ms=timings, model=getattr(self.segmenter, "model_name", ""),
                                 calibrated=list(out.calibrated)),
                     parent_id=header.msg_id)
        self.done += 1

    def stats(self) -> dict:
        return {"segmented": self.done, "errors": self.errors, "last_ms": round(self.last_ms, 2)}
