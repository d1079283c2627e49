"""Settings of the assistant's logic (config.yaml section ``assistant``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssistantSettings:
    block: str = "pecs2"
    operator: str = "anonymous"
    session_db: str = ""  # empty: the user's data folder (assistant.records.default_db_path)
    quality_low_threshold: float = 50.0  # below this for quality_low_alert_s: spoken alert
    quality_low_alert_s: float = 10.0
    quality_adequate_threshold: float = 60.0  # "adequate view" in the teaching figures
    pleura_alert_mm: float = 5.0  # tip this close to the pleura: spoken alert
    artery_alert_mm: float = 3.0  # tip this close to a vessel: spoken alert
    danger_rearm_factor: float = 1.5  # the alert re-arms once the tip is this x farther
    # ...and is spoken again no sooner than this (a flickering vessel mask must not
    # make it chatter; it stays on screen meanwhile)
    danger_repeat_s: float = 4.0
    # a danger class shown with less confidence than this is spoken as "possible artery":
    # the alert still fires (a doubtful vessel near the tip is still a reason to stop)
    danger_unsure_below: float = 0.5
    # injectate is not an artery (assistant.fluid): a vessel blob born within
    # fluid_birth_mm of a tip that stayed still (moved <= fluid_still_mm over
    # fluid_still_s) on pixels with no vessel in the last fluid_memory_s is shown as
    # "injectate or vessel at the tip?", not "stop, artery"; and while the tip is still a
    # vessel remembered from fluid_memory_s stays a danger where the mask lost it ("not
    # seen now"); false: every blob is a vessel, and only what is seen counts
    fluid_rule: bool = True
    fluid_memory_s: float = 5.0
    fluid_still_s: float = 0.5
    fluid_still_mm: float = 1.0
    # a blob born this near a still tip is new fluid (injectate spreads along the plane)
    fluid_birth_mm: float = 6.0
    # a vessel does not vanish under the needle: while the tip moves, a vessel seen within
    # artery_alert_mm of it in the last fluid_hidden_s stays a danger ("not seen now");
    # 0: while the tip moves only what is seen counts
    fluid_hidden_s: float = 1.5
    fluid_hidden_frames: int = 3  # ...if seen on at least this many segmentations of it
    # a vessel blob first seen within fluid_birth_mm of the tip, touching nothing seen
    # before, waits fluid_pending_frames segmentations before it is a danger (drawn
    # meanwhile as the model drew it; rules P and P2): a speck at the tip for no longer says
    # nothing; a vessel never seen before alerts that many segmentations later; false: it
    # is a vessel at once
    fluid_pending: bool = True
    fluid_pending_frames: int = 2
    # the vessel memory moves with the tissue when the probe slides (each frame registered
    # to the last); false: it stays where it was seen in the image
    fluid_follow_probe: bool = True
    needle_lost_alert_s: float = 2.0  # needle unseen this long while advancing: alert
    needle_advance_min_mm: float = 1.0  # deeper by this within the window = advancing
    needle_track_window_s: float = 2.0
    confirm_timeout_s: float = 8.0  # an unanswered "say yes or no" is cancelled after this
    # a toggle heard in the state it would leave unchanged ("freeze" while frozen) offers
    # its opposite ("already frozen. unfreeze? say yes or no"): the recognizer can swap
    # them (logic.opposite_offer); false: only "already frozen"
    offer_opposite: bool = True
    alert_show_s: float = 5.0  # how long an alert stays in AssistantState.alerts
    frame_buffer: int = 8  # recent Frames kept to pair a SegResult with its image
    quality_history_len: int = 600  # samples kept in State (the records keep them all)

    def __post_init__(self) -> None:
        for name in ("quality_low_alert_s", "pleura_alert_mm", "artery_alert_mm",
                     "needle_lost_alert_s", "confirm_timeout_s", "alert_show_s",
                     "needle_track_window_s", "fluid_memory_s", "fluid_still_s",
                     "fluid_still_mm", "fluid_birth_mm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"assistant.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("quality_low_threshold", "quality_adequate_threshold"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"assistant.{name} must be within 0..100, "
                                 f"got {getattr(self, name)!r}")
        if not 0 <= self.danger_unsure_below <= 1:
            raise ValueError(f"assistant.danger_unsure_below must be within 0..1, "
                             f"got {self.danger_unsure_below!r}")
        if not (isinstance(self.fluid_pending_frames, int)
                and not isinstance(self.fluid_pending_frames, bool)
                and 1 <= self.fluid_pending_frames <= 10):
            raise ValueError(f"assistant.fluid_pending_frames must be an integer from 1 to 10, "
                             f"got {self.fluid_pending_frames!r}")
        if not (isinstance(self.fluid_hidden_frames, int) and self.fluid_hidden_frames >= 1):
            raise ValueError(f"assistant.fluid_hidden_frames must be an integer >= 1, "
                             f"got {self.fluid_hidden_frames!r}")
        if not self.fluid_hidden_s >= 0:
            raise ValueError(f"assistant.fluid_hidden_s must be >= 0, "
                             f"got {self.fluid_hidden_s!r}")
        if not self.danger_repeat_s >= 0:
            raise ValueError(f"assistant.danger_repeat_s must be >= 0, "
                             f"got {self.danger_repeat_s!r}")
        if self.danger_rearm_factor < 1:
            raise ValueError(f"assistant.danger_rearm_factor must be >= 1, "
                             f"got {self.danger_rearm_factor!r}")
        if self.frame_buffer < 2 or self.quality_history_len < 1:
            raise ValueError("assistant.frame_buffer must be >= 2 and "
                             "assistant.quality_history_len >= 1")
