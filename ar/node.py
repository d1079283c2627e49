"""Renderer node: draws the monitor view from Frame + SegResult + AssistantState.

Live: newest frame only; the newest segmentation and state are drawn only if fresh
(``ar.overlay`` decides). Replay: frame k is drawn with the SegResult and
AssistantState of frame k (waiting for them, bounded), and the picture goes back to
the replay driver in the ``Rendered`` credit, so the annotated video is deterministic.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2

from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)

# In replay, how long to wait for a producer's message for a frame before drawing
# without it (and saying so): a producer that died must not stall the replay forever.
REPLAY_WAIT_S = 10.0
# Live: a state change with no new frame is drawn after this long at most.
IDLE_REDRAW_S = 0.1


def recordings_dir() -> Path:
    """Beside the session records in the user's data folder (resolved when called)."""
    from assistant.records import default_db_path
    return default_db_path().parent / "recordings"


class RendererNode(Node):
    NAME = "renderer"
    TOPICS = ("frame", "seg", "state", "node_status", "control")
    STREAM_TYPES = ("frame", "seg", "state")

    def setup(self) -> None:
        from ar import overlay  # imported here: nothing heavy at import time

        self.overlay = overlay
        self.rs = self.settings.render
        self.frame: m.Frame | None = None
        self.frame_header: m.Header | None = None
        self.seg: m.SegResult | None = None
        self.state_msg: m.AssistantState | None = None
        self.nodes_status: dict[str, str] = {}
        self.dirty = False
        self.state_dirty = False
        self.last_render = 0.0
        self.frozen_frame: m.Frame | None = None
        self.rendered = 0
        self.recorder = None
        self.session_rec = None
        self.web = None
        self.window = bool(self.rs.window and os.environ.get("DISPLAY"))
        nodes = self.settings.launcher.nodes
        self.wait_seg = "segmentation" in nodes
        self.wait_state = "assistant" in nodes
        # replay buffers, keyed by frame id
        self.r_frames: dict[int, tuple[m.Header, m.Frame]] = {}
        self.r_segs: dict[int, m.SegResult] = {}
        self.r_states: dict[int, m.AssistantState] = {}
        self.r_next = 0
        self.r_waiting_since: float | None = None
        if self.rs.web_port and not self.replay:
            from ar.web import WebView
            self.web = WebView(port=self.rs.web_port).start()
            log.info("browser view on http://127.0.0.1:%d/", self.rs.web_port)
        self.hmd = self.scene = self.hmd_web = None
        if self.settings.hmd.enabled and not self.replay:
            self._open_hmd()

    def _open_hmd(self) -> None:
        """The head-mounted view: scene camera + hand-anchored panel + 3D cue. A scene
        source that cannot be opened disables this view only (clear log), nothing else."""
        from ar.hmd import HmdView, open_scene

        hs = self.settings.hmd
        try:
            self.scene = open_scene(hs.scene)
        except ValueError as exc:
            log.error("head-mounted view disabled: %s", exc)
            self.publish(m.Event(kind="alert", text=f"head-mounted view disabled: {exc}"))
            return
        self.hmd = HmdView(hs)
        self.hmd.prepare()  # here, before "ready": not in the loop, between heartbeats
        if self.rs.web_port:
            from ar.web import WebView
            self.hmd_web = WebView(port=self.rs.web_port + 1).start()
            log.info("head-mounted view on http://127.0.0.1:%d/", self.rs.web_port + 1)

    # ------------------------------------------------------------------ messages
    def handle(self, header: m.Header, msg: m.Message) -> None:
        if isinstance(msg, m.Control) and msg.action == "finish" and msg.target == self.NAME:
            self._finish()
            return
        if isinstance(msg, m.NodeStatus):
            self.nodes_status[msg.node] = "online" if msg.state == "online" else "offline"
            self.dirty = True
            if self.replay and msg.state in ("offline", "failed"):
                # Never wait again for a producer that died mid-replay.
                if msg.node == "segmentation":
                    self.wait_seg = False
                elif msg.node == "assistant":
                    self.wait_state = False
            return
        if self.replay:
            if isinstance(msg, m.Frame):
                self.r_frames[msg.frame_id] = (header, msg)
            elif isinstance(msg, m.SegResult):
                self.r_segs[msg.frame_id] = msg
            elif isinstance(msg, m.AssistantState):
                self.r_states[msg.frame_id] = msg
            return
        if isinstance(msg, m.Frame):
            self.frame, self.frame_header = msg, header
            self.dirty = True
        elif isinstance(msg, m.SegResult):
            self.seg = msg
        elif isinstance(msg, m.AssistantState):
            # Drawn with the next frame; redrawn on its own only when frames stop coming
            # (frozen or dead source), so the screen never lags a state change for long.
            self.state_msg = msg
            self.state_dirty = True

    def tick(self, now: float) -> None:
        if self.replay:
            self._tick_replay(now)
        elif self.frame is not None and (self.dirty or (
                self.state_dirty and now - self.last_render >= IDLE_REDRAW_S)):
            self.dirty = self.state_dirty = False
            self.last_render = now
            self._render_live(now)

    # ------------------------------------------------------------------ live
    def _render_live(self, now: float) -> None:
        state = self.state_msg
        frame = self.frame
        if state is not None and state.frozen:
            if self.frozen_frame is None:
                self.frozen_frame = frame
            frame = self.frozen_frame
        else:
            self.frozen_frame = None
        t0 = time.monotonic()
        img, info = self.overlay.render_monitor_info(frame, self.seg, state, now, self.rs,
                                                     node_status=self._status())
        render_ms = (time.monotonic() - t0) * 1000
        self._output(img)
        self._recording(state, img)
        if self.hmd is not None:
            try:
                self._render_hmd(frame, img, state, now, self.overlay.doubt_line(info),
                                 self.overlay.panel_prompt(info))
            except Exception as exc:
                # The head-mounted view is an extra: its failure must not take the
                # monitor view down. Said once, then that view is off.
                log.exception("head-mounted view failed; disabled")
                self.publish(m.Event(kind="alert", text=f"head-mounted view failed: {exc}"))
                self.hmd = None
        self.rendered += 1
        latency = (time.monotonic() - self.frame_header.t_mono) * 1000
        self.publish(m.Rendered(frame_id=frame.frame_id, render_ms=render_ms, latency_ms=latency))

    def _recording(self, state, img) -> None:
        """Voice "start recording" / "stop recording": the monitor view to a file."""
        on = bool(state is not None and state.recording)
        if on and self.session_rec is None:
            from ar.recorder import VideoRecorder
            folder = Path(self.rs.recording_dir) if self.rs.recording_dir else recordings_dir()
            path = folder / time.strftime("recording-%Y%m%d-%H%M%S.mp4")
            self.session_rec = VideoRecorder(path, self.settings.source.fps)
            self.publish(m.Event(kind="recording", text="recording to file",
                                 data={"path": str(path)}))
        elif not on and self.session_rec is not None:
            rec, self.session_rec = self.session_rec, None
            try:
                rec.close()
                self.publish(m.Event(kind="recording", text="recording saved",
                                     data={"path": str(rec.path), "frames": rec.frames}))
            except Exception as exc:
                log.error("%s", exc)
        if self.session_rec is not None:
            self.session_rec.write(img)

    def _render_hmd(self, frame: m.Frame, monitor, state, now: float, doubts: str = "",
                    prompt: tuple[str, bool] = ("", False)) -> None:
        ok, scene = self.scene.read()
        if not ok and not self.settings.hmd.scene.strip().isdigit():
            self.scene.set(cv2.CAP_PROP_POS_FRAMES, 0)  # a scene video file loops
            ok, scene = self.scene.read()
        if not ok or scene is None:
            log.warning("head-mounted view: no scene frame")
            return
        layout = self.overlay.monitor_layout(frame.image.shape, self.rs)
        g = (state.guidance if state is not None else {}) or {}
        needle = self.seg.needle if self.seg is not None and self.seg.needle else {}
        tip, entry = needle.get("tip_px"), needle.get("entry_px")
        from_right = bool(tip and entry and entry[0] > tip[0])
        out = self.hmd.step(scene, monitor, (layout.x0, layout.y0, layout.w, layout.h), now,
                            to_target_mm=g.get("to_target_mm"), angle_deg=g.get("angle_deg"),
                            header=f"{state.block if state else ''}", needle_from_right=from_right,
                            footer=doubts, prompt=prompt[0], confirm=prompt[1])
        if self.hmd_web is not None:
            view = out.stereo if out.stereo is not None else out.mono
            self.hmd_web.publish(view, {"hands": len(out.hands), "track_ms": round(out.track_ms, 1),
                                        "doubts": doubts})
        if self.window:
            cv2.imshow("head-mounted view (not for clinical use)", out.mono)

    def _status(self) -> dict:
        status = dict(self.nodes_status)
        if self.state_msg is not None:
            for k, v in (self.state_msg.nodes or {}).items():
                status.setdefault(k, v)
        return status

    def _record(self, img) -> None:
        if not self.rs.video_path:
            return
        if self.recorder is None:
            from ar.recorder import VideoRecorder
            self.recorder = VideoRecorder(self.rs.video_path, self.settings.source.fps)
        self.recorder.write(img)

    def _finish(self) -> None:
        """Replay is over: close the video and say so (the driver waits for this)."""
        data = {"path": self.rs.video_path, "frames": 0, "digest": ""}
        if self.recorder is not None:
            try:
                self.recorder.close()
                data.update(frames=self.recorder.frames, digest=self.recorder.digest)
            except Exception as exc:
                data["error"] = str(exc)
        self.publish(m.Event(kind="info", text="video written", data=data))

    def _output(self, img) -> None:
        self._record(img)
        if self.web is not None:
            self.web.publish(img, {"frames": self.rendered, "nodes": self._status()})
        if self.window:
            cv2.imshow("ultrasound assistant (not for clinical use)", img)
            cv2.waitKey(1)

    # ------------------------------------------------------------------ replay
    def _tick_replay(self, now: float) -> None:
        while self.r_next in self.r_frames:
            k = self.r_next
            have_seg = (not self.wait_seg) or k in self.r_segs
            have_state = (not self.wait_state) or k in self.r_states
            if not (have_seg and have_state):
                if self.r_waiting_since is None:
                    self.r_waiting_since = now
                if now - self.r_waiting_since < REPLAY_WAIT_S:
                    return
                log.warning("frame %d: drawn without %s (producer late or offline)", k,
                            "segmentation" if not have_seg else "assistant state")
            self.r_waiting_since = None
            header, frame = self.r_frames.pop(k)
            seg = self.r_segs.pop(k, None)
            state = self.r_states.pop(k, None)
            if state is not None and state.frozen:
                if self.frozen_frame is None:
                    self.frozen_frame = frame
                frame_drawn = self.frozen_frame
            else:
                self.frozen_frame = None
                frame_drawn = frame
            if seg is not None and frame_drawn.frame_id != frame.frame_id:
                seg = None  # a frozen picture keeps no overlay of newer frames
            t0 = time.monotonic()
            # Replay draws with the frame's own clock, so staleness never depends on
            # how fast this machine is: output is the same on every run.
            img = self.overlay.render_monitor(frame_drawn, seg, state, header.t_mono, self.rs,
                                              node_status=self._status())
            render_ms = (time.monotonic() - t0) * 1000
            self._record(img)
            self.publish(m.Rendered(frame_id=k, render_ms=render_ms,
                                    latency_ms=(time.monotonic() - header.t_mono) * 1000,
                                    digest=self.recorder.digest if self.recorder else ""))
            self.rendered += 1
            self.r_next += 1
            # Drop anything older than what we drew (e.g. a late result after a timeout).
            for d in (self.r_segs, self.r_states):
                for old in [i for i in d if i < self.r_next]:
                    del d[old]

    def stats(self) -> dict:
        return {"rendered": self.rendered}

    def teardown(self) -> None:
        for rec in (self.recorder, self.session_rec):
            if rec is not None:
                try:
                    rec.close()
                except Exception as exc:
                    log.error("%s", exc)
        for w in (self.web, self.hmd_web):
            if w is not None:
                w.stop()
        if self.hmd is not None:
            self.hmd.close()  # ends the hand-tracking thread and mediapipe
        if self.scene is not None:
            self.scene.release()
