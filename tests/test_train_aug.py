"""models.train --aug-us: ultrasound-specific augmentation (a screen, off in the shipped recipe).
Labels must move with the image, the frame's outside must be background, and 0 must leave
augment() exactly as before (the shipped lineage is reproducible)."""
import numpy as np
import pytest

pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")


def _sample():
    img = np.full((192, 192), 60, np.uint8)
    lab = np.zeros((192, 192), np.uint8)
    img[80:120, 50:90] = 220  # a bright "vessel" labelled 2
    lab[80:120, 50:90] = 2
    return train_mod.Sample(img, lab, "usgra", "synthetic")


def test_tilt_moves_labels_with_the_image_and_fills_outside_with_background():
    s = _sample()
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, lab = train_mod._tilt(s.image, s.labels, rng)
        assert img.shape == lab.shape == (192, 192)
        inside = lab == 2
        assert inside.sum() > 800  # the block survives a tilt about the centre
        # the labelled pixels are the bright ones, up to the interpolated border
        assert np.mean(img[inside] > 140) > 0.9
        assert np.mean(img[~inside] > 140) < 0.01
        assert set(np.unique(lab)) <= {0, 2}
        corners = img[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners[lab[[0, 0, -1, -1], [0, -1, 0, -1]] == 0] <= 60).all()


def test_off_by_default_and_changes_training_images_when_on(monkeypatch):
    s = _sample()
    assert train_mod.AUG_US == [0.0]
    a = [train_mod.augment(s, 192, np.random.default_rng(k)) for k in range(6)]
    monkeypatch.setattr(train_mod, "AUG_US", [1.0])
    b = [train_mod.augment(s, 192, np.random.default_rng(k)) for k in range(6)]
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    for x, lab in b:
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert lab.shape == x.shape


def test_depth_gain_ramp_is_smooth_and_speckle_keeps_the_range(monkeypatch):
    x = np.full((192, 192), 0.5, np.float32)
    rng = np.random.default_rng(1)
    seen_ramp = False
    for _ in range(40):
        y = train_mod._us_intensity(x.copy(), rng, 1.0)
        rows = y.mean(1)
        if abs(rows[-1] - rows[0]) > 0.05:
            seen_ramp = True
            assert np.abs(np.diff(rows)).max() < 0.02  # a ramp, not steps
    assert seen_ramp


def test_zoom_out_shrinks_the_frame_before_its_window_and_is_off_by_default(monkeypatch):
    """--zoom-out P MIN (a screen, off in the shipped recipe): the labelled block comes out
    smaller in the window and the window keeps its size."""
    s = _sample()
    assert train_mod.ZOOM_OUT == [0.0, 1.0]

    def block_px():  # the block's area in windows drawn on it (focus), 40 draws
        out = [train_mod.augment(s, 192, np.random.default_rng(k), patch=128, focus=2)
               for k in range(40)]
        assert {x.shape for o in out for x in o} == {(128, 128)}
        return np.mean([(o[1] == 2).sum() for o in out])

    before = block_px()
    monkeypatch.setattr(train_mod, "ZOOM_OUT", [1.0, 0.7])
    after = block_px()
    # every frame shrunk to 0.7-1.0 of its side: the block's area by about (0.85)^2
    assert 0.55 * before < after < 0.85 * before


def test_a_zoom_out_that_would_leave_no_room_for_the_window_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"--zoom-out 0.5 0.3: .*MIN in \[patch/size = 0.667"):
        train_mod.main(["--zoom-out", "0.5", "0.3", "--out", str(tmp_path / "m.onnx")])
