"""The head-mounted view: the scene camera with the ultrasound panel beside the probe hand.

* :class:`HandTracker` finds hands with mediapipe's classic Hands solution
  (``mediapipe==0.10.14`` bundles its model; it runs offline on the CPU). The model is
  created on the first :meth:`HandTracker.detect`, never at import.
* :func:`panel_target` (pure) says where the panel should be for a hand;
  :func:`update_anchor` (pure) moves the panel there smoothly: exponential smoothing with a
  dead zone (small hand tremor does not move the panel) and a fall-back to a fixed corner
  when no hand has been seen for ``hand_timeout_s``.
* :func:`make_panel`, :func:`compose_view` and :func:`compose_stereo` draw the panel and
  the 3D cue into the scene (mono, or side by side for a headset with a small horizontal
  disparity for the panel so it floats in front of the scene).
* :class:`HmdView` strings them together for the renderer node, timing hand tracking
  separately from drawing.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ar.settings import HmdSettings
from assistant.messages import NOT_FOR_CLINICAL_USE

log = logging.getLogger(__name__)

FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL_BORDER_BGR = (233, 180, 86)  # sky blue frame around the floating panel
HEADER_H = 22
FOOTER_LINE_H = 18
DOUBT_BGR = (0, 200, 255)  # amber, as the monitor's "unsure" hatching note
PROMPT_H = 24  # the band under the header for a question waiting for "yes" or a notice
CONFIRM_BGR = (0, 159, 230)  # the monitor's orange confirmation box
NOTICE_BGR = (235, 235, 235)  # the monitor's light "not understood: say again" box


# ----------------------------------------------------------------------------- hands

@dataclass(frozen=True)
class Hand:
    """One detected hand in scene pixels. ``handedness`` is the person's own hand
    ("left"/"right") for a camera that is *not* mirrored (head-mounted or room camera)."""

    handedness: str
    score: float
    landmarks_px: np.ndarray  # (21, 2) float (x, y)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        xs, ys = self.landmarks_px[:, 0], self.landmarks_px[:, 1]
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2, (y0 + y1) / 2


def check_mediapipe_runtime() -> None:
    """mediapipe 0.10.14's classic solutions need protobuf 4.x; a newer protobuf (pulled by
    onnx in the training extra) breaks them deep inside. Fail early and say so."""
    try:
        import google.protobuf as pb
    except ImportError as exc:  # pragma: no cover - mediapipe itself needs it
        raise RuntimeError("hand tracking needs protobuf (a mediapipe dependency)") from exc
    major = int(pb.__version__.split(".")[0])
    if major >= 5:
        raise RuntimeError(
            f"hand tracking: mediapipe 0.10.14 needs protobuf<5, this environment has protobuf "
            f"{pb.__version__} (the 'train' extra's onnx requires protobuf>=6). Use a runtime "
            f"environment without it, or: pip install protobuf==4.25.8")


class HandTracker:
    """mediapipe Hands, created lazily. ``static_images`` for unrelated photos (tests);
    video mode (default) tracks between frames, which is faster and steadier."""

    def __init__(self, settings: HmdSettings = HmdSettings(), static_images: bool = False,
                 mirrored: bool = False):
        self.settings = settings
        self.static_images = static_images
        self.mirrored = mirrored
        self._hands = None

    def _model(self):
        if self._hands is None:
            check_mediapipe_runtime()
            import mediapipe as mp  # heavy: only when the head-mounted view is used

            self._hands = mp.solutions.hands.Hands(
                static_image_mode=self.static_images, max_num_hands=self.settings.max_hands,
                min_detection_confidence=self.settings.min_detection_confidence,
                min_tracking_confidence=0.5, model_complexity=0)
            log.info("mediapipe hands ready")
        return self._hands

    def load(self) -> None:
        """Create mediapipe's model now (seconds) instead of at the first :meth:`detect`."""
        self._model()

    def detect(self, bgr: np.ndarray) -> list[Hand]:
        if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"scene image must be uint8 (H, W, 3) BGR, got "
                             f"{getattr(bgr, 'dtype', type(bgr).__name__)} {getattr(bgr, 'shape', '')}")
        h, w = bgr.shape[:2]
        res = self._model().process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        hands: list[Hand] = []
        if not res.multi_hand_landmarks:
            return hands
        for lms, hd in zip(res.multi_hand_landmarks, res.multi_handedness or []):
            pts = np.array([(lm.x * w, lm.y * h) for lm in lms.landmark], np.float64)
            cls = hd.classification[0]
            label = cls.label.lower()
            # mediapipe labels hands as if the image were a mirrored selfie
            if not self.mirrored:
                label = {"left": "right", "right": "left"}.get(label, label)
            hands.append(Hand(label, float(cls.score), pts))
        return hands

    def close(self) -> None:
        if self._hands is not None:
            self._hands.close()
            self._hands = None


def choose_probe_hand(hands: list[Hand], probe_hand: str = "any") -> Hand | None:
    """The hand holding the probe: the named one if seen, else the biggest (nearest) hand."""
    if not hands:
        return None
    if probe_hand in ("left", "right"):
        named = [h for h in hands if h.handedness == probe_hand]
        if named:
            return max(named, key=lambda h: h.score)
    return max(hands, key=lambda h: (h.bbox[2] - h.bbox[0]) * (h.bbox[3] - h.bbox[1]))


# ----------------------------------------------------------------------------- anchor (pure)

def panel_target(hand_bbox, panel_wh: tuple[int, int], frame_wh: tuple[int, int],
                 gap_px: float) -> tuple[float, float]:
    """Top-left of a panel beside the hand: on the side with more room (so it does not
    cover the hand or the probe), vertically centred on the hand, inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in hand_bbox)
    pw, ph = panel_wh
    fw, fh = frame_wh
    right_room = fw - (x1 + gap_px)
    left_room = x0 - gap_px
    if right_room >= pw or right_room >= left_room:
        x = x1 + gap_px
    else:
        x = x0 - gap_px - pw
    y = (y0 + y1) / 2 - ph / 2
    return float(min(max(x, 0), fw - pw)), float(min(max(y, 0), fh - ph))


def corner_anchor(panel_wh: tuple[int, int], frame_wh: tuple[int, int], margin_px: int = 16) -> tuple[float, float]:
    """The fixed fall-back place: the top-right corner."""
    return float(frame_wh[0] - panel_wh[0] - margin_px), float(margin_px)


@dataclass(frozen=True)
class AnchorState:
    x: float
    y: float
    t: float  # time of the last update
    last_seen_t: float | None  # when a hand was last seen
    moving: bool = False
    on_hand: bool = False  # following a hand (False: at or going to the corner)


def update_anchor(state: AnchorState | None, target: tuple[float, float] | None, now: float,
                  settings: HmdSettings, corner: tuple[float, float]) -> AnchorState:
    """One step of the panel's motion (pure).

    The panel moves toward ``target`` (the hand's place) with exponential smoothing of time
    constant ``smoothing_tau_s`` (frame-rate independent); it starts moving only when the
    goal is more than ``dead_zone_px`` away and settles when within half a pixel. Without a
    hand it stays put for ``hand_timeout_s`` (a hand briefly lost), then goes to ``corner``.
    """
    if state is None:
        if target is not None:
            return AnchorState(float(target[0]), float(target[1]), now, now, False, True)
        return AnchorState(float(corner[0]), float(corner[1]), now, None, False, False)
    dt = max(0.0, now - state.t)
    if target is not None:
        goal, seen, on_hand = target, now, True
    elif state.last_seen_t is not None and now - state.last_seen_t <= settings.hand_timeout_s:
        goal, seen, on_hand = (state.x, state.y), state.last_seen_t, True
    else:
        goal, seen, on_hand = corner, state.last_seen_t, False
    gx, gy = float(goal[0]), float(goal[1])
    dist = math.hypot(gx - state.x, gy - state.y)
    moving = state.moving or dist > settings.dead_zone_px
    x, y = state.x, state.y
    if moving:
        k = 1.0 if settings.smoothing_tau_s <= 0 else 1.0 - math.exp(-dt / settings.smoothing_tau_s)
        x += k * (gx - x)
        y += k * (gy - y)
        if math.hypot(gx - x, gy - y) < 0.5:
            x, y, moving = gx, gy, False
    return AnchorState(x, y, now, seen, moving, on_hand)


# ----------------------------------------------------------------------------- drawing

def make_panel(monitor_bgr: np.ndarray, image_rect: tuple[int, int, int, int] | None,
               width_px: int, header: str = "", footer: str = "", prompt: str = "",
               confirm: bool = False) -> np.ndarray:
    """The floating panel: the ultrasound image with its overlays (the monitor view's image
    area, ``image_rect`` = (x, y, w, h)), scaled to ``width_px``, under a header line that
    always says NOT FOR CLINICAL USE. ``footer`` (the legend's doubts, ``ar.overlay.doubt_line``:
    the panel has no legend) is written under the image, wrapped to the width, in amber.
    ``prompt``: a band between the header and the image, as the monitor's side panel shows
    it (the head-mounted panel has no side panel): orange for a question waiting for "yes"
    (``confirm``), light for a notice such as "not understood: say again"."""
    if image_rect is not None:
        x, y, w, h = image_rect
        src = monitor_bgr[y:y + h, x:x + w]
    else:
        src = monitor_bgr
    if src.size == 0:
        raise ValueError(f"image_rect {image_rect} is outside the monitor image {monitor_bgr.shape}")
    ph = max(1, int(round(src.shape[0] * width_px / src.shape[1])))
    # bilinear: INTER_AREA at a non-integer ratio costs several times more for no visible gain
    body = cv2.resize(src, (width_px, ph), interpolation=cv2.INTER_LINEAR)
    lines = _wrap(footer, width_px - 12, 0.45) if footer else []
    fh = FOOTER_LINE_H * len(lines) + (6 if lines else 0)
    top = HEADER_H + (PROMPT_H if prompt else 0)
    panel = np.empty((ph + top + fh, width_px, 3), np.uint8)
    panel[:HEADER_H] = 0
    if prompt:
        panel[HEADER_H:top] = CONFIRM_BGR if confirm else NOTICE_BGR
        text = _wrap(prompt, width_px - 12, 0.5)[0]  # one line: the rest is on the monitor
        cv2.putText(panel, text, (6, HEADER_H + 17), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    panel[top:top + ph] = body
    panel[top + ph:] = 0
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (6, top + ph + 16 + FOOTER_LINE_H * i), FONT, 0.45,
                    DOUBT_BGR, 1, cv2.LINE_AA)
    cv2.putText(panel, NOT_FOR_CLINICAL_USE.upper(), (6, 16), FONT, 0.45, (0, 200, 255), 1, cv2.LINE_AA)
    if header:
        (tw, _), _ = cv2.getTextSize(header, FONT, 0.45, 1)
        cv2.putText(panel, header, (max(width_px - tw - 6, 200), 16), FONT, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.rectangle(panel, (0, 0), (width_px - 1, panel.shape[0] - 1), PANEL_BORDER_BGR, 2)
    return panel


def _wrap(text: str, width_px: int, scale: float) -> list[str]:
    """Greedy word wrap to ``width_px`` at the panel's font."""
    lines: list[str] = []
    for word in text.split(" "):
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, scale, 1)[0][0] <= width_px:
            lines[-1] = trial
        else:
            lines.append(word)
    return [ln.strip() for ln in lines if ln.strip()]


def fit_scene(scene_bgr: np.ndarray, settings: HmdSettings) -> np.ndarray:
    """The scene at the view's size (a copy: the caller's frame is never drawn on)."""
    if not isinstance(scene_bgr, np.ndarray) or scene_bgr.dtype != np.uint8 or scene_bgr.ndim != 3:
        raise ValueError(f"scene must be a uint8 (H, W, 3) image, got "
                         f"{getattr(scene_bgr, 'dtype', type(scene_bgr).__name__)} {getattr(scene_bgr, 'shape', '')}")
    if scene_bgr.shape[:2] == (settings.height_px, settings.width_px):
        return scene_bgr.copy()
    return cv2.resize(scene_bgr, (settings.width_px, settings.height_px), interpolation=cv2.INTER_LINEAR)


def _blit(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = src.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y:y1 - y, x0 - x:x1 - x]


def draw_hands(view: np.ndarray, hands: list[Hand], scale: tuple[float, float] = (1.0, 1.0),
               probe: Hand | None = None) -> None:
    """Light marks on the tracked hands so the operator sees what is followed."""
    for hnd in hands:
        pts = np.round(hnd.landmarks_px * scale).astype(np.int32)
        col = PANEL_BORDER_BGR if hnd is probe else (160, 160, 160)
        for p in pts[::2]:
            cv2.circle(view, (int(p[0]), int(p[1])), 3, col, -1, cv2.LINE_AA)
        x0, y0 = pts.min(axis=0)
        cv2.putText(view, f"{hnd.handedness}{' (probe)' if hnd is probe else ''}", (int(x0), int(y0) - 8),
                    FONT, 0.5, col, 1, cv2.LINE_AA)


def compose_view(scene_fit: np.ndarray, panel: np.ndarray, anchor_xy: tuple[float, float],
                 cue: tuple[np.ndarray, np.ndarray] | None = None, dx: int = 0) -> np.ndarray:
    """One eye: the scene with the panel at ``anchor + (dx, 0)`` and the cue under the
    panel's right end (or above it when there is no room below)."""
    view = scene_fit.copy()
    _place(view, panel, anchor_xy, cue, dx)
    return view


def _place(view: np.ndarray, panel: np.ndarray, anchor_xy, cue, dx: int) -> None:
    """Panel at the anchor (+dx) and the cue under its right end, drawn in place."""
    from ar.cue3d import composite

    x, y = int(round(anchor_xy[0])) + dx, int(round(anchor_xy[1]))
    _blit(view, panel, x, y)
    if cue is not None:
        img, alpha = cue
        cx = x + panel.shape[1] - img.shape[1]
        cy = y + panel.shape[0] + 4
        if cy + img.shape[0] > view.shape[0]:
            cy = y - img.shape[0] - 4
        composite(view, img, alpha, cx, cy)


def compose_stereo(scene_fit: np.ndarray, panel: np.ndarray, anchor_xy: tuple[float, float],
                   disparity_px: int, cue=None) -> np.ndarray:
    """Side by side (left | right), 2x wide. The mono scene camera gives both eyes the same
    scene; the panel is shifted by +d/2 in the left eye and -d/2 in the right (crossed
    disparity), so it appears in front of the scene."""
    d = int(disparity_px)
    h, w = scene_fit.shape[:2]
    out = np.empty((h, 2 * w, 3), np.uint8)  # one buffer: two copies of the scene, no hstack
    out[:, :w] = scene_fit
    out[:, w:] = scene_fit
    _place(out[:, :w], panel, anchor_xy, cue, d // 2)
    _place(out[:, w:], panel, anchor_xy, cue, -(d - d // 2))
    return out


def open_scene(scene: str) -> cv2.VideoCapture:
    """The scene camera: a camera index ("0") or a video file. Raises naming what failed."""
    if not isinstance(scene, str) or not scene.strip():
        raise ValueError("hmd.scene is empty: give a camera index (\"0\") or a video file")
    src: int | str = int(scene) if scene.strip().isdigit() else scene
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise ValueError(f"hmd.scene {scene!r}: cannot open " + ("camera" if isinstance(src, int) else "video file"))
    return cap


# ----------------------------------------------------------------------------- the view

@dataclass
class HmdFrame:
    mono: np.ndarray  # with stereo on: the left eye (a view into ``stereo``)
    stereo: np.ndarray | None
    hands: list
    anchor: AnchorState
    track_ms: float
    draw_ms: float


class BackgroundTracker:
    """Runs a tracker on its own thread, newest frame only: :meth:`submit` never waits
    (a frame not yet taken is replaced), :meth:`latest` returns the last result at once.

    Hand tracking takes longer than a frame interval here; on the caller's thread it would
    hold up the monitor view, which matters more. An exception in the tracker is re-raised
    by the next :meth:`latest` (so the caller's "the head-mounted view failed" path runs).
    """

    def __init__(self, tracker):
        self.tracker = tracker
        self._cond = threading.Condition()
        self._pending: np.ndarray | None = None
        self._hands: list[Hand] = []
        self._seq = 0  # results produced
        self._track_ms = 0.0
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hand-tracker", daemon=True)
        self._thread.start()

    def submit(self, bgr: np.ndarray) -> None:
        with self._cond:
            self._pending = bgr.copy()  # the camera may reuse its buffer
            self._cond.notify_all()

    def latest(self) -> tuple[list[Hand], int, float]:
        """(hands, how many results so far, ms the last detection took)."""
        with self._cond:
            if self._error is not None:
                raise RuntimeError(f"hand tracking failed: {self._error}") from self._error
            return list(self._hands), self._seq, self._track_ms

    def wait_for_result(self, after_seq: int, timeout_s: float) -> bool:
        """Block until a result newer than ``after_seq`` exists (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seq > after_seq or self._error is not None, timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stop)
                if self._stop:
                    return
                frame, self._pending = self._pending, None
            t0 = time.perf_counter()
            try:
                hands = self.tracker.detect(frame)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, not swallowed
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                log.exception("hand tracking failed")
                return
            with self._cond:
                self._hands, self._track_ms = hands, (time.perf_counter() - t0) * 1e3
                self._seq += 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        self.tracker.close()


class HmdView:
    """Stateful glue for the node: tracking, anchor, panel, cue, eyes.

    ``step`` is called once per scene frame with the newest monitor render. With
    ``settings.track_in_background`` hand tracking runs on its own thread and ``step`` uses
    the newest result it has (``HmdFrame.track_ms`` is then that detection's time, not time
    spent in ``step``).
    """

    def __init__(self, settings: HmdSettings = HmdSettings(), tracker: HandTracker | None = None,
                 cue_renderer=None, track_every: int | None = None, background: bool | None = None):
        self.settings = settings
        self.tracker = tracker or HandTracker(settings)
        self._cue = cue_renderer
        self.anchor: AnchorState | None = None
        self.track_every = max(1, int(track_every if track_every is not None else settings.track_every_frames))
        bg = settings.track_in_background if background is None else background
        self.background = BackgroundTracker(self.tracker) if bg else None
        self._n = 0
        self._hands: list[Hand] = []

    @property
    def cue_renderer(self):
        if self._cue is None:
            from ar.cue3d import CueRenderer

            self._cue = CueRenderer(self.settings.cue_size_px)
        return self._cue

    def prepare(self) -> None:
        """Load what the first ``step`` would (mediapipe's hand model, the 3D cue's
        renderer: seconds on a busy machine), so that a process can do it before it says
        it is ready instead of inside its loop, where it would miss its heartbeats."""
        if hasattr(self.tracker, "load"):
            self.tracker.load()
        # one cue drawn: open3d is imported on the first (about 1 s here; the renderer was
        # killed for it, again and again, under 100 ms heartbeats), and "no needle" is cached
        self.cue_renderer.render(None)

    def step(self, scene_bgr: np.ndarray, monitor_bgr: np.ndarray, image_rect, now: float,
             to_target_mm: float | None = None, angle_deg: float | None = None,
             header: str = "", show_cue: bool = True, needle_from_right: bool = False,
             footer: str = "", prompt: str = "", confirm: bool = False) -> HmdFrame:
        s = self.settings
        t0 = time.perf_counter()
        track_ms = None
        if self.background is not None:
            if self._n % self.track_every == 0:
                self.background.submit(scene_bgr)
            self._hands, _, track_ms = self.background.latest()
        elif self._n % self.track_every == 0:
            self._hands = self.tracker.detect(scene_bgr)
        self._n += 1
        t1 = time.perf_counter()
        scene = fit_scene(scene_bgr, s)
        sx, sy = s.width_px / scene_bgr.shape[1], s.height_px / scene_bgr.shape[0]
        panel = make_panel(monitor_bgr, image_rect, s.panel_width_px, header, footer, prompt,
                           confirm)
        pw, ph = panel.shape[1], panel.shape[0]
        probe = choose_probe_hand(self._hands, s.probe_hand)
        target = None
        if probe is not None:
            x0, y0, x1, y1 = probe.bbox
            target = panel_target((x0 * sx, y0 * sy, x1 * sx, y1 * sy), (pw, ph), (s.width_px, s.height_px),
                                  s.panel_gap_px)
        self.anchor = update_anchor(self.anchor, target, now, s, corner_anchor((pw, ph), (s.width_px, s.height_px)))
        draw_hands(scene, self._hands, (sx, sy), probe)
        cue = self.cue_renderer.render(to_target_mm, angle_deg, needle_from_right) if show_cue else None
        anchor = (self.anchor.x, self.anchor.y)
        if s.stereo:  # the left eye doubles as the mono view (no third copy of the scene)
            stereo = compose_stereo(scene, panel, anchor, s.stereo_disparity_px, cue)
            mono = stereo[:, :s.width_px]
        else:
            stereo, mono = None, compose_view(scene, panel, anchor, cue)
        t2 = time.perf_counter()
        return HmdFrame(mono, stereo, list(self._hands), self.anchor,
                        (t1 - t0) * 1e3 if track_ms is None else track_ms, (t2 - t1) * 1e3)

    def close(self) -> None:
        if self.background is not None:
            self.background.close()  # closes the tracker after its thread ends
        else:
            self.tracker.close()

