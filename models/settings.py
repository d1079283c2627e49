"""Settings of the segmentation process (config.yaml section ``segmentation``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SegmentationSettings:
    model_path: str = ""  # empty: the model shipped in models/
    provider: Literal["cpu", "cuda"] = "cpu"
    threads: int = 1
    min_confidence: float = 0.5  # below this a class is drawn as "unsure"
