"""Settings of the assistant's logic (config.yaml section ``assistant``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssistantSettings:
    block: str = "pecs2"
    operator: str = "anonymous"
    session_db: str = ""  # empty: the user's data folder
    quality_low_threshold: float = 50.0
    quality_low_alert_s: float = 10.0
    pleura_alert_mm: float = 5.0
    artery_alert_mm: float = 3.0
    needle_lost_alert_s: float = 2.0
