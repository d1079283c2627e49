"""The head-mounted view: hand tracking on real photos, the panel anchor, the eyes."""
from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ar.hmd import (AnchorState, Hand, HandTracker, HmdView, choose_probe_hand, compose_stereo, compose_view,
                    corner_anchor, fit_scene, make_panel, open_scene, panel_target, update_anchor)
from ar.overlay import render_monitor_info
from ar.settings import HmdSettings, RenderSettings
from ar.testframes import synthetic_scene

HANDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hands"
S = HmdSettings(smoothing_tau_s=0.15, dead_zone_px=12.0, hand_timeout_s=0.7)
CORNER = (780.0, 16.0)


def _protobuf_ok() -> tuple[bool, str]:
    import google.protobuf as pb

    ok = int(pb.__version__.split(".")[0]) < 5
    return ok, (f"mediapipe 0.10.14 needs protobuf<5 but this environment has {pb.__version__} "
                "(pulled by the train extra's onnx): hand tracking cannot run here")


def _voc_box(jpg: Path) -> tuple[int, int, int, int]:
    xml = jpg.with_suffix(".xml").read_text()
    return tuple(int(re.search(f"<{k}>(\\d+)</{k}>", xml).group(1)) for k in ("xmin", "ymin", "xmax", "ymax"))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ----------------------------------------------------------------------------- pure anchor

def test_anchor_follows_a_step_smoothly_and_frame_rate_independently():
    st = update_anchor(None, (100.0, 100.0), 0.0, S, CORNER)
    assert (st.x, st.y) == (100.0, 100.0) and st.on_hand
    # the hand jumps 200 px right: after one time constant the panel has gone 1 - 1/e of the way
    one = update_anchor(st, (300.0, 100.0), S.smoothing_tau_s, S, CORNER)
    assert one.x == pytest.approx(100 + 200 * (1 - math.exp(-1)))
    # the same time in ten small steps lands in the same place (no frame-rate dependence)
    many = st
    for i in range(1, 11):
        many = update_anchor(many, (300.0, 100.0), S.smoothing_tau_s * i / 10, S, CORNER)
    assert many.x == pytest.approx(one.x, abs=1e-6)
    # and it settles on the target, then stops moving
    t = S.smoothing_tau_s
    while many.moving and t < 5:
        t += 1 / 30
        many = update_anchor(many, (300.0, 100.0), t, S, CORNER)
    assert not many.moving and (many.x, many.y) == (300.0, 100.0)


def test_dead_zone_ignores_tremor():
    st = AnchorState(200.0, 200.0, 0.0, 0.0)
    rng = np.random.default_rng(1)
    for i in range(1, 60):
        jitter = rng.uniform(-8, 8, 2)  # under the 12 px dead zone
        st = update_anchor(st, (200.0 + jitter[0], 200.0 + jitter[1]), i / 30, S, CORNER)
        assert (st.x, st.y) == (200.0, 200.0)
    st = update_anchor(st, (240.0, 200.0), 2.1, S, CORNER)  # a real move
    assert st.x > 200.0 and st.moving


def test_lost_hand_holds_then_goes_to_the_corner():
    st = update_anchor(None, (100.0, 300.0), 0.0, S, CORNER)
    st = update_anchor(st, None, 0.5, S, CORNER)  # lost briefly: stays
    assert (st.x, st.y) == (100.0, 300.0) and st.on_hand
    st = update_anchor(st, None, 0.8, S, CORNER)  # past the timeout: heads for the corner
    assert not st.on_hand and st.x > 100.0 and st.y < 300.0
    t = 0.8
    while st.moving:
        t += 1 / 30
        st = update_anchor(st, None, t, S, CORNER)
    assert (st.x, st.y) == CORNER
    assert update_anchor(None, None, 0.0, S, CORNER).x == CORNER[0]


def test_panel_target_is_beside_the_hand_and_inside_the_frame():
    frame = (1280, 720)
    panel = (480, 300)
    hand = (300, 200, 450, 500)
    x, y = panel_target(hand, panel, frame, 24)
    assert x == 450 + 24 and y == pytest.approx(350 - 150)  # to the right, centred
    x, y = panel_target((1000, 200, 1200, 500), panel, frame, 24)
    assert x + panel[0] <= 1000 - 24 + 1e-9  # no room right: to the left, not over the hand
    x, y = panel_target((500, 650, 600, 720), panel, frame, 24)
    assert 0 <= y <= frame[1] - panel[1]  # clamped into the frame


def test_choose_probe_hand():
    small = Hand("left", 0.9, np.array([[0, 0], [10, 10]], float))
    big = Hand("right", 0.8, np.array([[0, 0], [100, 100]], float))
    assert choose_probe_hand([small, big], "any") is big
    assert choose_probe_hand([small, big], "left") is small
    assert choose_probe_hand([small], "right") is small  # the named hand unseen: the one there is
    assert choose_probe_hand([], "any") is None


# ----------------------------------------------------------------------------- drawing

def _panel() -> np.ndarray:
    frame, seg, state = synthetic_scene()
    mon, info = render_monitor_info(frame, seg, state, 100.05, RenderSettings())
    return make_panel(mon, info.layout.rect, 400, "tip 13.7 mm")


def test_panel_and_eyes_put_the_panel_where_the_anchor_says():
    panel = _panel()
    assert panel.shape[1] == 400
    hdr = panel[:22].astype(int)  # NOT FOR CLINICAL USE in orange-yellow (anti-aliased)
    assert ((hdr[..., 2] > 200) & (hdr[..., 1] > 140) & (hdr[..., 0] < 80)).sum() > 50
    scene = fit_scene(np.full((480, 640, 3), 90, np.uint8), S)
    assert scene.shape == (720, 1280, 3)
    view = compose_view(scene, panel, (123.4, 56.6))
    assert np.array_equal(view[57:57 + panel.shape[0], 123:123 + 400], panel)
    stereo = compose_stereo(scene, panel, (300, 100), 12)
    assert stereo.shape == (720, 2560, 3)
    left, right = stereo[:, :1280], stereo[:, 1280:]
    assert np.array_equal(left[100:100 + panel.shape[0], 306:706], panel)
    assert np.array_equal(right[100:100 + panel.shape[0], 294:694], panel)
    assert (left[400:, 900:] == 90).all() and (right[400:, 900:] == 90).all()  # scene the same


def test_the_panel_says_what_the_legend_doubts_under_the_image():
    """The head-mounted panel has no legend: its footer carries the legend's doubts."""
    import dataclasses

    from ar.overlay import doubt_line

    frame, seg, state = synthetic_scene(confidence={"vessel": 0.2})  # vessel drawn unsure
    seg = dataclasses.replace(seg, calibrated=["nerve", "vessel", "fascia"])
    mon, info = render_monitor_info(frame, seg, state, 100.05, RenderSettings())
    line = doubt_line(info)
    assert line.startswith("unsure: vessel  |  unverified: muscles")
    assert "pleura" in line and line.endswith(", plane")  # PECS II's plane lies between muscles
    plain = make_panel(mon, info.layout.rect, 400, "pecs2")
    panel = make_panel(mon, info.layout.rect, 400, "pecs2", line)
    assert panel.shape[0] > plain.shape[0] and panel.shape[1] == 400
    assert np.array_equal(panel[:plain.shape[0] - 2, 2:-2], plain[:plain.shape[0] - 2, 2:-2])
    foot = panel[plain.shape[0]:].astype(int)  # amber words below the image
    assert ((foot[..., 2] > 200) & (foot[..., 1] > 140) & (foot[..., 0] < 80)).sum() > 100
    narrow = make_panel(mon, info.layout.rect, 240, "", line)  # wraps: more lines, none cut
    assert narrow.shape[0] - make_panel(mon, info.layout.rect, 240).shape[0] > \
        panel.shape[0] - plain.shape[0]
    # no claim from the producer, nothing unsure: nothing to say, no footer
    frame, seg, state = synthetic_scene()
    _, info = render_monitor_info(frame, seg, state, 100.05, RenderSettings())
    assert doubt_line(info) == ""


def test_the_panel_shows_a_waiting_question_or_a_notice_under_its_header():
    """No side panel in the head-mounted view: the monitor's prompt box comes as a band."""
    import dataclasses

    from ar.hmd import CONFIRM_BGR, HEADER_H, NOTICE_BGR, PROMPT_H
    from ar.overlay import panel_prompt

    frame, seg, state = synthetic_scene()
    mon, info = render_monitor_info(frame, seg, state, 100.05, RenderSettings())
    assert panel_prompt(info) == ("", False)
    plain = make_panel(mon, info.layout.rect, 400, "pecs2")
    for change, text, confirm, colour in (
            ({"notice": "not understood: say again"}, "not understood: say again", False, NOTICE_BGR),
            ({"notice": "not understood: say again", "pending_confirmation": "stop recording? say yes or no"},
             'say "yes" to confirm: stop recording?', True, CONFIRM_BGR)):
        mon, info = render_monitor_info(frame, seg, dataclasses.replace(state, **change), 100.05,
                                        RenderSettings())
        assert panel_prompt(info) == (text, confirm)  # the question wins, as on the monitor
        panel = make_panel(mon, info.layout.rect, 400, "pecs2", "", *panel_prompt(info))
        assert panel.shape[0] == plain.shape[0] + PROMPT_H
        band = panel[HEADER_H:HEADER_H + PROMPT_H, 2:-2]
        assert (band == colour).all(axis=2).mean() > 0.7  # the band's colour ...
        assert (band == 0).all(axis=2).sum() > 50  # ... with black words on it
        # the image itself is unchanged, moved down by the band
        assert np.array_equal(panel[HEADER_H + PROMPT_H:-2, 2:-2], plain[HEADER_H:-2, 2:-2])


def test_bad_scene_input_is_named():
    with pytest.raises(ValueError, match="hmd.scene is empty"):
        open_scene("")
    with pytest.raises(ValueError, match="cannot open video file"):
        open_scene("/nonexistent/scene.mp4")
    with pytest.raises(ValueError, match="uint8"):
        fit_scene(np.zeros((10, 10), np.float32), S)


# ----------------------------------------------------------------------------- real hands

@pytest.mark.skipif(not HANDS.is_dir(), reason="../shared/data/hands not present")
def test_mediapipe_finds_real_hands_and_the_panel_follows():
    ok, why = _protobuf_ok()
    if not ok:
        pytest.skip(why)
    photos = sorted(HANDS.glob("*.jpg"))[:4]
    tracker = HandTracker(S, static_images=True)
    try:
        found = 0
        for jpg in photos:
            hands = tracker.detect(cv2.imread(str(jpg)))
            if hands:
                best = max(_iou(h.bbox, _voc_box(jpg)) for h in hands)
                assert best > 0.4, (jpg.name, best)
                found += 1
        assert found >= 3, f"mediapipe found hands in only {found} of {len(photos)} photos"

        # the panel follows the hand in the scene: photo A for 1 s, then photo B, then no hand
        view = HmdView(S, tracker=tracker, background=False)  # deterministic here; the thread is tested below
        mon = np.full((720, 1280, 3), 60, np.uint8)
        a, b = cv2.imread(str(photos[0])), cv2.imread(str(photos[-1]))
        sx, sy = S.width_px / a.shape[1], S.height_px / a.shape[0]
        t = 0.0
        for _ in range(30):
            out = view.step(a, mon, (0, 0, 1280, 720), t, to_target_mm=5.0, show_cue=False)
            t += 1 / 30
        hand = choose_probe_hand(out.hands, S.probe_hand)
        x0, y0, x1, y1 = hand.bbox[0] * sx, hand.bbox[1] * sy, hand.bbox[2] * sx, hand.bbox[3] * sy
        pw, ph = S.panel_width_px, int(round(720 * S.panel_width_px / 1280)) + 22
        goal = panel_target((x0, y0, x1, y1), (pw, ph), (S.width_px, S.height_px), S.panel_gap_px)
        assert math.hypot(out.anchor.x - goal[0], out.anchor.y - goal[1]) < 2.0
        # beside the hand, not over it
        assert out.anchor.x >= x1 or out.anchor.x + pw <= x0
        ca = (out.anchor.x, out.anchor.y)
        for _ in range(30):
            out = view.step(b, mon, (0, 0, 1280, 720), t, show_cue=False)
            t += 1 / 30
        assert math.hypot(out.anchor.x - ca[0], out.anchor.y - ca[1]) > 20  # it moved to the new hand
        blank = np.zeros_like(a)
        for _ in range(60):
            out = view.step(blank, mon, (0, 0, 1280, 720), t, show_cue=False)
            t += 1 / 30
        assert not out.hands and not out.anchor.on_hand
        assert (out.anchor.x, out.anchor.y) == corner_anchor((pw, ph), (S.width_px, S.height_px))
        assert out.stereo.shape == (720, 2560, 3) and out.track_ms > 0
    finally:
        tracker.close()


class _ScriptedTracker:
    """Stands in for mediapipe: returns the hand the test places (the real one is tested above)."""

    def __init__(self):
        self.hands: list[Hand] = []
        self.calls = 0

    def detect(self, bgr):
        self.calls += 1
        return list(self.hands)

    def close(self):
        pass


def _hand_at(x: float, y: float) -> Hand:
    pts = np.array([[x, y], [x + 80, y + 120], [x - 40, y + 100], [x + 20, y - 60]], float)
    return Hand("right", 0.95, pts)


def test_hmd_view_follows_a_moving_hand_and_tracks_every_nth_frame():
    tr = _ScriptedTracker()
    s = HmdSettings(track_every_frames=2, stereo=True)
    view = HmdView(s, tracker=tr, cue_renderer=None, background=False)
    scene = np.full((720, 1280, 3), 80, np.uint8)
    mon = np.full((720, 1280, 3), 40, np.uint8)
    t = 0.0
    tr.hands = [_hand_at(200, 300)]
    for _ in range(40):
        out = view.step(scene, mon, (0, 0, 1280, 720), t, show_cue=False)
        t += 1 / 30
    assert tr.calls == 20  # every second frame
    first = (out.anchor.x, out.anchor.y)
    assert out.anchor.on_hand and first[0] >= 280 + s.panel_gap_px - 1  # right of the hand
    tr.hands = [_hand_at(700, 200)]  # the hand moves right: no room right of it, panel goes left
    for _ in range(40):
        out = view.step(scene, mon, (0, 0, 1280, 720), t, show_cue=False)
        t += 1 / 30
    assert out.anchor.x + s.panel_width_px <= 660 - s.panel_gap_px + 1
    assert out.stereo.shape == (720, 2560, 3) and np.shares_memory(out.mono, out.stereo)
    tr.hands = []
    for _ in range(60):
        out = view.step(scene, mon, (0, 0, 1280, 720), t, show_cue=False)
        t += 1 / 30
    assert not out.anchor.on_hand and out.anchor.x == 1280 - s.panel_width_px - 16 and out.anchor.y == 16


def test_background_tracking_uses_the_newest_result_and_reports_failures():
    from ar.hmd import BackgroundTracker
    tr = _ScriptedTracker()
    view = HmdView(HmdSettings(track_every_frames=1), tracker=tr, background=True)
    scene = np.full((720, 1280, 3), 80, np.uint8)
    mon = np.full((720, 1280, 3), 40, np.uint8)
    try:
        tr.hands = [_hand_at(200, 300)]
        out = view.step(scene, mon, (0, 0, 1280, 720), 0.0, show_cue=False)
        assert out.stereo.shape == (720, 2560, 3)  # the step did not wait for the tracker
        assert view.background.wait_for_result(0, timeout_s=5.0)
        out = view.step(scene, mon, (0, 0, 1280, 720), 0.1, show_cue=False)
        assert len(out.hands) == 1 and out.anchor.on_hand
    finally:
        view.close()
    assert not view.background._thread.is_alive()

    class Failing(_ScriptedTracker):
        def detect(self, bgr):
            raise ValueError("camera frame unreadable")

    bt = BackgroundTracker(Failing())
    try:
        bt.submit(scene)
        assert bt.wait_for_result(0, timeout_s=5.0)
        with pytest.raises(RuntimeError, match="hand tracking failed: camera frame unreadable"):
            bt.latest()
    finally:
        bt.close()


def test_prepare_draws_the_first_cue_before_the_loop():
    """prepare() (before the renderer says it is ready) draws one cue, so open3d's import
    and first ray cast (about 1 s) are not paid inside the loop on the first head-mounted
    frame, where the launcher killed the renderer for missed heartbeats; that cue ("no
    needle") is then served from the cache."""
    from ar.cue3d import CueRenderer

    class Tracker:  # no hand model to load here
        def detect(self, img):
            return []

    cue = CueRenderer(64)
    view = HmdView(HmdSettings(), tracker=Tracker(), cue_renderer=cue, background=False)
    assert cue._picture.cache_info().currsize == 0
    view.prepare()
    assert cue._picture.cache_info().currsize == 1
    img, alpha = cue.render(None)
    assert cue._captioned.cache_info().hits == 1 and img.shape == (64, 64, 3) and alpha.any()
