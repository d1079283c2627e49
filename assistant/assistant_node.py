"""Assistant node: feeds every input to the pure ``assistant.logic.reduce`` and carries
out the actions (speak, log, publish state, record).

Live: the time base is ``time.monotonic()``; state is published after each
segmentation and whenever the logic asks.
Replay: the time base is media time, and the state for frame k is published once,
after the Frame and SegResult of frame k and after the recognizer has consumed the
audio up to the end of frame k. Commands are applied in the order of the audio
position at which they were recognised, so every run gives the same states.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from assistant import logic
from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)

TICK_S = 0.2


class AssistantNode(Node):
    NAME = "assistant"
    TOPICS = ("frame", "seg", "speech_cmd", "speech_unclear", "node_status", "speech_progress")
    STREAM_TYPES = ("frame", "seg")

    def setup(self) -> None:
        self.state = logic.initial_state(self.settings.assistant, self.settings.blocks)
        self.next_tick = 0.0
        self.records = None
        self.restored = False
        self._restart_prompt: str | None = None  # a question the crash left open
        self._saved_choices = logic.operator_choices(self.state)
        self._open_records()
        nodes = self.settings.launcher.nodes
        self.use_seg = "segmentation" in nodes
        self.use_speech = "speech" in nodes
        self.use_tts = "tts" in nodes
        # replay bookkeeping
        self.r_frames: dict[int, m.Frame] = {}
        self.r_segs: dict[int, m.SegResult] = {}
        self.r_cmds: deque = deque()  # (avail_s or None, header, SpeechCommand|SpeechUnclear)
        self.speech_upto = float("-inf")
        self.r_next = 0
        self.fps = self.settings.source.fps
        self.r_frame_dt: float | None = None
        self.published = 0
        self.cur_frame_id: int | None = None
        self.cur_media_t: float | None = None

    def _open_records(self) -> None:
        """The session record (SQLite, committed per write). A failure is logged and the
        assistant goes on without it: records must never take guidance down."""
        from assistant.records import SessionStore

        a = self.settings.assistant
        try:
            self.records = SessionStore(a.session_db or None)
            # Live, the time base is time.monotonic(); replay, media time from 0.
            start_s = 0.0 if self.replay else time.monotonic()
            source = "replay" if self.replay else self.settings.source.kind
            if self.run_id:
                self.session_id, resumed = self.records.resume_or_start(
                    self.run_id, a.operator, a.block, start_s, source=source)
                if resumed:
                    log.warning("session %d resumed after a restart", self.session_id)
                    self._restore_choices()
            else:
                self.session_id = self.records.start_session(a.operator, a.block, start_s,
                                                             source=source)
        except Exception as exc:
            log.error("session record unavailable: %s", exc)
            self.records = None

    def _restore_choices(self) -> None:
        """After a restart: carry on with what the operator had chosen by voice (overlay,
        layers, block, freeze, recording, mute, injection mark), saved in the record."""
        try:
            saved = self.records.load_choices(self.session_id)
        except ValueError as exc:
            log.error("choices not restored: %s", exc)
            return
        if saved is None:
            return
        self._restart_prompt = saved.get("pending_prompt")
        self.state, problems = logic.restore_choices(self.state, saved)
        for p in problems:
            log.error("saved choice not restored: %s", p)
        self._saved_choices = logic.operator_choices(self.state)
        if self._restart_prompt is not None:
            # the question is cancelled: the record must not hold it open any more
            self._saved_choices = {}  # forces the save
            self._save_choices()
        log.warning("operator choices restored after a restart: %s", self._saved_choices)
        self.restored = True

    def _save_choices(self) -> None:
        if self.records is None:
            return
        now = logic.operator_choices(self.state)
        if now == self._saved_choices:
            return
        try:
            self.records.save_choices(self.session_id, self.state.now_s, now)
            self._saved_choices = now
        except Exception as exc:
            log.error("choices not saved: %s", exc)

    # ------------------------------------------------------------------ inputs
    def handle(self, header: m.Header, msg: m.Message) -> None:
        if self.replay:
            self._handle_replay(header, msg)
            return
        now = time.monotonic()
        if isinstance(msg, m.Frame):
            self.cur_frame_id = msg.frame_id
            self._reduce(msg, header, now)
        elif isinstance(msg, m.SegResult):
            self._reduce(msg, header, now)
            self._publish_state(msg.frame_id)
        elif isinstance(msg, (m.SpeechCommand, m.SpeechUnclear, m.NodeStatus)):
            self._reduce(msg, header, now)

    def tick(self, now: float) -> None:
        if self.restored:
            self.restored = False
            saved = dict(self._saved_choices, pending_prompt=self._restart_prompt)
            self.state, actions = logic.restart_actions(self.state, saved)
            for a in actions:
                self._do(a)
        if self.replay:
            self._advance_replay()
            return
        if now >= self.next_tick:
            self.next_tick = now + TICK_S
            self._reduce(logic.Tick(now), None, now)

    # ------------------------------------------------------------------ replay
    def _handle_replay(self, header: m.Header, msg: m.Message) -> None:
        if isinstance(msg, m.Frame):
            self.r_frames[msg.frame_id] = msg
            if msg.frame_id == 1:
                self.r_frame_dt = msg.media_time_s
        elif isinstance(msg, m.SegResult):
            self.r_segs[msg.frame_id] = msg
        elif isinstance(msg, (m.SpeechCommand, m.SpeechUnclear)):
            self.r_cmds.append([None, header, msg])
        elif isinstance(msg, m.SpeechProgress):
            # Commands published before this progress mark were recognised by then.
            for item in self.r_cmds:
                if item[0] is None:
                    item[0] = msg.upto_s
            self.speech_upto = max(self.speech_upto, msg.upto_s)
        elif isinstance(msg, m.NodeStatus):
            # A producer that died mid-replay is not waited for again (what it would have
            # sent for the frames in between is lost); said in the log and the video.
            if msg.state in ("offline", "failed"):
                if msg.node == "speech" and self.use_speech:
                    log.warning("speech offline: the replay goes on without voice commands")
                    self.use_speech = False
                elif msg.node == "segmentation" and self.use_seg:
                    log.warning("segmentation offline: the replay goes on without it")
                    self.use_seg = False
            # Node events are not part of the recording: applied at the next frame.
            self.r_cmds.append([float("-inf"), header, msg])
        self._advance_replay()

    def _advance_replay(self) -> None:
        while self.r_next in self.r_frames:
            k = self.r_next
            frame = self.r_frames[k]
            if self.use_seg and k not in self.r_segs:
                return
            dt = 1.0 / self.fps if not self.r_frame_dt else self.r_frame_dt
            t_end = frame.media_time_s + dt
            if self.use_speech and self.speech_upto < t_end - 1e-6:
                return
            t = frame.media_time_s
            while self.r_cmds and self.r_cmds[0][0] is not None and self.r_cmds[0][0] <= t_end + 1e-6:
                avail, header, msg = self.r_cmds.popleft()
                self._reduce(msg, header, max(t, avail) if avail != float("-inf") else t)
            self._reduce(self.r_frames.pop(k), None, t)
            seg = self.r_segs.pop(k, None)
            if seg is not None:
                self._reduce(seg, None, t)
            self._reduce(logic.Tick(t), None, t)
            self.cur_frame_id, self.cur_media_t = k, t
            self._publish_state(k)
            self.r_next += 1

    # ------------------------------------------------------------------ actions
    def _reduce(self, msg, header, now_s: float) -> None:
        try:
            self.state, actions = logic.reduce(self.state, msg, header, now_s)
        except (ValueError, TypeError) as exc:
            log.error("assistant logic rejected %s: %s", type(msg).__name__, exc)
            return
        if isinstance(msg, m.Frame):
            self.cur_frame_id = msg.frame_id
            self.cur_media_t = msg.media_time_s
        for a in actions:
            self._do(a)
        self._save_choices()

    def _do(self, a) -> None:
        media_t = self.cur_media_t if self.replay else None
        if isinstance(a, logic.Speak):
            if self.use_tts:
                self.send_reliable(m.Say(text=a.text, priority=a.priority))
            self.publish(m.Event(kind="speech", text=a.text, media_time_s=media_t,
                                 frame_id=self.cur_frame_id, data={"priority": a.priority}))
        elif isinstance(a, logic.LogEvent):
            # Process states ("node") are published by the launcher, which sees them even
            # when this node is the one that died; re-publishing them wrote each twice to
            # events.jsonl. They still go to the session record.
            if a.kind != "node":
                self.publish(m.Event(kind=a.kind, text=a.text, media_time_s=media_t,
                                     frame_id=self.cur_frame_id, data=dict(a.data)))
            self._record("event", a)
        elif isinstance(a, logic.PublishState):
            if not self.replay and self.cur_frame_id is not None:
                self._publish_state(self.cur_frame_id)
        elif isinstance(a, logic.SetRecording):
            self.publish(m.Event(kind="recording", text="recording on" if a.on else "recording off",
                                 media_time_s=media_t, frame_id=self.cur_frame_id))
        elif isinstance(a, logic.RecordSample):
            self._record("sample", a)

    def _record(self, what: str, a) -> None:
        if self.records is None:
            return
        try:
            self.records.record_action(self.session_id, a, self.state.now_s)
        except Exception as exc:
            log.error("session record write failed: %s", exc)

    def _publish_state(self, frame_id: int) -> None:
        self.publish(logic.to_state_message(self.state, frame_id))
        self.published += 1

    def stats(self) -> dict:
        return {"states": self.published}

    def teardown(self) -> None:
        if self.records is not None:
            try:
                self.records.end_session(self.session_id, self.state.now_s)
                self.records.close()
            except Exception as exc:
                log.error("closing the session record failed: %s", exc)
