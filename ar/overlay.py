"""The monitor view: the ultrasound image with its overlays, as the operator sees it.

Everything here is a pure function of (frame, seg, state, now, settings): the renderer
node (``ar/node.py``) calls :func:`render_monitor` once per frame and shows / records /
streams the result. Nothing heavy happens at import.

Screen layout (``MonitorLayout``), for the default 1280x720::

    +-------------------------------------------------------------------+
    | status strip: nodes, REC / FROZEN / MUTED, NOT FOR CLINICAL USE    |
    +------+-------------------------------------+----------------------+
    |ruler | ultrasound image (fit, centred):    | side panel: block,   |
    |  mm  |  fills, outlines, labels, needle,   | why not drawn,       |
    |      |  its path, target plane             | quality, legend,     |
    |      |                                     | guidance, 3D cue,    |
    |      |                                     | "say yes to confirm" |
    +------+-------------------------------------+----------------------+
    | alert banners (two, most severe first)                             |
    +-------------------------------------------------------------------+

Blending is exact integer arithmetic: a fill pixel is
``round_half_even((img * (256 - A) + colour * A) / 256)`` with ``A = round(fill_alpha * 256)``
(OpenCV's ``addWeighted`` with these dyadic weights gives exactly that; tests check it).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ar.plane import BLOCK_NAMES, BLOCK_PLANES, target_plane_from_labels, tip_to_plane_mm
from ar.settings import RenderSettings
from assistant.messages import NOT_FOR_CLINICAL_USE, AssistantState, Frame, SegResult
from models.classes import CLASSES, COLOURS_BGR, LAYERS

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- constants

STATUS_H = 30  # top strip
BANNER_H = 28  # one alert banner; two fit in the bottom strip
BOTTOM_H = 2 * BANNER_H
RULER_W = 56  # depth ruler left of the image
PANEL_W = 300  # side panel right of the image
MIN_CUE_PX = 80  # a 3D cue shrunk below this height is left out of the side panel

FONT = cv2.FONT_HERSHEY_SIMPLEX
BG = (24, 24, 24)
PANEL_BG = (40, 40, 40)
TEXT = (235, 235, 235)
DIM = (140, 140, 140)
# Okabe-Ito (colour-blind-safe) for UI states; never colour alone: every state has a word.
OK_GREEN = (115, 158, 0)
WARN_ORANGE = (0, 159, 230)
ALERT_RED = (0, 94, 213)
INFO_BLUE = (178, 114, 0)
PLANE_COLOUR = (255, 0, 255)  # magenta: not used by any class
LEVEL_COLOURS = {"alert": ALERT_RED, "warning": WARN_ORANGE, "info": INFO_BLUE}
LEVEL_RANK = {"alert": 0, "warning": 1, "info": 2}

#: class name -> layer name (inverse of models.classes.LAYERS)
CLASS_LAYER = {c: layer for layer, cs in LAYERS.items() for c in cs}
#: classes a label must never cover (weight of their pixels when placing labels)
TARGET_CLASSES = ("nerve", "vessel", "pleura")
LABEL_AVOID_WEIGHT = 50
SEG_NODE = "segmentation"
ASSISTANT_NODE = "assistant"
SOURCE_NODE = "source"
OFFLINE_STATES = ("offline", "failed")


def alpha_256(fill_alpha: float) -> int:
    """The integer blend weight (0..256) used for ``fill_alpha``."""
    return int(round(float(fill_alpha) * 256))


def blend_expected(image_bgr: np.ndarray, colour_bgr, fill_alpha: float) -> np.ndarray:
    """Reference blend of ``colour`` over ``image`` (what a fill pixel must equal)."""
    a = alpha_256(fill_alpha)
    num = image_bgr.astype(np.int64) * (256 - a) + np.asarray(colour_bgr, np.int64) * a
    return np.rint(num / 256.0).astype(np.uint8)


# ----------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class MonitorLayout:
    """Where the ultrasound image lies on the screen and how pixels map.

    Screen pixel (sx, sy) inside ``rect`` shows image pixel
    ``(src_x[sx - x0], src_y[sy - y0])`` (nearest pixel centre), so a mask drawn on the
    screen is exactly the image mask resampled through these index arrays.
    """

    screen_w: int
    screen_h: int
    image_w: int
    image_h: int
    x0: int
    y0: int
    w: int  # size of the image on screen
    h: int
    scale: float  # screen px per image px
    src_x: np.ndarray = field(repr=False, compare=False)
    src_y: np.ndarray = field(repr=False, compare=False)

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.w, self.h

    @property
    def panel_x0(self) -> int:
        return self.screen_w - PANEL_W

    def image_to_screen(self, pts) -> np.ndarray:
        """Image (x, y) pixel coordinates (pixel centres at integers) -> screen coordinates."""
        p = np.asarray(pts, dtype=np.float64)
        sx = self.x0 + (p[..., 0] + 0.5) * (self.w / self.image_w) - 0.5
        sy = self.y0 + (p[..., 1] + 0.5) * (self.h / self.image_h) - 0.5
        return np.stack([sx, sy], axis=-1)

    def screen_to_image(self, pts) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64)
        ix = (p[..., 0] - self.x0 + 0.5) * (self.image_w / self.w) - 0.5
        iy = (p[..., 1] - self.y0 + 0.5) * (self.image_h / self.h) - 0.5
        return np.stack([ix, iy], axis=-1)

    def mm_to_screen_y(self, depth_mm: float, spacing_mm: float) -> float:
        return self.image_to_screen([0.0, depth_mm / spacing_mm - 0.5])[1]

    def resize_labels(self, labels: np.ndarray) -> np.ndarray:
        """Labels resampled to the on-screen image size (nearest, by ``src_x``/``src_y``)."""
        if labels.shape != (self.image_h, self.image_w):
            raise ValueError(f"labels {labels.shape} do not match the layout's image "
                             f"{(self.image_h, self.image_w)}")
        return cv2.resize(labels, (self.w, self.h), interpolation=cv2.INTER_NEAREST_EXACT)

    def resize_image(self, image: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """The image as it appears on screen (bilinear for the picture itself), BGR; written
        into ``dst`` (an (h, w, 3) view, e.g. the screen's image area) when given."""
        if (image.shape[1], image.shape[0]) != (self.w, self.h):
            interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (self.w, self.h), interpolation=interp)
        if image.ndim == 2:  # grey is resized first (a third of the work), then made BGR
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR, dst=dst)
        if dst is None:
            return image.copy()
        dst[:] = image
        return dst


@functools.lru_cache(maxsize=8)
def _layout_cached(screen_w: int, screen_h: int, image_w: int, image_h: int) -> MonitorLayout:
    avail_w = screen_w - RULER_W - PANEL_W
    avail_h = screen_h - STATUS_H - BOTTOM_H
    scale = min(avail_w / image_w, avail_h / image_h)
    w = max(1, int(round(image_w * scale)))
    h = max(1, int(round(image_h * scale)))
    x0 = RULER_W + (avail_w - w) // 2
    y0 = STATUS_H + (avail_h - h) // 2
    # The source pixel each screen pixel shows: OpenCV's INTER_NEAREST_EXACT (pixel-centre
    # nearest), read off by resizing an index ramp, so resize_labels can use the fast resize
    # and still agree exactly with these arrays.
    src_x = cv2.resize(np.arange(image_w, dtype=np.uint16)[None, :], (w, 1),
                       interpolation=cv2.INTER_NEAREST_EXACT)[0].astype(np.int32)
    src_y = cv2.resize(np.arange(image_h, dtype=np.uint16)[:, None], (1, h),
                       interpolation=cv2.INTER_NEAREST_EXACT)[:, 0].astype(np.int32)
    src_x.setflags(write=False)
    src_y.setflags(write=False)
    return MonitorLayout(screen_w, screen_h, image_w, image_h, x0, y0, w, h, scale, src_x, src_y)


def monitor_layout(image_shape: tuple[int, ...], settings: RenderSettings) -> MonitorLayout:
    """The layout for an image of ``image_shape`` (H, W[, C]) on the settings' screen."""
    if len(image_shape) < 2 or image_shape[0] < 1 or image_shape[1] < 1:
        raise ValueError(f"image shape must be (H, W[, 3]) with H, W >= 1, got {image_shape}")
    return _layout_cached(settings.width_px, settings.height_px, int(image_shape[1]), int(image_shape[0]))


# ----------------------------------------------------------------------------- validation

def _check_frame(frame: Frame) -> None:
    img = frame.image
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or not (
            img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"frame {frame.frame_id}: image must be uint8 (H, W) or (H, W, 3), got "
                         f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"frame {frame.frame_id}: image is too small: {img.shape}")
    for name in ("spacing_mm", "depth_mm"):
        v = getattr(frame, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"frame {frame.frame_id}: {name} must be a positive number, got {v!r}")


def _check_seg(seg: SegResult) -> None:
    lab = seg.labels
    if not isinstance(lab, np.ndarray) or lab.dtype != np.uint8 or lab.ndim != 2:
        raise ValueError(f"segmentation of frame {seg.frame_id}: labels must be uint8 (H, W), got "
                         f"{getattr(lab, 'dtype', type(lab).__name__)} {getattr(lab, 'shape', '')}")


# ----------------------------------------------------------------------------- staleness

def seg_usable(frame: Frame | None, seg: SegResult | None, now_mono: float,
               stale_ms: float) -> tuple[bool, str]:
    """May ``seg`` be drawn over ``frame``? Returns (ok, reason shown on screen when not).

    * same ``frame_id``: yes (replay always pairs them; live, it is the frame segmented);
    * replay with a different id: no (two runs must give the same video);
    * live: the segmented frame must be at most ``stale_ms`` old now (``frame_t_mono``)
      and at most ``stale_ms`` away from the frame shown in media time (older, or newer
      when the picture shown is held back), so a mask never lags the picture by more.
    """
    if seg is None:
        return False, "no segmentation yet"
    if frame is None:
        return False, "no frame"
    if seg.labels.shape[:2] != frame.image.shape[:2]:
        return False, (f"segmentation {seg.labels.shape[1]}x{seg.labels.shape[0]} does not match "
                       f"frame {frame.image.shape[1]}x{frame.image.shape[0]}")
    if seg.frame_id == frame.frame_id:
        return True, ""
    if frame.replay:
        return False, f"segmentation is for frame {seg.frame_id}, not {frame.frame_id}"
    age_ms = (now_mono - seg.frame_t_mono) * 1000.0
    if age_ms > stale_ms:
        return False, f"segmentation stale {age_ms:.0f} ms"
    lag_ms = (frame.media_time_s - seg.media_time_s) * 1000.0
    if lag_ms > stale_ms:
        return False, f"segmentation stale {lag_ms:.0f} ms"
    if -lag_ms > stale_ms:
        return False, f"segmentation is {-lag_ms:.0f} ms newer than the picture"
    return True, ""


def merged_nodes(state: AssistantState | None, node_status: dict | None) -> dict:
    """Node -> state, the renderer's own ``node_status`` overriding the assistant's view
    (the assistant's view may itself be late)."""
    nodes: dict = {}
    if state is not None and isinstance(state.nodes, dict):
        nodes.update(state.nodes)
    if node_status:
        nodes.update(node_status)
    return nodes


def node_offline(nodes: dict, name: str) -> bool:
    return str(nodes.get(name, "")).lower() in OFFLINE_STATES


# ----------------------------------------------------------------------------- drawing helpers

class _Canvas:
    """Draws UI chrome into the screen image and, for tests, records its footprint.

    The footprint (``mask``) is drawn from the same primitives, slightly thicker to cover
    anti-aliasing, not derived from pixel differences, so tests comparing pixels outside
    it are not circular.
    """

    def __init__(self, img: np.ndarray, track: bool):
        self.img = img
        self.mask = np.zeros(img.shape[:2], np.uint8) if track else None

    def rect(self, p0, p1, colour, thickness=-1):
        p0, p1 = _ipt(p0), _ipt(p1)
        cv2.rectangle(self.img, p0, p1, colour, thickness)
        if self.mask is not None:
            cv2.rectangle(self.mask, p0, p1, 255, -1 if thickness < 0 else thickness + 2)

    def text(self, s: str, org, colour=TEXT, scale=0.5, thickness=1, bg=None, pad=3) -> tuple[int, int, int, int]:
        """Text with its baseline-left at ``org``; returns the box (x0, y0, x1, y1)."""
        (tw, th), base = cv2.getTextSize(s, FONT, scale, thickness)
        x, y = _ipt(org)
        box = (x - pad, y - th - pad, x + tw + pad, y + base + pad)
        if bg is not None:
            cv2.rectangle(self.img, box[:2], box[2:], bg, -1)
        cv2.putText(self.img, s, (x, y), FONT, scale, colour, thickness, cv2.LINE_AA)
        if self.mask is not None:
            cv2.rectangle(self.mask, (box[0] - 1, box[1] - 1), (box[2] + 1, box[3] + 1), 255, -1)
        return box

    def line(self, p0, p1, colour, thickness=1, aa=True):
        p0, p1 = _ipt(p0), _ipt(p1)
        cv2.line(self.img, p0, p1, colour, thickness, cv2.LINE_AA if aa else cv2.LINE_8)
        if self.mask is not None:
            cv2.line(self.mask, p0, p1, 255, thickness + 4)

    def polylines(self, polys: list, colour, thickness=1, closed=False, aa=True):
        if not polys:
            return
        polys = [np.round(np.asarray(p)).astype(np.int32).reshape(-1, 1, 2) for p in polys]
        cv2.polylines(self.img, polys, closed, colour, thickness, cv2.LINE_AA if aa else cv2.LINE_8)
        if self.mask is not None:
            cv2.polylines(self.mask, polys, closed, 255, thickness + 4)

    def circle(self, c, r, colour, thickness=1):
        c = _ipt(c)
        cv2.circle(self.img, c, int(r), colour, thickness, cv2.LINE_AA)
        if self.mask is not None:
            cv2.circle(self.mask, c, int(r), 255, -1 if thickness < 0 else thickness + 4)


def _ipt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def dashed_segments(pts, dash_px: float, gap_px: float) -> list[np.ndarray]:
    """Split a polyline into dash segments of ``dash_px`` separated by ``gap_px`` (pure).

    Vectorised over the dashes: a long needle path has dozens of them every frame.
    """
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2 or dash_px <= 0:
        return []
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    total = cum[-1]
    if total <= 0:
        return []
    starts = np.arange(0.0, total, dash_px + max(gap_px, 0.0))
    ends = np.minimum(starts + dash_px, total)
    a = np.stack([np.interp(starts, cum, pts[:, 0]), np.interp(starts, cum, pts[:, 1])], axis=1)
    b = np.stack([np.interp(ends, cum, pts[:, 0]), np.interp(ends, cum, pts[:, 1])], axis=1)
    if len(pts) == 2:
        return list(np.stack([a, b], axis=1))
    # vertices strictly inside a dash keep the dash on the polyline's corners
    owner = np.searchsorted(starts, cum, side="right") - 1
    inside = (owner >= 0) & (cum > starts[np.maximum(owner, 0)]) & (cum < ends[np.maximum(owner, 0)])
    inner: dict[int, list] = {}
    for k in np.nonzero(inside)[0]:
        inner.setdefault(int(owner[k]), []).append(pts[k])
    return [np.vstack([a[i], *inner[i], b[i]]) if i in inner else np.stack([a[i], b[i]])
            for i in range(len(starts))]


@functools.lru_cache(maxsize=8)
def _hatch_mask(h: int, w: int, period: int, width: int) -> np.ndarray:
    """Diagonal stripes (True = filled) used for unsure structures."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.where(((xx + yy) % period) < width, 255, 0).astype(np.uint8)
    m.setflags(write=False)
    return m


def class_shown(name: str, state: AssistantState | None) -> bool:
    """Is class ``name`` switched on by voice (state.overlay_on, state.layers)?

    A layer missing from ``state.layers`` is shown; ``layers["all"] == False`` hides all.
    """
    if state is None:
        return True
    if not state.overlay_on:
        return False
    layers = state.layers if isinstance(state.layers, dict) else {}
    if layers.get("all", True) is False:
        return False
    return bool(layers.get(CLASS_LAYER.get(name, name), True))


def class_confidence(seg: SegResult, idx: int) -> float | None:
    try:
        v = seg.confidence[idx]
    except (IndexError, TypeError, KeyError):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------- the view

@dataclass
class RenderInfo:
    """What :func:`render_monitor_info` drew (for the node's logs and for tests)."""

    layout: MonitorLayout | None = None
    seg_drawn: bool = False
    seg_reason: str = ""
    drawn_classes: dict = field(default_factory=dict)  # class name -> "sure" | "unsure"
    # drawn classes whose confidence was never checked on real scans (SegResult.calibrated)
    unverified_classes: set = field(default_factory=set)
    legend: dict = field(default_factory=dict)  # class name -> its legend status ("" plain)
    plane_unverified: bool = False  # the target plane drawn lies between unverified classes
    panel_text_bottom: int = 0  # lowest y of the side panel's text above the cue
    cue_rect: tuple | None = None  # (x, y, w, h) of the 3D cue in the side panel, if it fitted
    #: labels resampled to the on-screen image, shown classes only (only when track_chrome)
    labels_screen: np.ndarray | None = None
    chrome_mask: np.ndarray | None = None  # footprint of UI chrome (only when track_chrome)
    label_boxes: dict = field(default_factory=dict)  # class name -> (x0, y0, x1, y1) on screen
    label_texts: dict = field(default_factory=dict)  # class name -> its label text
    needle_drawn: bool = False
    guidance_shown: bool = False  # needle depth / distance numbers in the side panel
    plane_px: np.ndarray | None = None  # target plane drawn (image px)
    held_drawn: int = 0  # remembered vessel outlines drawn dashed ("not seen now")
    to_target_mm: float | None = None
    messages: list = field(default_factory=list)  # status texts shown
    notice: str = ""  # the short-lived notice drawn in the prompt box, if any
    confirm: str = ""  # the question waiting for "yes" drawn in the prompt box, if any


@functools.lru_cache(maxsize=2)
def _cue_renderer(size_px: int):
    from ar.cue3d import CueRenderer  # open3d only when the monitor cue is switched on

    return CueRenderer(size_px)


def _monitor_cue(settings: RenderSettings, to_target_mm: float | None, angle_deg: float | None,
                 mirror: bool = False):
    return _cue_renderer(settings.monitor_cue_size_px).render(to_target_mm, angle_deg, mirror)


def needle_from_right(needle: dict | None) -> bool:
    """The needle enters from the image's right (its entry point is right of its tip)."""
    if not isinstance(needle, dict):
        return False
    try:
        return float(needle["entry_px"][0]) > float(needle["tip_px"][0])
    except (KeyError, TypeError, ValueError, IndexError):
        return False


@functools.lru_cache(maxsize=4)
def _background(h: int, w: int) -> np.ndarray:
    bg = np.empty((h, w, 3), np.uint8)
    bg[:] = BG
    bg.setflags(write=False)
    return bg


def render_monitor(frame: Frame | None, seg: SegResult | None, state: AssistantState | None,
                   now_mono: float, settings: RenderSettings,
                   node_status: dict | None = None, cue=None) -> np.ndarray:
    """The monitor view: BGR uint8 (settings.height_px, settings.width_px, 3).

    ``seg`` is drawn only when :func:`seg_usable` allows it and the segmentation node is
    not offline; otherwise the screen says why. Raises ValueError for a malformed frame or
    segmentation (naming the field).

    ``cue``: an (image, alpha) 3D depth cue (``ar.cue3d``) to show in the side panel; with
    ``settings.monitor_cue3d`` and no ``cue`` given, it is rendered here (cached by its
    quantised inputs, but about 10 ms each time the distance changes by 0.25 mm).
    """
    return render_monitor_info(frame, seg, state, now_mono, settings, node_status, cue=cue)[0]


def confirm_lines(prompt: str) -> tuple[str, str]:
    """A yes/no question as the prompt box's two lines (header, question), short enough for
    the panel: "stop recording? say yes or no" -> ('say "yes" to confirm:', "stop
    recording?"); an offer "already frozen. unfreeze? say yes or no" (assistant.logic.
    opposite_offer) -> ('already frozen: say "yes" to', "unfreeze?"), so that the command
    offered is never the part cut off."""
    q = prompt.strip()
    if q.endswith("say yes or no"):
        q = q[: -len("say yes or no")].strip()
    note, sep, rest = q.partition(". ")
    if sep and rest:
        return f'{note}: say "yes" to', rest
    return 'say "yes" to confirm:', q


def panel_prompt(info: RenderInfo) -> tuple[str, bool]:
    """The monitor panel's prompt box as one line for a view without that panel (the
    head-mounted one): (text, True) for a question waiting for "yes", (text, False) for a
    notice such as "not understood: say again", ("", False) for neither."""
    if info.confirm:
        return " ".join(confirm_lines(info.confirm)), True
    return info.notice, False


def doubt_line(info: RenderInfo) -> str:
    """The legend's doubts in one line, for views without the legend (the head-mounted
    panel): "unsure: nerve  |  unverified: muscles, pleura, plane"; "" when none."""
    from assistant.guidance import group_muscles

    unsure = [n for n, st in info.legend.items() if st == "unsure"]
    unver = group_muscles(n for n, st in info.legend.items() if st == "unverified")
    if info.plane_unverified:
        unver.append("plane")
    parts = [f"{word}: " + ", ".join(n.replace("_", " ") for n in names)
             for word, names in (("unsure", unsure), ("unverified", unver)) if names]
    return "  |  ".join(parts)


def render_monitor_info(frame: Frame | None, seg: SegResult | None, state: AssistantState | None,
                        now_mono: float, settings: RenderSettings, node_status: dict | None = None,
                        track_chrome: bool = False, cue=None) -> tuple[np.ndarray, RenderInfo]:
    """:func:`render_monitor` plus what was drawn (``track_chrome`` records the chrome footprint)."""
    if not isinstance(settings, RenderSettings):
        raise TypeError(f"settings must be RenderSettings, got {type(settings).__name__}")
    out = _background(settings.height_px, settings.width_px).copy()  # filling per frame costs ~8 ms
    cv = _Canvas(out, track_chrome)
    nodes = merged_nodes(state, node_status)
    assistant_ok = state is not None and not node_offline(nodes, ASSISTANT_NODE)
    messages: list[tuple[str, tuple]] = []  # (text, colour) for the side panel
    info = RenderInfo(chrome_mask=cv.mask)

    layout = None
    labels_s = None
    label_jobs: list = []
    occupied = None
    if frame is not None:
        _check_frame(frame)
        layout = monitor_layout(frame.image.shape, settings)
        info.layout = layout
        x0, y0, w, h = layout.rect
        layout.resize_image(frame.image, dst=out[y0:y0 + h, x0:x0 + w])  # in place: no extra copy
        if node_offline(nodes, SOURCE_NODE):
            messages.append(("source offline: image not live", ALERT_RED))

        # --- segmentation: usable? then fills, outlines, labels
        if seg is not None:
            _check_seg(seg)
        if node_offline(nodes, SEG_NODE):
            ok, reason = False, "segmentation offline"
        elif state is not None and state.frozen and (seg is None or seg.frame_id != frame.frame_id):
            # a frozen picture shows only its own frame's overlay, never a later frame's
            ok, reason = False, "frozen: later overlays not drawn"
        else:
            ok, reason = seg_usable(frame, seg, now_mono, settings.stale_ms)
        info.seg_drawn, info.seg_reason = ok, reason
        if not ok:
            messages.append((reason, WARN_ORANGE if seg is not None else DIM))
        else:
            labels_s, label_jobs, occupied = _draw_structures(cv, out, layout, seg, state, settings, info)

        # --- target plane, needle, ruler
        plane_px = None
        if assistant_ok and ok:  # guidance planes come from the same segmentation: stale with it
            plane_px = _plane_from_guidance(state.guidance)
        if plane_px is None and ok and state is not None and state.block in BLOCK_PLANES \
                and class_shown("fascia", state):
            plane_px = target_plane_from_labels(seg.labels, *BLOCK_PLANES[state.block])
            if len(plane_px) < 2:
                plane_px = None
        if plane_px is not None and len(plane_px) >= 2 and (state is None or state.overlay_on):
            info.plane_px = plane_px
            sp = layout.image_to_screen(plane_px)
            cv.polylines([sp], (0, 0, 0), 5)
            cv.polylines([sp], PLANE_COLOUR, 2)
            name = BLOCK_NAMES.get(state.block, state.block) if state is not None else ""
            end = sp[np.argmax(sp[:, 0])]
            pbox = cv.text(f"target plane {name}".strip(), (min(end[0] - 150, x0 + w - 190), end[1] + 18),
                           PLANE_COLOUR, 0.45, 1, bg=(0, 0, 0))
            if occupied is not None:  # structure labels keep off the plane's own label
                occupied.rect(pbox)
            # a plane drawn between classes never checked on real scans is unverified too
            info.plane_unverified = bool(state is not None and state.block in BLOCK_PLANES
                                         and any(_unverified(seg, c) for c in BLOCK_PLANES[state.block]))
        tpt = _target_point(state.guidance) if (assistant_ok and ok and state.overlay_on) else None
        if tpt is not None and plane_px is None:
            st_ = layout.image_to_screen(tpt)
            cv.circle(st_, 16, (0, 0, 0), 4)
            cv.circle(st_, 16, PLANE_COLOUR, 2)
            cv.text("target", (st_[0] + 20, st_[1] - 12), PLANE_COLOUR, 0.45, 1, bg=(0, 0, 0))
            if occupied is not None:
                occupied.circle(st_, 22)
        held = _held_from_guidance(state.guidance) if (
            assistant_ok and ok and state.overlay_on and class_shown("vessel", state)) else []
        for poly in held:  # a vessel the mask lost under a still tip: dashed, said so
            sp_h = layout.image_to_screen(poly)
            ring = np.vstack([sp_h, sp_h[:1]])
            cv.polylines(dashed_segments(ring, 8, 6), (0, 0, 0), 4)
            cv.polylines(dashed_segments(ring, 8, 6), COLOURS_BGR["vessel"], 2)
        if held:  # named beside its right edge, clear of the tip that sits on top of it
            pts = np.vstack([layout.image_to_screen(p) for p in held])
            at = (int(pts[:, 0].max()) + 10, int(np.median(pts[:, 1])) + 5)
            hbox = cv.text("artery, not seen now", at, COLOURS_BGR["vessel"], 0.45, 1, bg=(0, 0, 0))
            if occupied is not None:  # structure labels keep off it
                occupied.rect(hbox)
            info.held_drawn = len(held)
        if ok and class_shown("needle", state):
            _draw_needle(cv, layout, frame, seg, state if assistant_ok else None, plane_px, settings, info,
                         occupied)
        if label_jobs:
            # labels last, placed clear of structures, the plane and the needle path
            if info.plane_px is not None:
                occupied.polyline(layout.image_to_screen(info.plane_px))
            occupied.freeze()
            placed: list = []
            for name, text, poly, colour, own in label_jobs:
                box = _place_label(cv, layout, text, poly, occupied, placed, colour, settings, own)
                if box is not None:
                    info.label_boxes[name] = box
                    info.label_texts[name] = text
        _draw_ruler(cv, layout, frame, settings)
    else:
        messages.append(("no image", ALERT_RED))
        cv.text("NO IMAGE", (settings.width_px // 2 - 80, settings.height_px // 2), ALERT_RED, 1.0, 2)

    if not assistant_ok:
        messages.append(("assistant offline: no guidance" if state is not None else "no assistant state yet",
                         WARN_ORANGE if state is not None else DIM))
    _draw_status_strip(cv, settings, state, nodes)
    if cue is None and settings.monitor_cue3d and info.seg_drawn:
        nd = seg.needle if isinstance(seg.needle, dict) else {}
        cue = _monitor_cue(settings, info.to_target_mm if info.needle_drawn else None,
                           _num(nd, "angle_deg"), needle_from_right(nd))
    _draw_panel(cv, settings, seg if info.seg_drawn else None, state, assistant_ok, info, messages, cue)
    _draw_banners(cv, settings, state if assistant_ok else None)
    info.labels_screen = labels_s if track_chrome else None
    info.messages = [m for m, _ in messages]
    return out, info


# ----------------------------------------------------------------------------- structures

def _draw_structures(cv: _Canvas, out: np.ndarray, layout: MonitorLayout, seg: SegResult,
                     state: AssistantState | None, settings: RenderSettings,
                     info: RenderInfo) -> tuple[np.ndarray, list, np.ndarray]:
    """Fills and outlines of every shown class; returns (shown labels on screen, label jobs,
    occupancy 0/1 of the on-screen image used to keep labels off structures)."""
    x0, y0, w, h = layout.rect
    classes = list(seg.classes) if seg.classes else list(CLASSES)
    labels_s = layout.resize_labels(seg.labels)
    nd = seg.needle if isinstance(seg.needle, dict) else {}
    needle_as_line = bool(nd.get("visible")) and nd.get("tip_px") is not None
    # which labels occur (calcHist is ~5x faster than np.bincount here)
    counts = cv2.calcHist([labels_s], [0], None, [256], [0, 256]).ravel()
    colour_lut = np.zeros((256, 1, 3), np.uint8)
    shown_lut = np.zeros(256, np.uint8)  # 1 sure, 2 unsure
    plan = []
    for idx in np.nonzero(counts)[0]:
        if idx == 0 or idx >= len(classes):
            continue
        name = str(classes[idx])
        if (name == "needle" and needle_as_line) or name not in COLOURS_BGR or not class_shown(name, state):
            continue  # a tracked needle is drawn as its shaft, tip and path, not as a blob
        conf = class_confidence(seg, idx)
        # needle pixels the tracker has not confirmed as a shaft (a speck, or the first
        # frames of a needle) are drawn as unsure whatever their probability
        unsure = (conf is None or conf < settings.min_confidence
                  or (name == "needle" and not nd.get("visible")))
        colour_lut[idx, 0] = COLOURS_BGR[name]
        shown_lut[idx] = 2 if unsure else 1
        plan.append((int(idx), name, conf, unsure))
        info.drawn_classes[name] = "unsure" if unsure else "sure"
        if _unverified(seg, name):
            info.unverified_classes.add(name)
    if needle_as_line and class_shown("needle", state) and _unverified(seg, "needle"):
        info.unverified_classes.add("needle")
    kind = cv2.LUT(labels_s, shown_lut)
    # label placement cost per pixel: any structure 1, a small target (nerve, vessel) much
    # more, so a label may sit on a muscle but never on what the needle is aimed at or avoids
    weight_lut = np.where(shown_lut > 0, 1, 0).astype(np.uint8)
    for name in TARGET_CLASSES:
        if name in classes:
            i = classes.index(name)
            weight_lut[i] = LABEL_AVOID_WEIGHT if shown_lut[i] else 0
    small = np.ascontiguousarray(labels_s[::OCC_STEP, ::OCC_STEP])
    occupied = _Occupancy(layout, cv2.LUT(small, weight_lut), small)
    shown_labels = (cv2.bitwise_and(labels_s, labels_s, mask=cv2.inRange(kind, 1, 2))
                    if cv.mask is not None else labels_s)  # only tests look at it
    if not plan:
        return shown_labels, [], occupied

    roi = out[y0:y0 + h, x0:x0 + w]
    sure_px = cv2.inRange(kind, 1, 1)
    unsure_px = cv2.inRange(kind, 2, 2)
    any_unsure = any(p[3] for p in plan)
    fill = sure_px
    if any_unsure:
        hatch = _hatch_mask(h, w, settings.hatch_period_px, settings.hatch_width_px)
        fill = cv2.bitwise_or(sure_px, cv2.bitwise_and(unsure_px, hatch))
    colour_img = cv2.applyColorMap(labels_s, colour_lut)  # 2x faster than LUT on 3 channels
    a = alpha_256(settings.fill_alpha)
    blended = cv2.addWeighted(roi, (256 - a) / 256.0, colour_img, a / 256.0, 0.0)
    cv2.copyTo(blended, fill, roi)

    # Outlines: the inner band (outline_px wide) of each shown class, where a neighbour has
    # another label. It lies inside the mask, so nothing outside a mask is touched, and it
    # costs two morphology passes instead of a findContours + polylines per class.
    k = 2 * settings.outline_px + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    edge = cv2.bitwise_or(cv2.compare(cv2.erode(labels_s, kernel), labels_s, cv2.CMP_NE),
                          cv2.compare(cv2.dilate(labels_s, kernel), labels_s, cv2.CMP_NE))
    outline = cv2.bitwise_and(edge, sure_px)
    if any_unsure:  # dashed outline: the band only on alternate 8x8 blocks
        outline = cv2.bitwise_or(outline, cv2.bitwise_and(cv2.bitwise_and(edge, unsure_px), _dash_mask(h, w)))
    cv2.copyTo(colour_img, outline, roi)

    jobs = []
    small = labels_s[::4, ::4]  # label anchors from a 1/4 grid: plenty for placing text
    for idx, name, conf, unsure in plan:
        pts = cv2.findNonZero(cv2.inRange(small, idx, idx))
        if pts is None:
            continue
        pts = pts.reshape(-1, 2)
        if len(pts) > 600:  # enough points to place a label and aim its leader line
            pts = pts[::len(pts) // 600 + 1]
        pts = pts.astype(np.float64) * 4 + (x0 + 1.5, y0 + 1.5)
        pct = "" if conf is None else f" {conf * 100:.0f}%"
        label = name.replace("_", " ")
        text = f"{label} (unsure{pct})" if unsure else label
        # a big structure (not a target) may hold its own label inside it
        own = idx if name not in TARGET_CLASSES else None
        jobs.append((name, text, pts, COLOURS_BGR[name], own))
    return shown_labels, jobs, occupied


def _unverified(seg: SegResult, name: str) -> bool:
    """A class whose confidence the producer says was not calibrated on real scans: its
    "sure" means only that the model's raw probability was high."""
    return isinstance(seg.calibrated, list) and name not in seg.calibrated


@functools.lru_cache(maxsize=8)
def _dash_mask(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.where(((xx // 8) + (yy // 8)) % 2 == 0, 255, 0).astype(np.uint8)
    m.setflags(write=False)
    return m


OCC_STEP = 4  # label placement looks at structures on a 4x coarser grid: plenty, and cheap


class _Occupancy:
    """Where labels should not go, on a coarse grid of the on-screen image: each cell holds
    a cost (1 for a structure, LABEL_AVOID_WEIGHT for a target, the plane, the needle)."""

    def __init__(self, layout: MonitorLayout, grid: np.ndarray, labels_grid: np.ndarray | None = None):
        self.layout, self.grid, self.integ = layout, grid, None
        self.labels_grid = labels_grid
        self._own: dict[int, np.ndarray] = {}

    def _g(self, p) -> tuple[int, int]:
        return (int(round((float(p[0]) - self.layout.x0) / OCC_STEP)),
                int(round((float(p[1]) - self.layout.y0) / OCC_STEP)))

    def line(self, p0, p1, width_px: int = 9) -> None:
        cv2.line(self.grid, self._g(p0), self._g(p1), LABEL_AVOID_WEIGHT, max(1, width_px // OCC_STEP))

    def polyline(self, pts, width_px: int = 9) -> None:
        g = np.round((np.asarray(pts, np.float64) - (self.layout.x0, self.layout.y0)) / OCC_STEP)
        cv2.polylines(self.grid, [g.astype(np.int32).reshape(-1, 1, 2)], False, LABEL_AVOID_WEIGHT,
                      max(1, width_px // OCC_STEP))

    def rect(self, box, margin_px: int = 4) -> None:
        cv2.rectangle(self.grid, self._g((box[0] - margin_px, box[1] - margin_px)),
                      self._g((box[2] + margin_px, box[3] + margin_px)), LABEL_AVOID_WEIGHT, -1)

    def circle(self, c, r_px: float) -> None:
        cv2.circle(self.grid, self._g(c), max(1, int(r_px / OCC_STEP)), LABEL_AVOID_WEIGHT, -1)

    def freeze(self) -> None:
        self.integ = cv2.integral(self.grid)

    def costs(self, boxes: np.ndarray, own_class: int | None = None) -> np.ndarray:
        """:meth:`cost` of many (K, 4) boxes at once (label placement tries a dozen each)."""
        if self.integ is None:
            self.freeze()
        total = self._sums(self.integ, boxes)
        if own_class is not None and self.labels_grid is not None:
            if own_class not in self._own:
                self._own[own_class] = cv2.integral(cv2.inRange(self.labels_grid, own_class, own_class) // 255)
            total = total - self._sums(self._own[own_class], boxes)
        return np.maximum(total, 0)

    def _sums(self, it: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        # A plain loop: for a dozen boxes numpy's per-call overhead costs more than the work.
        gh, gw = self.grid.shape
        x0, y0 = self.layout.x0, self.layout.y0
        item = it.item
        out = []
        for bx0, by0, bx1, by1 in np.asarray(boxes, np.int64).tolist():
            gx0 = min(max((bx0 - x0) // OCC_STEP, 0), gw)
            gx1 = min(max(-(-(bx1 - x0) // OCC_STEP), 0), gw)
            gy0 = min(max((by0 - y0) // OCC_STEP, 0), gh)
            gy1 = min(max(-(-(by1 - y0) // OCC_STEP), 0), gh)
            if gx1 <= gx0 or gy1 <= gy0:
                out.append(0)
            else:
                out.append(item(gy1, gx1) - item(gy0, gx1) - item(gy1, gx0) + item(gy0, gx0))
        return np.asarray(out, np.int64) * (OCC_STEP * OCC_STEP)


def _place_label(cv: _Canvas, layout: MonitorLayout, text: str, poly: np.ndarray, occupied: "_Occupancy",
                 placed: list, colour, settings: RenderSettings, own_class: int | None = None):
    """Put the label beside the structure where it covers the fewest structure pixels
    (the target must stay visible), with a leader line to the nearest outline point."""
    scale = settings.label_font_scale
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    pad = 3
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    bx, by, bww, bhh = cv2.boundingRect(poly.astype(np.int32))
    cx, cy = bx + bww / 2, by + bhh / 2
    gap = 8
    cands = []
    for dist in (gap, gap + 40):
        cands += [
            (bx + bww + dist, cy - bh / 2),  # right
            (bx - dist - bw, cy - bh / 2),  # left
            (cx - bw / 2, by - dist - bh),  # above
            (cx - bw / 2, by + bhh + dist),  # below
            (bx + bww + dist, by - dist - bh),  # above right
            (bx - dist - bw, by + bhh + dist),  # below left
        ]
    if own_class is not None:  # inside, around the structure's most central point
        m = poly.mean(axis=0)
        c = poly[int(np.argmin(((poly - m) ** 2).sum(axis=1)))]
        cands.append((c[0] - bw / 2, c[1] - bh / 2))
    rx0, ry0, rx1, ry1 = layout.x0, layout.y0, layout.x0 + layout.w, layout.y0 + layout.h
    c = np.asarray(cands, np.float64)
    lx = np.minimum(np.maximum(c[:, 0], rx0 + 2), rx1 - bw - 2).astype(np.int64)
    ly = np.minimum(np.maximum(c[:, 1], ry0 + 2), ry1 - bh - 2).astype(np.int64)
    boxes = np.stack([lx, ly, lx + bw, ly + bh], axis=1)
    cost = occupied.costs(boxes, own_class) * 4 + np.arange(len(boxes))  # order breaks ties
    if placed:
        p = np.asarray(placed, np.int64)
        hit = ~((boxes[:, None, 2] < p[None, :, 0]) | (p[None, :, 2] < boxes[:, None, 0]) |
                (boxes[:, None, 3] < p[None, :, 1]) | (p[None, :, 3] < boxes[:, None, 1]))
        cost = cost + hit.any(axis=1) * 10 ** 9
    best = tuple(int(v) for v in boxes[int(np.argmin(cost))])
    placed.append(best)
    # leader line from the box edge to the nearest outline point
    bcx, bcy = (best[0] + best[2]) / 2, (best[1] + best[3]) / 2
    d2 = (poly[:, 0] - bcx) ** 2 + (poly[:, 1] - bcy) ** 2
    target = poly[int(np.argmin(d2))]
    edge = (min(max(target[0], best[0]), best[2]), min(max(target[1], best[1]), best[3]))
    if math.hypot(edge[0] - target[0], edge[1] - target[1]) > 4:
        cv.line(edge, target, colour, 1)
    cv.rect(best[:2], best[2:], (0, 0, 0))
    cv.rect(best[:2], best[2:], colour, 1)
    cv.text(text, (best[0] + pad, best[3] - pad - base), colour, scale, 1, pad=0)
    return best


# ----------------------------------------------------------------------------- plane, needle, ruler

def _plane_from_guidance(guidance: dict | None) -> np.ndarray | None:
    """``target_plane_px`` polyline, else a horizontal ``target_plane_y_px``; None if neither
    (or malformed: logged and ignored, the renderer must not die on a bad hint)."""
    if not isinstance(guidance, dict):
        return None
    poly = guidance.get("target_plane_px")
    if poly is not None:
        try:
            arr = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if len(arr) >= 2 and np.isfinite(arr).all():
                return arr
        except (TypeError, ValueError):
            pass
        log.warning("guidance.target_plane_px is not a list of (x, y) points: %r", poly)
    y = guidance.get("target_plane_y_px")
    if isinstance(y, (int, float)) and math.isfinite(y):
        span = guidance.get("target_plane_x_px") or (0, 10 ** 5)
        try:
            xa, xb = float(span[0]), float(span[1])
        except (TypeError, ValueError, IndexError):
            xa, xb = 0.0, 1e5
        return np.array([[xa, y], [xb, y]], np.float64)
    return None


def _held_from_guidance(guidance: dict | None) -> list:
    """``held_vessel_px`` outlines (each an (n, 2) array, n >= 3); malformed ones are logged
    and skipped (the renderer must not die on a bad hint)."""
    polys = guidance.get("held_vessel_px") if isinstance(guidance, dict) else None
    out = []
    for poly in polys or ():
        try:
            arr = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            arr = None
        if arr is None or len(arr) < 3 or not np.isfinite(arr).all():
            log.warning("guidance.held_vessel_px holds a bad outline: %r", poly)
            continue
        out.append(arr)
    return out


def _target_point(guidance: dict | None):
    """``target_px`` (x, y) of a perineural block's target, None if absent or malformed."""
    if not isinstance(guidance, dict) or guidance.get("target_px") is None:
        return None
    try:
        x, y = float(guidance["target_px"][0]), float(guidance["target_px"][1])
    except (TypeError, ValueError, IndexError, KeyError):
        log.warning("guidance.target_px is not (x, y): %r", guidance.get("target_px"))
        return None
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def _num(d: dict | None, key: str) -> float | None:
    if not isinstance(d, dict):
        return None
    v = d.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _draw_needle(cv: _Canvas, layout: MonitorLayout, frame: Frame, seg: SegResult,
                 state: AssistantState | None, plane_px, settings: RenderSettings, info: RenderInfo,
                 occupied: "_Occupancy | None" = None):
    nd = seg.needle if isinstance(seg.needle, dict) else {}
    if not nd.get("visible") or nd.get("tip_px") is None:
        if nd and nd.get("frames_missing"):
            x0, y0, w, h = layout.rect
            cv.text(f"needle not seen ({nd['frames_missing']} frames)", (x0 + 8, y0 + h - 10),
                    WARN_ORANGE, 0.5, 1, bg=(0, 0, 0))
        return
    try:
        tip = np.array([float(nd["tip_px"][0]), float(nd["tip_px"][1])])
    except (TypeError, ValueError, IndexError):
        log.warning("needle tip_px is not (x, y): %r", nd.get("tip_px"))
        return
    # shaft direction: from the entry point to the tip, else from the angle (x forward, y down)
    direction = None
    entry = nd.get("entry_px")
    if entry is not None:
        try:
            e = np.array([float(entry[0]), float(entry[1])])
            if np.hypot(*(tip - e)) > 1:
                direction = (tip - e) / np.hypot(*(tip - e))
        except (TypeError, ValueError, IndexError):
            entry = None
    ang = _num(nd, "angle_deg")
    if direction is None and ang is not None:
        direction = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
    sure = float(nd.get("confidence") or 0.0) >= settings.min_confidence
    colour = COLOURS_BGR["needle"]
    st = layout.image_to_screen(tip)
    x0, y0, w, h = layout.rect
    if direction is not None:
        sdir = direction * np.array([layout.w / layout.image_w, layout.h / layout.image_h])
        sdir /= np.hypot(*sdir)
        if entry is not None:
            se = layout.image_to_screen([float(entry[0]), float(entry[1])])
            if sure:
                cv.line(se, st, colour, 2)
            else:
                cv.polylines(dashed_segments([se, st], 10, 6), colour, 2)
        # projected path: from the tip to where it leaves the image (dashed)
        far = st + sdir * 4 * (w + h)
        okc, p0, p1 = cv2.clipLine((x0, y0, w, h), _ipt(st), _ipt(far))
        if okc:
            cv.polylines(dashed_segments([p0, p1], 12, 8), colour, 1)
            if occupied is not None:  # keep structure labels off the path
                occupied.line(p0, p1)
        if entry is not None and occupied is not None:
            occupied.line(se, st)
    info.needle_drawn = True
    cv.circle(st, 7, (0, 0, 0), 3)
    cv.circle(st, 7, colour, 2)
    cv.line(st - (11, 0), st + (11, 0), colour, 1)
    cv.line(st - (0, 11), st + (0, 11), colour, 1)

    g = state.guidance if state is not None else None
    depth = _num(g, "depth_mm")
    if depth is None:
        depth = _num(nd, "depth_mm")
    to_target = _num(g, "to_target_mm")
    est = False
    if to_target is None and plane_px is not None:
        to_target = tip_to_plane_mm(tip, plane_px, frame.spacing_mm)
        est = to_target is not None
    info.to_target_mm = to_target
    parts = []
    if depth is not None:
        parts.append(f"tip {depth:.1f} mm deep")
    if to_target is not None:
        where = "to plane" if to_target >= 0 else "past plane"
        parts.append(f"{abs(to_target):.1f} mm {where}{' (est.)' if est else ''}")
    if not sure:
        parts.append("needle unsure")
    if parts:
        text = ", ".join(parts)
        (tw, _), _ = cv2.getTextSize(text, FONT, 0.5, 1)
        tx = st[0] + 14 if st[0] + 14 + tw < x0 + w else st[0] - 14 - tw
        ty = st[1] - 14 if st[1] - 30 > y0 else st[1] + 28
        box = cv.text(text, (tx, ty), colour, 0.5, 1, bg=(0, 0, 0))
        if occupied is not None:  # structure labels keep off this text
            occupied.rect(box)


def _draw_ruler(cv: _Canvas, layout: MonitorLayout, frame: Frame, settings: RenderSettings):
    """Depth in mm down the left edge of the image, from the pixel spacing."""
    x0, y0, w, h = layout.rect
    depth = min(frame.depth_mm, frame.image.shape[0] * frame.spacing_mm)
    xr = x0 - 6
    cv.line((xr, y0), (xr, layout.mm_to_screen_y(depth, frame.spacing_mm)), TEXT, 1, aa=False)
    step = settings.ruler_minor_mm
    # thin out the numbers if ticks would be closer than 14 px
    px_per_mm = layout.scale / frame.spacing_mm
    while step * px_per_mm < 7:
        step *= 2
    n = int(math.floor(depth / step + 1e-9))
    for i in range(n + 1):
        mm = i * step
        y = layout.mm_to_screen_y(mm, frame.spacing_mm) if mm > 0 else y0
        major = i % 2 == 0
        cv.line((xr - (12 if major else 6), y), (xr, y), TEXT, 1, aa=False)
        if major and mm > 0:
            cv.text(f"{mm:g}", (xr - 44, y + 5), TEXT, 0.4, 1, pad=1)
    cv.text("mm", (xr - 40, y0 + 12), DIM, 0.4, 1, pad=1)


# ----------------------------------------------------------------------------- chrome

def _draw_status_strip(cv: _Canvas, settings: RenderSettings, state: AssistantState | None, nodes: dict):
    W = settings.width_px
    cv.rect((0, 0), (W - 1, STATUS_H - 1), (0, 0, 0))
    x = 8
    for name in sorted(nodes):
        st = str(nodes[name]).lower()
        off = st in OFFLINE_STATES
        col = ALERT_RED if off else (OK_GREEN if st in ("online", "restarted") else WARN_ORANGE)
        cv.circle((x + 5, 15), 5, col, -1)
        box = cv.text(f"{name}{' OFF' if off else ''}", (x + 14, 20), TEXT if not off else ALERT_RED, 0.42, 1, pad=1)
        x = box[2] + 12
    flags = []
    if state is not None:
        if state.recording:
            flags.append(("REC", ALERT_RED))
        if state.frozen:
            flags.append(("FROZEN", INFO_BLUE))
        if state.muted:
            flags.append(("MUTED", WARN_ORANGE))
    label = NOT_FOR_CLINICAL_USE.upper()
    (tw, _), _ = cv2.getTextSize(label, FONT, 0.55, 2)
    xr = W - tw - 10
    for text, col in reversed(flags):
        (fw, _), _ = cv2.getTextSize(text, FONT, 0.5, 2)
        xr -= fw + 30
        if text == "REC":
            cv.circle((xr + 2, 15), 6, col, -1)
        cv.text(text, (xr + 12, 21), TEXT, 0.5, 2, bg=col if text != "REC" else None, pad=2)
    cv.text(label, (W - tw - 10, 21), (0, 200, 255), 0.55, 2)


def _draw_panel(cv: _Canvas, settings: RenderSettings, seg: SegResult | None, state: AssistantState | None,
                assistant_ok: bool, info: RenderInfo, messages: list, cue=None):
    W, H = settings.width_px, settings.height_px
    px = W - PANEL_W
    cv.rect((px, STATUS_H), (W - 1, H - BOTTOM_H - 1), PANEL_BG)
    y = STATUS_H + 22
    block = BLOCK_NAMES.get(state.block, state.block) if state is not None else "-"
    cv.text(f"block: {block}", (px + 10, y), TEXT, 0.55, 1)
    y += 26
    # why something is not drawn: first, where the eye goes
    for text, col in messages[:3]:
        cv.text(_clip_text(text, PANEL_W - 24, 0.55), (px + 12, y + 2), (0, 0, 0), 0.55, 1, bg=col, pad=5)
        y += 30
    # quality gauge
    q = state.quality if (state is not None and assistant_ok) else None
    cv.text("image quality", (px + 10, y), DIM, 0.45, 1)
    y += 8
    gx0, gx1 = px + 10, W - 60
    cv.rect((gx0, y), (gx1, y + 14), (70, 70, 70))
    if isinstance(q, (int, float)) and math.isfinite(q):
        qv = float(np.clip(q, 0, 100))
        col = ALERT_RED if qv < 40 else (WARN_ORANGE if qv < 70 else OK_GREEN)
        cv.rect((gx0, y), (gx0 + int((gx1 - gx0) * qv / 100), y + 14), col)
        cv.text(f"{qv:.0f}", (gx1 + 8, y + 12), TEXT, 0.5, 1)
        if state.quality_reason:
            cv.text(_clip_text(state.quality_reason, PANEL_W - 20, 0.42), (px + 10, y + 32), TEXT, 0.42, 1)
    else:
        cv.text("--", (gx1 + 8, y + 12), DIM, 0.5, 1)
    y += 54
    # legend: every class with its colour, shown / hidden / unsure
    cv.text("legend", (px + 10, y), DIM, 0.45, 1)
    y += 6
    for name in CLASSES[1:]:
        if name not in COLOURS_BGR:
            continue
        shown = class_shown(name, state)
        drawn = info.drawn_classes.get(name) or ("sure" if name == "needle" and info.needle_drawn else None)
        col = COLOURS_BGR[name]
        cv.rect((px + 10, y + 4), (px + 26, y + 16), col if shown else (70, 70, 70))
        if drawn == "unsure":
            for k in range(0, 16, 5):
                cv.line((px + 10 + k, y + 16), (px + 10 + min(k + 8, 16), y + 8), PANEL_BG, 2, aa=False)
        status = "hidden" if not shown else ("unsure" if drawn == "unsure" else
                                             ("unverified" if name in info.unverified_classes else
                                              ("" if drawn or not info.seg_drawn else "not seen")))
        info.legend[name] = status
        cv.text(f"{name.replace('_', ' ')}" + (f"  ({status})" if status else ""),
                (px + 34, y + 15), TEXT if shown else DIM, 0.45, 1, pad=1)
        y += 20
    cv.line((px + 10, y + 10), (px + 26, y + 10), PLANE_COLOUR, 2, aa=False)
    cv.text("target plane" + ("  (unverified)" if info.plane_unverified else ""), (px + 34, y + 15),
            TEXT, 0.45, 1, pad=1)
    if info.unverified_classes or info.plane_unverified:
        y += 20
        cv.text(_clip_text("unverified: never checked on real scans", PANEL_W - 20, 0.42),
                (px + 10, y + 15), DIM, 0.42, 1)
    y += 44
    # guidance numbers: computed from the segmentation, so hidden with it
    if state is not None and assistant_ok and info.seg_drawn:
        info.guidance_shown = True
        g = state.guidance if isinstance(state.guidance, dict) else {}
        depth = _num(g, "depth_mm")
        tt = _num(g, "to_target_mm")
        if tt is None:
            tt = info.to_target_mm
        if depth is not None:
            cv.text(f"needle depth {depth:.1f} mm", (px + 10, y), TEXT, 0.5, 1)
            y += 20
        if tt is not None:
            cv.text(f"to target {tt:+.1f} mm", (px + 10, y), TEXT, 0.5, 1)
            y += 20
        nd = g.get("nearest_danger")
        if isinstance(nd, dict) and _num(nd, "distance_mm") is not None:
            dmm = _num(nd, "distance_mm")
            cv.text(f"nearest {nd.get('name', 'danger')}: {dmm:.1f} mm", (px + 10, y),
                    ALERT_RED if dmm < 5 else TEXT, 0.5, 1)
            y += 20
        if state.last_heard:
            cv.text(_clip_text(f'heard: "{state.last_heard}"', PANEL_W - 20, 0.42), (px + 10, y), DIM, 0.42, 1)
            y += 20
    info.panel_text_bottom = y - 14  # y is the next line's baseline; descenders reach ~6 px
    cue_y = None
    if cue is not None:
        img, alpha = cue
        # the cue sits above the confirmation box, but never over the panel's text (a
        # message or two push the numbers down): it shrinks into the room left, and is
        # left out below MIN_CUE_PX (the numbers say the same: depth, distance to target)
        bottom = H - BOTTOM_H - 66
        room = bottom - info.panel_text_bottom - 6
        if img.shape[0] > room:
            if room < MIN_CUE_PX:
                img = None
            else:
                f = room / img.shape[0]
                size = (max(1, int(img.shape[1] * f)), room)
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    if cue is not None and img is not None:
        cue_y = bottom - img.shape[0]
        cx = px + (PANEL_W - img.shape[1]) // 2
        info.cue_rect = (cx, cue_y, img.shape[1], img.shape[0])
        from ar.cue3d import composite  # numpy only; open3d is not imported by this

        composite(cv.img, img, alpha, cx, cue_y, opacity=1.0)
        if cv.mask is not None:
            cv.mask[cue_y:cue_y + img.shape[0], cx:cx + img.shape[1]] = 255
    # pending confirmation: a big box at the panel's bottom
    if state is not None and assistant_ok and state.pending_confirmation:
        yb = H - BOTTOM_H - 58
        cv.rect((px + 6, yb), (W - 7, yb + 50), WARN_ORANGE)
        info.confirm = str(state.pending_confirmation)
        header, question = confirm_lines(info.confirm)
        cv.text(_clip_text(header, PANEL_W - 30, 0.5), (px + 14, yb + 20), (0, 0, 0), 0.5, 1)
        cv.text(_clip_text(question, PANEL_W - 30, 0.55), (px + 14, yb + 42), (0, 0, 0), 0.55, 2)
    # a short-lived notice in the same place ("not understood: say again"): the spoken
    # answer can be lost in a noisy room, so the screen says it too
    elif state is not None and assistant_ok and state.notice:
        yb = H - BOTTOM_H - 58
        info.notice = str(state.notice)
        first, _, rest = info.notice.partition(":")
        cv.rect((px + 6, yb), (W - 7, yb + 50), TEXT)
        cv.text(_clip_text(first.strip() + (":" if rest else ""), PANEL_W - 30, 0.5),
                (px + 14, yb + 20), (0, 0, 0), 0.5, 1)
        if rest.strip():
            cv.text(_clip_text(rest.strip(), PANEL_W - 30, 0.55), (px + 14, yb + 42),
                    (0, 0, 0), 0.55, 2)


def _draw_banners(cv: _Canvas, settings: RenderSettings, state: AssistantState | None):
    W, H = settings.width_px, settings.height_px
    y = H - BOTTOM_H
    cv.rect((0, y), (W - 1, H - 1), (0, 0, 0))
    alerts = []
    if state is not None and isinstance(state.alerts, list):
        for a in state.alerts:
            if isinstance(a, dict) and a.get("text"):
                lvl = str(a.get("level", "info")).lower()
                alerts.append((LEVEL_RANK.get(lvl, 2), lvl, str(a["text"])))
    alerts.sort(key=lambda t: t[0])  # stable: most severe first, then in order given
    for i, (_, lvl, text) in enumerate(alerts[:2]):
        yb = y + i * BANNER_H
        col = LEVEL_COLOURS.get(lvl, INFO_BLUE)
        cv.rect((0, yb + 1), (W - 1, yb + BANNER_H - 2), col)
        cv.text(_clip_text(f"{lvl.upper()}: {text}", W - 20, 0.6), (10, yb + 20),
                (255, 255, 255) if lvl != "warning" else (0, 0, 0), 0.6, 2, pad=1)
    if len(alerts) > 2:
        cv.text(f"+{len(alerts) - 2} more", (W - 110, H - 8), TEXT, 0.5, 1)


def _clip_text(text: str, max_w: int, scale: float) -> str:
    if cv2.getTextSize(text, FONT, scale, 1)[0][0] <= max_w:
        return text
    while text and cv2.getTextSize(text + "...", FONT, scale, 1)[0][0] > max_w:
        text = text[:-1]
    return text + "..."
