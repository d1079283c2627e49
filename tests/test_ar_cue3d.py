"""The 3D needle-depth cue (open3d RaycastingScene on the CPU)."""
from __future__ import annotations

import numpy as np
import pytest

from ar.cue3d import (AT_PLANE_BGR, FILL_BGR, PAST_BGR, CueInputs, CueRenderer, composite,
                      fill_fraction, render_cue)


def _pixels_like(img: np.ndarray, alpha: np.ndarray, bgr) -> int:
    """Hit pixels whose colour points the same way as ``bgr`` (shading only scales it)."""
    v = img[alpha > 0].astype(np.float64)
    c = np.asarray(bgr, np.float64)
    cos = (v @ c) / (np.linalg.norm(v, axis=1) * np.linalg.norm(c) + 1e-9)
    return int((cos > 0.995).sum())


def _needle_pixels(img: np.ndarray, alpha: np.ndarray) -> int:
    """Bright grey pixels: the needle (the ring's empty track is a darker grey)."""
    v = img.astype(np.float64)
    grey = np.abs(v - v.mean(axis=2, keepdims=True)).max(axis=2) < 6
    return int((grey & (v.mean(axis=2) > 130) & (alpha > 0)).sum())


def test_fill_fraction():
    assert fill_fraction(None) == 0.0
    assert fill_fraction(20.0, 20.0) == 0.0 and fill_fraction(40.0, 20.0) == 0.0
    assert fill_fraction(10.0, 20.0) == pytest.approx(0.5)
    assert fill_fraction(0.0) == 1.0 and fill_fraction(-3.0) == 1.0
    with pytest.raises(ValueError, match="range_mm"):
        fill_fraction(1.0, 0.0)


def test_ring_fills_as_the_tip_nears_the_plane():
    counts = []
    for tt in (18.0, 12.0, 6.0, 2.5):
        img, alpha = render_cue(CueInputs(tt, 30.0), 160)
        assert img.shape == (160, 160, 3) and alpha.shape == (160, 160)
        counts.append(_pixels_like(img, alpha, FILL_BGR))
    assert counts[0] > 20, counts  # a little filled at 18 of 20 mm
    assert all(b > a * 1.05 for a, b in zip(counts, counts[1:])) and counts[-1] > 3 * counts[0], counts
    # at the plane the ring turns bluish green, past it vermillion; the needle is drawn
    at, a_at = render_cue(CueInputs(0.25, 30.0), 160)
    past, a_past = render_cue(CueInputs(-4.0, 30.0), 160)
    assert _pixels_like(at, a_at, AT_PLANE_BGR) > counts[-1] * 0.8
    assert _pixels_like(at, a_at, FILL_BGR) < 20
    assert _pixels_like(past, a_past, PAST_BGR) > counts[-1] * 0.8
    assert _needle_pixels(at, a_at) > 50
    none, a_none = render_cue(CueInputs(None), 160)
    assert _needle_pixels(none, a_none) == 0  # no needle without a tip


def test_the_needle_moves_toward_the_ring():
    def needle_centroid(tt):
        img, alpha = render_cue(CueInputs(tt, 30.0), 160)
        v = img.astype(np.float64)
        grey = (np.abs(v - v.mean(axis=2, keepdims=True)).max(axis=2) < 6) & (v.mean(axis=2) > 150) & (alpha > 0)
        ys, xs = np.nonzero(grey)
        return ys.max()  # the lowest needle pixel: the tip end
    assert needle_centroid(10.0) < needle_centroid(2.0)  # deeper tip: lower on screen


def test_renderer_caches_and_captions():
    r = CueRenderer(size_px=128)
    a1, _ = r.render(5.02, 30.4)
    a2, _ = r.render(5.05, 29.8)  # same quantised inputs: the very same image
    assert a1 is a2
    b, _ = r.render(2.0, 30.0)
    assert b is not a1 and b.shape == (128, 128, 3)
    with pytest.raises(ValueError, match="size_px"):
        render_cue(CueInputs(1.0), 4)


def test_composite_clips_and_blends():
    dst = np.zeros((50, 50, 3), np.uint8)
    img = np.full((20, 20, 3), 200, np.uint8)
    alpha = np.zeros((20, 20), np.uint8)
    alpha[5:15, 5:15] = 255
    composite(dst, img, alpha, 40, 40, opacity=1.0)  # partly outside: clipped, no error
    assert (dst[45:50, 45:50] == 200).all() and dst[:40].sum() == 0 and dst[40:45, 40:45].sum() == 0


def test_caption_uses_the_exact_distance():
    from ar.cue3d import cue_caption
    assert cue_caption(12.43) == "12.4 mm to plane"  # the picture is quantised to 12.5, the words are not
    assert cue_caption(0.4) == "at plane" and cue_caption(-3.26) == "3.3 mm past" and cue_caption(None) == "no needle"
    r = CueRenderer(size_px=128)
    a, _ = r.render(12.43, 30.0)
    b, _ = r.render(12.46, 30.0)  # same picture (quantised to 12.5) but another caption
    assert not np.array_equal(a, b)
    assert np.array_equal(a[:100], b[:100])  # only the caption strip differs
