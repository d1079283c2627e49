"""The PECS II simulator: determinism, ground truth where it says, clips on disk."""
import json

import numpy as np
import pytest

from conftest import video_frames
from models.classes import CLASS_INDEX, CLASSES
from models.simulator import NeedleParams, SimParams, make_demo_clip, render_clip, simulate_frame


def test_same_seed_same_frame_and_seeds_differ():
    a = simulate_frame(7)
    b = simulate_frame(7)
    c = simulate_frame(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.needle == b.needle
    assert a.image.shape == a.labels.shape == (542, 562)
    assert a.image.dtype == np.uint8 and a.labels.dtype == np.uint8
    assert not np.array_equal(a.image, c.image)
    # the images differ in content, not in a few pixels
    assert np.mean(a.image != c.image) > 0.5
    assert a.labels.max() < len(CLASSES)


def test_spacing_and_depth_agree():
    f = simulate_frame(3, SimParams(depth_mm=35.0, size=(300, 320)))
    assert f.image.shape == (300, 320)
    assert f.depth_mm == 35.0
    assert f.spacing_mm == pytest.approx(35.0 / 300)


def test_vessel_label_is_where_the_simulator_says_and_is_anechoic():
    f = simulate_frame(11, SimParams(needle=None))
    cx, cy = f.vessel["centre_px"]
    r = f.vessel["radius_px"]
    ys, xs = np.nonzero(f.labels == CLASS_INDEX["vessel"])
    assert len(xs) > 0.6 * np.pi * r * r
    assert abs(xs.mean() - cx) < 2 and abs(ys.mean() - cy) < 2
    # the lumen is dark against the muscle around it (anechoic blood)
    inner = (np.hypot(*np.meshgrid(np.arange(562) - cx, np.arange(542) - cy)) < 0.4 * r)
    muscle = np.isin(f.labels, [CLASS_INDEX["pec_major"], CLASS_INDEX["pec_minor"]])
    assert f.image[inner].mean() < 0.5 * f.image[muscle].mean()


def test_needle_ground_truth_matches_params():
    sp_depth = 40.0
    n = NeedleParams(entry_x_mm=2.0, angle_deg=30.0, length_mm=20.0, direction=1)
    f = simulate_frame(5, SimParams(depth_mm=sp_depth, needle=n, probe_x_mm=0.0))
    tip_x_mm, tip_y_mm = n.tip_mm()
    assert f.needle["visible"]
    tx, ty = f.needle["tip_px"]
    assert tx == pytest.approx(tip_x_mm / f.spacing_mm - 0.5, abs=1e-6)
    assert ty == pytest.approx(tip_y_mm / f.spacing_mm - 0.5, abs=1e-6)
    needle = f.labels == CLASS_INDEX["needle"]
    # the labelled shaft reaches the tip and the shaft is bright in the image
    ys, xs = np.nonzero(needle)
    assert np.hypot(xs - tx, ys - ty).min() < 3
    assert f.image[needle].mean() > f.image[~needle].mean() + 30


def test_missed_needle_is_faint_and_not_labelled():
    n = NeedleParams(entry_x_mm=2.0, angle_deg=30.0, length_mm=20.0, visibility=0.1)
    f = simulate_frame(5, SimParams(needle=n))
    assert not f.needle["visible"]
    assert not (f.labels == CLASS_INDEX["needle"]).any()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="size"):
        simulate_frame(0, SimParams(size=(10, 10000)))
    with pytest.raises(TypeError, match="seed"):
        simulate_frame("abc")
    with pytest.raises(ValueError, match="n_frames"):
        render_clip("/nonexistent/x.mp4", n_frames=0)


def test_render_clip_writes_video_masks_and_json(tmp_path):
    meta = render_clip(tmp_path / "c.mp4", n_frames=8, fps=10, seed=2, size=(120, 140),
                       needle_start_s=0.0, needle_arrive_s=0.7, inject_start_s=0.5)
    frames = video_frames(tmp_path / "c.mp4")
    assert len(frames) == 8 and all(f.shape[:2] == (120, 140) for f in frames)
    labels = np.load(tmp_path / "c_masks.npz")["labels"]
    assert labels.shape == (8, 120, 140)
    saved = json.loads((tmp_path / "c_meta.json").read_text())
    assert saved["n_frames"] == 8 and len(saved["frames"]) == 8
    assert saved["spacing_mm"] == pytest.approx(saved["depth_mm"] / 120)
    assert saved["frames"][-1]["injecting"]
    assert meta["frames"][0]["needle"] == saved["frames"][0]["needle"]


def test_a_clip_can_stop_the_needle_near_the_artery(tmp_path):
    from assistant.guidance import distance_to_class_px
    for near, seed in ((1.5, 4), (None, 4)):
        meta = render_clip(tmp_path / f"n{near}.mp4", n_frames=12, fps=10, seed=seed,
                           needle_start_s=0.0, needle_arrive_s=0.6, stop_near_artery_mm=near)
        labels = np.load(meta["masks"])["labels"]
        last = meta["frames"][-1]["needle"]
        d_mm = distance_to_class_px(labels[-1], CLASS_INDEX["vessel"], last["tip_px"]) \
            * meta["spacing_mm"]
        if near is None:
            assert d_mm > 3.0  # the usual path keeps clear of the artery
        else:  # the tip ends 0.6 mm along the path past the aim: 1.5 mm above the wall
            assert 0.8 < d_mm < 1.8
    with pytest.raises(ValueError, match="stop_near_artery_mm"):
        render_clip(tmp_path / "x.mp4", n_frames=2, stop_near_artery_mm=-1)


def test_a_clip_can_slide_the_probe(tmp_path):
    plain = render_clip(tmp_path / "p.mp4", n_frames=10, fps=10, seed=5, size=(120, 140))
    meta = render_clip(tmp_path / "s.mp4", n_frames=10, fps=10, seed=5, size=(120, 140),
                       slide_mm=4.0, slide_at_s=0.2, slide_s=0.4)
    sp = meta["spacing_mm"]

    def vessel_x(m, k):
        return m["frames"][k]["vessel"]["centre_px"][0]
    # before the slide the two clips are the same scan; after it the artery has moved 4 mm
    # left across the image (the probe slid right over the skin), the hand's drift aside
    assert vessel_x(meta, 1) == pytest.approx(vessel_x(plain, 1), abs=1.0)
    moved = (vessel_x(meta, 9) - vessel_x(plain, 9)) * sp
    assert moved == pytest.approx(-4.0, abs=0.2)
    assert meta["slide_mm"] == 4.0 and plain["slide_mm"] == 0.0
    with pytest.raises(ValueError, match="slide_mm"):
        render_clip(tmp_path / "x.mp4", n_frames=2, slide_mm=50)


def test_demo_clip_is_deterministic_and_tells_the_story(tmp_path):
    a = make_demo_clip(str(tmp_path / "a.mp4"), seconds=1.5, fps=10, seed=3)
    b = make_demo_clip(str(tmp_path / "b.mp4"), seconds=1.5, fps=10, seed=3)
    assert a["size"] == [542, 562] and a["n_frames"] == 15
    la = np.load(tmp_path / "a_masks.npz")["labels"]
    lb = np.load(tmp_path / "b_masks.npz")["labels"]
    assert np.array_equal(la, lb)
    assert [f["needle"] for f in a["frames"]] == [f["needle"] for f in b["frames"]]
    # no needle at the start, needle and injection by the end
    assert a["frames"][0]["needle"]["tip_px"] is None
    assert a["frames"][-1]["needle"]["visible"] and a["frames"][-1]["injecting"]
