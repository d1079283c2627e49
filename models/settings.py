"""Settings of the segmentation process (config.yaml section ``segmentation``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SegmentationSettings:
    model_path: str = ""  # empty: the model shipped in models/
    provider: Literal["cpu", "cuda"] = "cpu"
    threads: int = 1
    # an int8 model's weights as quantized (s8), shifted to u8 (exact) or in 7 bits (s7, its
    # own measured figures): auto = u8 on an x86 CPU without VNNI, where onnxruntime's
    # u8 x s8 sums saturate (models.segmenter.int8_weights_for)
    int8_weights: Literal["auto", "s8", "u8", "s7"] = "auto"
    min_confidence: float = 0.5  # below this a class is drawn as "unsure"
    # a needle is reported (drawn, tracked, able to raise alerts) only after this many
    # consecutive frames whose needle looks like a shaft (models/needle.py NeedleTracker)
    needle_confirm_frames: int = 3
    needle_min_length_mm: float = 3.0  # its largest blob at least this long
    needle_min_elongation: float = 3.0  # and this many times longer than wide
    needle_min_confidence: float = 0.85  # and the needle class at least this confident
    # how the tracked tip is smoothed: alpha_beta (fixed gains, a constant-velocity
    # prediction), or one_euro (opt-in: a steadier tip, alerts up to a frame later), a
    # low-pass at needle_cutoff_hz for a still tip rising by needle_cutoff_per_mm_s Hz per mm/s
    needle_filter: Literal["alpha_beta", "one_euro"] = "alpha_beta"
    needle_cutoff_hz: float = 1.0
    needle_cutoff_per_mm_s: float = 0.4

    def __post_init__(self) -> None:
        n = self.needle_confirm_frames
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 30:
            raise ValueError("segmentation.needle_confirm_frames must be an integer from 1 to "
                             f"30, got {n!r}")
        for name, lo, hi in (("needle_min_length_mm", 0.0, 50.0),
                             ("needle_min_elongation", 1.0, 100.0),
                             ("needle_min_confidence", 0.0, 1.0), ("min_confidence", 0.0, 1.0),
                             ("needle_cutoff_hz", 0.01, 100.0), ("needle_cutoff_per_mm_s", 0.0, 100.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"segmentation.{name} must be a number from {lo:g} to {hi:g}, "
                                 f"got {v!r}")
