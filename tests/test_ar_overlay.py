"""The monitor view: overlay pixels against the masks, staleness, unsure classes, chrome."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ar.overlay import (ALERT_RED, MonitorLayout, dashed_segments, monitor_layout, render_monitor,
                        render_monitor_info, seg_usable)
from ar.plane import target_plane_from_labels, tip_to_plane_mm
from ar.settings import RenderSettings
from ar.testframes import synthetic_scene
from assistant.messages import needle_dict
from models.classes import CLASS_INDEX, CLASSES, COLOURS_BGR

S = RenderSettings()
NOW = 100.05  # synthetic_scene's frame is at t_mono 100.0: 50 ms old


def _expected_blend(base: np.ndarray, colour, alpha: float) -> np.ndarray:
    """Independent reference: integer alpha A/256, round half to even."""
    a = int(round(alpha * 256))
    num = base.astype(np.int64) * (256 - a) + np.asarray(colour, np.int64) * a
    return np.rint(num / 256.0).astype(np.uint8)


def _screen_labels(layout: MonitorLayout, labels: np.ndarray) -> np.ndarray:
    """Labels on screen gathered here through the layout's index arrays, after checking those
    are the nearest pixel centres (to within float rounding at exact ties)."""
    ih, iw = labels.shape
    ideal_x = (np.arange(layout.w) + 0.5) * iw / layout.w - 0.5
    ideal_y = (np.arange(layout.h) + 0.5) * ih / layout.h - 0.5
    assert np.abs(layout.src_x - ideal_x).max() <= 0.5 + 1e-6
    assert np.abs(layout.src_y - ideal_y).max() <= 0.5 + 1e-6
    return labels[layout.src_y[:, None], layout.src_x[None, :]]


def _interior(lab: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood all carry their own label (away from outlines)."""
    h, w = lab.shape
    pad = np.pad(lab, r, mode="edge")
    same = np.ones_like(lab, bool)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            same &= pad[r + dy:r + dy + h, r + dx:r + dx + w] == lab
    return same


def _rect(img, layout):
    x0, y0, w, h = layout.rect
    return img[y0:y0 + h, x0:x0 + w]


def _base(frame, seg, state):
    """The same screen with every overlay switched off by voice."""
    off = dataclasses.replace(state, overlay_on=False)
    return render_monitor_info(frame, seg, off, NOW, S, track_chrome=True)


def test_fill_matches_mask_exactly_and_outside_is_unchanged():
    frame, seg, state = synthetic_scene()
    out, info = render_monitor_info(frame, seg, state, NOW, S, track_chrome=True)
    base, binfo = _base(frame, seg, state)
    assert out.shape == (S.height_px, S.width_px, 3) and out.dtype == np.uint8
    assert info.seg_drawn and binfo.layout == info.layout
    layout = info.layout
    lab = _screen_labels(layout, seg.labels)
    # the layout's own resampling is the pixel-centre nearest one
    assert np.array_equal(layout.resize_labels(seg.labels), lab)
    o, b = _rect(out, layout), _rect(base, layout)
    chrome = _rect(info.chrome_mask, layout) > 0
    assert not _rect(binfo.chrome_mask, layout).any(), "overlay off must leave the image bare"
    assert np.array_equal(b, layout.resize_image(frame.image))
    inner = _interior(lab, S.outline_px) & ~chrome
    checked = 0
    for name in ("pec_major", "pec_minor", "serratus", "vessel", "nerve", "bone"):
        idx = CLASS_INDEX[name]
        m = (lab == idx) & inner
        # the test must see most of each structure, or it proves nothing
        assert m.sum() > 0.6 * (lab == idx).sum(), name
        exp = _expected_blend(b[m], COLOURS_BGR[name], S.fill_alpha)
        assert np.array_equal(o[m], exp), f"{name}: fill differs from the alpha blend"
        checked += m.sum()
    assert checked > 100_000
    # outside every mask (background and the needle, drawn as a line) nothing changes but chrome
    outside = ((lab == 0) | (lab == CLASS_INDEX["needle"])) & ~chrome
    assert outside.sum() > 0.5 * ((lab == 0) | (lab == CLASS_INDEX["needle"])).sum()
    assert np.array_equal(o[outside], b[outside])
    # outline: the band next to a boundary carries the class colour itself
    edge = (lab == CLASS_INDEX["vessel"]) & ~_interior(lab, 1) & ~chrome
    assert edge.sum() > 20
    assert (o[edge] == COLOURS_BGR["vessel"]).all(axis=1).mean() > 0.95


def test_hidden_layer_and_overlay_off():
    frame, seg, state = synthetic_scene()
    hide = dataclasses.replace(state, layers={**state.layers, "muscle": False})
    out, info = render_monitor_info(frame, seg, hide, NOW, S, track_chrome=True)
    base, _ = _base(frame, seg, state)
    layout = info.layout
    lab = _screen_labels(layout, seg.labels)
    chrome = _rect(info.chrome_mask, layout) > 0
    o, b = _rect(out, layout), _rect(base, layout)
    for name in ("pec_major", "pec_minor", "serratus"):
        m = (lab == CLASS_INDEX[name]) & ~chrome
        assert m.sum() > 1000 and np.array_equal(o[m], b[m]), f"{name} drawn though muscle hidden"
        assert name not in info.drawn_classes
    m = (lab == CLASS_INDEX["vessel"]) & _interior(lab, S.outline_px) & ~chrome
    assert np.array_equal(o[m], _expected_blend(b[m], COLOURS_BGR["vessel"], S.fill_alpha))
    # overlay off: the whole image area is the bare image
    off = dataclasses.replace(state, overlay_on=False)
    out2 = render_monitor(frame, seg, off, NOW, S)
    assert np.array_equal(_rect(out2, layout), layout.resize_image(frame.image))


def test_classes_not_calibrated_on_real_scans_are_unverified_in_the_legend():
    # the segmenter names the classes whose confidence was calibrated on real scans; the
    # muscles, bone, pleura and needle were checked against nothing real: their "sure" means
    # only a high raw probability, and the legend says so
    frame, seg, state = synthetic_scene()
    seg = dataclasses.replace(seg, calibrated=["nerve", "vessel", "fascia"])
    _, info = render_monitor_info(frame, seg, state, NOW, S)
    drawn = set(info.drawn_classes) | ({"needle"} if info.needle_drawn else set())
    assert {"pec_major", "pec_minor", "serratus", "pleura", "needle", "vessel", "nerve"} <= drawn
    assert info.unverified_classes == drawn - {"nerve", "vessel", "fascia"}
    for name in drawn - {"nerve", "vessel", "fascia"}:
        assert info.legend[name] == "unverified", name
    assert info.legend["vessel"] == "" and info.legend["nerve"] == ""
    # the PECS II plane lies between pec minor and serratus: unverified with them
    assert info.plane_px is not None and info.plane_unverified
    # unsure wins over unverified; hidden over both
    low = dataclasses.replace(seg, confidence=[c * (0.3 if i == CLASS_INDEX["pleura"] else 1)
                                               for i, c in enumerate(seg.confidence)])
    hidden = dataclasses.replace(state, layers={**state.layers, "muscle": False})
    _, info2 = render_monitor_info(frame, low, hidden, NOW, S)
    assert info2.legend["pleura"] == "unsure" and info2.legend["pec_major"] == "hidden"
    # a producer that says nothing (ground truth, older nodes): nothing is marked
    _, info3 = render_monitor_info(frame, dataclasses.replace(seg, calibrated=None), state, NOW, S)
    assert not info3.unverified_classes and "unverified" not in info3.legend.values()
    assert info3.plane_px is not None and not info3.plane_unverified


def test_low_confidence_class_is_hatched_and_labelled_unsure():
    frame, seg, state = synthetic_scene(confidence={"vessel": 0.3})
    out, info = render_monitor_info(frame, seg, state, NOW, S, track_chrome=True)
    base, _ = _base(frame, seg, state)
    layout = info.layout
    lab = _screen_labels(layout, seg.labels)
    assert info.drawn_classes["vessel"] == "unsure" and info.drawn_classes["nerve"] == "sure"
    assert "unsure" in info.label_texts["vessel"] and "30%" in info.label_texts["vessel"]
    assert "unsure" not in info.label_texts["nerve"]
    o, b = _rect(out, layout), _rect(base, layout)
    m = (lab == CLASS_INDEX["vessel"]) & _interior(lab, S.outline_px) & ~(_rect(info.chrome_mask, layout) > 0)
    blended = (o[m] == _expected_blend(b[m], COLOURS_BGR["vessel"], S.fill_alpha)).all(axis=1)
    bare = (o[m] == b[m]).all(axis=1)
    # hatched: every pixel is either the blend (stripe) or the bare image (gap), both in quantity
    assert (blended | bare).all()
    frac = (blended & ~bare).mean()
    expected = S.hatch_width_px / S.hatch_period_px
    assert abs(frac - expected) < 0.12, frac
    # its outline is dashed: part of the boundary band is not in the class colour
    edge = (lab == CLASS_INDEX["vessel"]) & ~_interior(lab, 1)
    solid = (o[edge] == COLOURS_BGR["vessel"]).all(axis=1).mean()
    assert 0.2 < solid < 0.8, solid


def test_min_confidence_setting_is_honoured():
    frame, seg, state = synthetic_scene(confidence={"vessel": 0.3})
    _, info = render_monitor_info(frame, seg, state, NOW, dataclasses.replace(S, min_confidence=0.2))
    assert info.drawn_classes["vessel"] == "sure"


def test_labels_do_not_cover_small_targets_or_leave_the_image():
    frame, seg, state = synthetic_scene()
    _, info = render_monitor_info(frame, seg, state, NOW, S, track_chrome=True)
    layout = info.layout
    lab = _screen_labels(layout, seg.labels)
    assert set(info.label_boxes) >= {"nerve", "vessel", "pec_minor", "serratus"}
    for name, (x0, y0, x1, y1) in info.label_boxes.items():
        assert layout.x0 <= x0 < x1 <= layout.x0 + layout.w and layout.y0 <= y0 < y1 <= layout.y0 + layout.h
        under = lab[y0 - layout.y0:y1 - layout.y0, x0 - layout.x0:x1 - layout.x0]
        for target in ("nerve", "vessel"):
            assert not (under == CLASS_INDEX[target]).any(), f"label of {name} covers the {target}"
    boxes = list(info.label_boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], "labels overlap"


# ----------------------------------------------------------------------------- staleness

def test_seg_usable_rules():
    frame, seg, _ = synthetic_scene(frame_id=7, t_mono=50.0)
    assert seg_usable(frame, seg, 50.01, 500) == (True, "")
    assert seg_usable(frame, None, 50.0, 500) == (False, "no segmentation yet")
    # live: an older frame's segmentation, 812 ms after its frame was taken
    old = dataclasses.replace(seg, frame_id=3)
    assert seg_usable(frame, old, 50.812, 500) == (False, "segmentation stale 812 ms")
    ok, reason = seg_usable(frame, old, 50.2, 500)
    assert ok and reason == ""
    # ... but not if it lags the shown frame by more than stale_ms of media time
    lag = dataclasses.replace(old, media_time_s=frame.media_time_s - 0.7)
    assert seg_usable(frame, lag, 50.2, 500) == (False, "segmentation stale 700 ms")
    # a mask of a frame much newer than the picture shown is not drawn either
    newer = dataclasses.replace(seg, frame_id=9, media_time_s=frame.media_time_s + 0.6)
    assert seg_usable(frame, newer, 50.1, 500) == (False, "segmentation is 600 ms newer than the picture")
    # replay pairs frame k with seg k only
    rframe = dataclasses.replace(frame, replay=True)
    assert seg_usable(rframe, seg, 999.0, 500) == (True, "")
    ok, reason = seg_usable(rframe, old, 50.01, 500)
    assert not ok and "frame 3" in reason
    small = dataclasses.replace(seg, labels=seg.labels[:100, :100])
    ok, reason = seg_usable(frame, small, 50.0, 500)
    assert not ok and "does not match" in reason


def test_stale_segmentation_is_not_drawn_and_says_why():
    frame, seg, state = synthetic_scene(t_mono=100.0)
    old = dataclasses.replace(seg, frame_id=seg.frame_id - 1)
    out, info = render_monitor_info(frame, old, state, 100.812, S, track_chrome=True)
    assert not info.seg_drawn and info.seg_reason == "segmentation stale 812 ms"
    assert "segmentation stale 812 ms" in info.messages
    layout = info.layout
    assert np.array_equal(_rect(out, layout), layout.resize_image(frame.image)), "stale mask drawn"
    assert not info.drawn_classes and not info.needle_drawn and info.plane_px is None
    # the segmentation node offline: hidden too, whatever the timestamps say
    out, info = render_monitor_info(frame, seg, state, NOW, S, node_status={"segmentation": "offline"})
    assert not info.seg_drawn and info.seg_reason == "segmentation offline"
    assert np.array_equal(_rect(out, layout), layout.resize_image(frame.image))


def test_assistant_offline_hides_alerts_and_guidance():
    frame, seg, state = synthetic_scene()
    st = dataclasses.replace(state, alerts=[{"level": "alert", "text": "needle near pleura"}],
                             guidance={**state.guidance, "to_target_mm": 3.0})
    banner = slice(S.height_px - 56, S.height_px)
    out, info = render_monitor_info(frame, seg, st, NOW, S)
    assert (out[banner] == ALERT_RED).all(axis=2).sum() > 5000
    assert info.to_target_mm == 3.0  # guidance wins over the renderer's own estimate
    out, info = render_monitor_info(frame, seg, st, NOW, S, node_status={"assistant": "offline"})
    assert (out[banner] == ALERT_RED).all(axis=2).sum() == 0
    assert any("assistant offline" in m for m in info.messages)
    assert info.to_target_mm != 3.0  # estimated from the labels' plane instead


# ----------------------------------------------------------------------------- needle and plane

def test_needle_tip_path_and_distance():
    frame, seg, state = synthetic_scene(needle_t=0.5)
    out, info = render_monitor_info(frame, seg, state, NOW, S, track_chrome=True)
    assert info.needle_drawn
    layout = info.layout
    tip = seg.needle["tip_px"]
    sx, sy = np.round(layout.image_to_screen(tip)).astype(int)
    ring = out[sy - 9:sy + 10, sx - 9:sx + 10]
    assert (ring == 255).all(axis=2).sum() > 30  # the white tip marker
    # the projected path continues beyond the tip (dashed, white), along the shaft
    d = np.array(tip) - np.array(seg.needle["entry_px"])
    d /= np.hypot(*d)
    hits = 0
    for k in range(40, 200, 4):
        px, py = np.round(layout.image_to_screen(np.array(tip) + d * k)).astype(int)
        hits += int((out[py - 1:py + 2, px - 1:px + 2] > 200).all(axis=2).any())
    assert 10 < hits < 40  # dashed: some samples on dashes, some in gaps
    exp = tip_to_plane_mm(tip, info.plane_px, frame.spacing_mm)
    assert exp is not None and exp > 0 and info.to_target_mm == pytest.approx(exp)
    # the needle layer switched off: no marker
    off = dataclasses.replace(state, layers={**state.layers, "needle": False})
    _, info2 = render_monitor_info(frame, seg, off, NOW, S)
    assert not info2.needle_drawn


def test_target_plane_from_labels_follows_the_boundary():
    h, w = 200, 300
    xs = np.arange(w)
    boundary = (100 + 10 * np.sin(xs / 30)).astype(int)
    labels = np.zeros((h, w), np.uint8)
    rows = np.arange(h)[:, None]
    labels[(rows < boundary - 2) & (rows > 20)] = CLASS_INDEX["pec_minor"]
    labels[(rows >= boundary + 2) & (rows < 180)] = CLASS_INDEX["serratus"]
    poly = target_plane_from_labels(labels, "pec_minor", "serratus", step_px=1)
    assert poly.shape == (w, 2)
    truth = (boundary - 3 + boundary + 2) / 2.0
    assert np.abs(poly[:, 1] - truth[poly[:, 0].astype(int)]).max() <= 1.0
    # the other way round there is no boundary; a class that is absent neither
    assert target_plane_from_labels(labels, "serratus", "pec_minor").shape == (0, 2)
    assert target_plane_from_labels(labels, "pec_major", "pec_minor").shape == (0, 2)
    assert len(target_plane_from_labels(labels, "pec_minor", "serratus", max_gap_px=2)) == 0
    with pytest.raises(ValueError, match="unknown class 'pec_mnior'"):
        target_plane_from_labels(labels, "pec_mnior", "serratus")
    with pytest.raises(ValueError, match="2-D"):
        target_plane_from_labels(labels[None], "pec_minor", "serratus")


def test_guidance_polyline_is_drawn_where_given():
    frame, seg, state = synthetic_scene()
    plane = [[50, 400], [500, 420]]
    st = dataclasses.replace(state, guidance={"target_plane_px": plane})
    out, info = render_monitor_info(frame, seg, st, NOW, S)
    assert np.allclose(info.plane_px, plane)
    layout = info.layout
    mx, my = np.round(layout.image_to_screen([275, 410])).astype(int)
    patch = out[my - 3:my + 4, mx - 3:mx + 4]
    assert ((patch == (255, 0, 255)).all(axis=2)).any()


def test_a_vessel_not_seen_now_is_drawn_dashed_and_named_only_while_overlays_show():
    frame, seg, state = synthetic_scene()
    ring = [[300, 100], [340, 100], [340, 140], [300, 140]]
    st = dataclasses.replace(state, guidance={"held_vessel_px": [ring, [[1, 2]], "x"]})
    out, info = render_monitor_info(frame, seg, st, NOW, S)
    assert info.held_drawn == 1  # the malformed outlines skipped, not fatal
    # the dashes lie on the outline, in the vessel colour
    sx, sy = np.round(info.layout.image_to_screen(np.array(ring, float))).astype(int).T
    on = [out[y - 1:y + 2, x - 1:x + 2] for x, y in zip(sx, sy)]
    assert any((p == COLOURS_BGR["vessel"]).all(axis=2).any() for p in on)
    for hidden in (dataclasses.replace(st, overlay_on=False),
                   dataclasses.replace(st, layers={**st.layers, "vessel": False})):
        assert render_monitor_info(frame, seg, hidden, NOW, S)[1].held_drawn == 0


# ----------------------------------------------------------------------------- chrome and inputs

def test_chrome_always_says_not_for_clinical_use_and_handles_missing_inputs():
    for frame, seg, state in [(None, None, None), synthetic_scene()]:
        out, info = render_monitor_info(frame, seg, state, NOW, S, track_chrome=True)
        assert out.shape == (720, 1280, 3)
        # the warning text (orange-yellow) is in the top strip's right part
        strip = out[:30, 1000:]
        assert ((strip == (0, 200, 255)).all(axis=2)).sum() > 100
    _, info = render_monitor_info(None, None, None, NOW, S)
    assert "no image" in info.messages
    frame, seg, state = synthetic_scene()
    _, info = render_monitor_info(frame, None, None, NOW, S)
    assert "no segmentation yet" in info.messages and "no assistant state yet" in info.messages


def test_other_screen_sizes():
    frame, seg, state = synthetic_scene()
    s = dataclasses.replace(S, width_px=1920, height_px=1080)
    out, info = render_monitor_info(frame, seg, state, NOW, s)
    assert out.shape == (1080, 1920, 3) and info.seg_drawn
    assert info.layout.x0 + info.layout.w <= 1920 - 300


def test_bad_input_is_named():
    frame, seg, state = synthetic_scene()
    with pytest.raises(ValueError, match="image must be uint8"):
        render_monitor(dataclasses.replace(frame, image=frame.image.astype(np.float32)), seg, state, NOW, S)
    with pytest.raises(ValueError, match="spacing_mm must be a positive number"):
        render_monitor(dataclasses.replace(frame, spacing_mm=0.0), seg, state, NOW, S)
    with pytest.raises(ValueError, match="labels must be uint8"):
        render_monitor(frame, dataclasses.replace(seg, labels=seg.labels.astype(np.int64)), state, NOW, S)
    with pytest.raises(ValueError, match="min_confidence"):
        RenderSettings(min_confidence=1.5)
    with pytest.raises(TypeError, match="RenderSettings"):
        render_monitor(frame, seg, state, NOW, {"width_px": 1280})


def test_layout_maps_round_trip():
    layout = monitor_layout((542, 562), S)
    pts = np.array([[0, 0], [561, 541], [100.5, 200.25]])
    assert np.allclose(layout.screen_to_image(layout.image_to_screen(pts)), pts)
    # pixel (0, 0)'s centre lies inside the first screen pixels of the rect
    sx, sy = layout.image_to_screen([0, 0])
    assert layout.x0 <= sx < layout.x0 + layout.scale and layout.y0 <= sy < layout.y0 + layout.scale


def test_dashed_segments_cover_half_the_length():
    segs = dashed_segments([[0, 0], [100, 0]], 10, 10)
    assert len(segs) == 5
    assert sum(np.hypot(*(s[-1] - s[0])) for s in segs) == pytest.approx(50)
    bent = dashed_segments([[0, 0], [15, 0], [15, 15]], 10, 3)
    assert any(len(s) == 3 for s in bent)  # the dash over the corner keeps the corner


def test_classes_table_has_a_colour_for_every_drawn_class():
    assert all(c in COLOURS_BGR for c in CLASSES[1:])


def test_depth_cue_in_the_side_panel():
    frame, seg, state = synthetic_scene(needle_t=0.9)
    plain = render_monitor(frame, seg, state, NOW, S)
    with_cue = render_monitor(frame, seg, state, NOW, dataclasses.replace(S, monitor_cue3d=True))
    region = (slice(400, 610), slice(S.width_px - 300, S.width_px))
    diff = np.abs(with_cue[region].astype(int) - plain[region]).sum(axis=2) > 30
    assert diff.sum() > 2000  # the cue is drawn in the panel ...
    assert np.array_equal(with_cue[:, :S.width_px - 300], plain[:, :S.width_px - 300])  # ... and only there


def test_depth_cue_never_covers_the_panel_text():
    # a message ("source offline") and every guidance line push the numbers down: the cue
    # shrinks into the room left, or stays out, and the numbers stay readable
    frame, seg, state = synthetic_scene(needle_t=0.9)
    crowded = dataclasses.replace(
        state, last_heard="needle depth", pending_confirmation="stop recording",
        nodes={**state.nodes, "source": "offline"},
        guidance={**state.guidance, "to_target_mm": 7.5,
                  "nearest_danger": {"name": "artery", "distance_mm": 9.0}})
    sizes = []
    for st, height in ((state, S.height_px), (crowded, S.height_px), (crowded, 600)):
        rs = dataclasses.replace(S, monitor_cue3d=True, height_px=height)
        with_cue, info = render_monitor_info(frame, seg, st, NOW, rs)
        plain, _ = render_monitor_info(frame, seg, st, NOW, dataclasses.replace(rs, monitor_cue3d=False))
        assert info.guidance_shown
        text = (slice(0, info.panel_text_bottom + 1), slice(S.width_px - 300, S.width_px))
        assert np.array_equal(with_cue[text], plain[text])  # not one pixel of text touched
        if info.cue_rect is not None:
            assert info.cue_rect[1] > info.panel_text_bottom
            sizes.append(info.cue_rect[3])
        else:
            assert np.array_equal(with_cue, plain)
            sizes.append(0)
    assert sizes[0] > sizes[1] >= 80 and sizes[2] == 0, sizes


@pytest.mark.parametrize("shape", [(542, 562), (480, 640), (600, 800), (300, 200), (1000, 1000)])
def test_resized_labels_are_the_layout_gather_for_any_size(shape):
    layout = monitor_layout(shape, S)
    lab = np.random.default_rng(0).integers(0, 10, shape).astype(np.uint8)
    assert np.array_equal(layout.resize_labels(lab), _screen_labels(layout, lab))
    with pytest.raises(ValueError, match="do not match"):
        layout.resize_labels(lab[:-1])


def _colour_count(img: np.ndarray, bgr) -> int:
    return int((img == bgr).all(axis=2).sum())


def test_indicators_gauge_and_confirmation():
    from ar.overlay import INFO_BLUE, OK_GREEN, TEXT, WARN_ORANGE
    frame, seg, state = synthetic_scene()
    strip = slice(0, 30)
    plain = render_monitor(frame, seg, state, NOW, S)
    flags = render_monitor(frame, seg, dataclasses.replace(state, recording=True, frozen=True, muted=True), NOW, S)
    assert _colour_count(flags[strip], ALERT_RED) > 60 and _colour_count(plain[strip], ALERT_RED) == 0  # REC dot
    assert _colour_count(flags[strip], INFO_BLUE) > 300 and _colour_count(plain[strip], INFO_BLUE) == 0  # FROZEN
    assert _colour_count(flags[strip], WARN_ORANGE) > 300  # MUTED
    # the quality gauge's bar grows with the score (and changes colour by band)
    panel = (slice(30, 200), slice(S.width_px - 300, S.width_px))
    hi = render_monitor(frame, seg, dataclasses.replace(state, quality=90.0), NOW, S)[panel]
    mid = render_monitor(frame, seg, dataclasses.replace(state, quality=75.0), NOW, S)[panel]
    lo = render_monitor(frame, seg, dataclasses.replace(state, quality=20.0), NOW, S)[panel]
    assert _colour_count(hi, OK_GREEN) > _colour_count(mid, OK_GREEN) > 0
    assert _colour_count(lo, ALERT_RED) > 0 and _colour_count(lo, OK_GREEN) == 0
    # a pending confirmation is a big orange box at the panel's bottom
    box = (slice(600, 664), slice(S.width_px - 300, S.width_px))
    ask = render_monitor(frame, seg, dataclasses.replace(state, pending_confirmation="stop recording"), NOW, S)
    assert _colour_count(ask[box], WARN_ORANGE) > 5000 and _colour_count(plain[box], WARN_ORANGE) == 0
    # "not understood: say again" is a light box in the same place; a question wins over it
    said, info = render_monitor_info(frame, seg, dataclasses.replace(state, notice="not understood: say again"),
                                     NOW, S)
    assert info.notice == "not understood: say again"
    assert _colour_count(said[box], TEXT) > 5000 and _colour_count(plain[box], TEXT) < 200
    both, info = render_monitor_info(frame, seg, dataclasses.replace(
        state, notice="not understood: say again", pending_confirmation="stop recording"), NOW, S)
    assert not info.notice and _colour_count(both[box], WARN_ORANGE) > 5000


def test_bgr_frames_and_guidance_hidden_with_the_segmentation():
    frame, seg, state = synthetic_scene()
    bgr = dataclasses.replace(frame, image=np.dstack([frame.image] * 3))
    a = render_monitor(frame, seg, state, NOW, S)
    b = render_monitor(bgr, seg, state, NOW, S)
    assert np.array_equal(a, b)  # a grey frame and its BGR copy look the same
    _, info = render_monitor_info(frame, seg, state, NOW, S)
    assert info.guidance_shown
    old = dataclasses.replace(seg, frame_id=seg.frame_id - 1)  # an older frame's mask, 1 s old
    _, info = render_monitor_info(frame, old, state, 101.0, S)
    assert not info.guidance_shown and not info.seg_drawn


def test_malformed_optional_fields_are_ignored_not_fatal():
    frame, seg, state = synthetic_scene()
    bad_seg = dataclasses.replace(seg, confidence=[0.9, 0.9], classes=[],  # short list, default classes
                                  needle={"visible": True, "tip_px": "here", "entry_px": None})
    bad_state = dataclasses.replace(state, layers=None, alerts="fire", nodes={"segmentation": 3},
                                    guidance={"target_plane_px": [[1, 2, 3]], "to_target_mm": "near",
                                              "target_px": ["a", "b"], "nearest_danger": {"name": "x"}})
    out, info = render_monitor_info(frame, bad_seg, bad_state, NOW, S)
    assert out.shape == (720, 1280, 3) and info.seg_drawn
    # classes beyond the short confidence list have no confidence: drawn as unsure, never as sure
    assert info.drawn_classes["serratus"] == "unsure" and info.drawn_classes["nerve"] == "sure"
    assert not info.needle_drawn  # a tip that is not (x, y) is not drawn
    # the plane falls back to the one derived from the labels (PECS II)
    assert info.plane_px is not None and len(info.plane_px) > 10


def test_same_inputs_same_pixels():
    """Replay must give the same video twice: rendering is a pure function of its inputs."""
    frame, seg, state = synthetic_scene(confidence={"nerve": 0.2})
    st = dataclasses.replace(state, alerts=[{"level": "info", "text": "x"}], recording=True)
    a = render_monitor(frame, seg, st, NOW, S)
    render_monitor(*synthetic_scene(seed=3, needle_t=0.9), NOW, S)  # something else in between
    b = render_monitor(frame, seg, st, NOW, S)
    assert np.array_equal(a, b)


def test_needle_mask_drawn_as_a_class_without_a_tracked_tip():
    frame, seg, state = synthetic_scene()
    untracked = dataclasses.replace(seg, needle={})
    out, info = render_monitor_info(frame, untracked, state, NOW, S, track_chrome=True)
    assert "needle" in info.drawn_classes and not info.needle_drawn
    _, info2 = render_monitor_info(frame, seg, state, NOW, S)
    assert "needle" not in info2.drawn_classes and info2.needle_drawn


@pytest.mark.parametrize("spacing_mm", [0.08, 0.05])
def test_depth_ruler_ticks_at_the_right_depths(spacing_mm):
    from ar.overlay import TEXT
    frame, seg, state = synthetic_scene(spacing_mm=spacing_mm)
    out, info = render_monitor_info(frame, seg, state, NOW, S)
    layout = info.layout
    xr = layout.x0 - 6
    depth = frame.image.shape[0] * spacing_mm
    found = []
    for mm in np.arange(10.0, depth, 10.0):
        y = layout.y0 + mm / spacing_mm * layout.scale - 0.5  # mm from the top of the image
        rows = [int(np.floor(y)), int(np.ceil(y))]
        tick = [(out[r, xr - 12:xr + 1] == TEXT).all() for r in rows]
        found.append(any(tick))
        # and no major tick a few pixels away (the tick is where the depth is, not near it)
        assert not (out[int(round(y)) + 4, xr - 12:xr - 6] == TEXT).all()
    assert len(found) >= 2 and all(found), found


def test_frozen_picture_keeps_only_its_own_overlay():
    frame, seg, state = synthetic_scene(frame_id=5)
    frozen = dataclasses.replace(state, frozen=True)
    _, info = render_monitor_info(frame, seg, frozen, NOW, S)
    assert info.seg_drawn  # its own frame's mask stays
    later = dataclasses.replace(seg, frame_id=6, media_time_s=seg.media_time_s + 0.05)
    out, info = render_monitor_info(frame, later, frozen, NOW, S)
    assert not info.seg_drawn and info.seg_reason == "frozen: later overlays not drawn"
    assert np.array_equal(_rect(out, info.layout), info.layout.resize_image(frame.image))
    _, info = render_monitor_info(frame, later, state, NOW, S)  # not frozen: 50 ms apart is fine
    assert info.seg_drawn


def test_needle_pixels_the_tracker_has_not_confirmed_are_drawn_unsure():
    frame, seg, state = synthetic_scene()
    seg = dataclasses.replace(seg, needle=needle_dict(False))  # a candidate, not yet a needle
    _, info = render_monitor_info(frame, seg, state, NOW, S)
    assert info.drawn_classes["needle"] == "unsure" and info.drawn_classes["vessel"] == "sure"
    assert not info.needle_drawn


def test_every_question_the_assistant_asks_fits_the_prompt_box_uncut():
    """The prompt box shows a question in two lines; none may lose its end to the "..." of
    a line too long (the command offered, "stop recording?", is at the end)."""
    import cv2

    from ar.overlay import FONT, PANEL_W, confirm_lines
    from assistant import logic
    s0 = logic.initial_state()
    prompts = []
    for name, _noop, *_ in logic._TOGGLES:
        for st in (s0, dataclasses.replace(s0, frozen=True, recording=True, injecting=True)):
            offer = logic.opposite_offer(st, name)
            if offer:
                prompts.append(offer[1])
    rec = dataclasses.replace(s0, recording=True)
    prompts += [logic._needs_confirmation(rec, "record_stop")]
    prompts += [logic._needs_confirmation(rec, f"block.{p.id}") for p in s0.presets
                if p.id != s0.block]
    assert len(prompts) == 6 + 1 + len(s0.presets) - 1 and all(prompts)
    for p in prompts:
        header, question = confirm_lines(p)
        assert question.endswith("?") and "say yes or no" not in question, p
        assert cv2.getTextSize(header, FONT, 0.5, 1)[0][0] <= PANEL_W - 30, header
        assert cv2.getTextSize(question, FONT, 0.55, 1)[0][0] <= PANEL_W - 30, question
    assert confirm_lines("already recording. stop recording? say yes or no") == (
        'already recording: say "yes" to', "stop recording?")
    assert confirm_lines("stop recording? say yes or no") == ('say "yes" to confirm:',
                                                             "stop recording?")
