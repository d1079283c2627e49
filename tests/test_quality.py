"""Quality score: synthetic checks of each part, and the ordering of real images."""
from __future__ import annotations

import numpy as np
import pytest

from assistant.blocks import default_presets, find_preset
from assistant.quality import quality_score
from models.classes import CLASS_INDEX

PRESETS = default_presets()
PECS2 = find_preset(PRESETS, "pecs2")
SUPRA = find_preset(PRESETS, "supraclavicular")


def pecs_labels(h=200, w=200) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[30:60] = CLASS_INDEX["pec_major"]
    lab[60:100] = CLASS_INDEX["pec_minor"]
    lab[100:140] = CLASS_INDEX["serratus"]
    return lab


def speckle(h=200, w=200, seed=0, scale=45.0) -> np.ndarray:
    return np.random.default_rng(seed).rayleigh(scale, (h, w)).clip(0, 255).astype(np.uint8)


def test_more_key_structures_score_higher_and_reason_names_the_missing_one():
    lab = pecs_labels()
    full = quality_score(None, lab, None, PECS2)
    no_serr = lab.copy()
    no_serr[no_serr == CLASS_INDEX["serratus"]] = 0
    one = quality_score(None, no_serr, None, PECS2)
    none = quality_score(None, np.zeros_like(lab), None, PECS2)
    assert full.score > one.score > none.score
    assert full.score == pytest.approx(100.0)
    assert none.score == pytest.approx(0.0)
    assert one.reason == "serratus not seen"
    assert full.reason == "good view"
    assert one.parts["structure_details"]["serratus"]["present"] is False


def test_low_confidence_lowers_the_score_and_says_unsure():
    lab = pecs_labels()
    conf = [1.0] * 10
    sure = quality_score(None, lab, conf, PECS2)
    conf[CLASS_INDEX["pec_minor"]] = 0.1
    unsure = quality_score(None, lab, conf, PECS2)
    assert unsure.score < sure.score
    assert unsure.reason == "pec minor unsure"


def test_structure_out_of_place_lowers_the_score():
    lab = np.zeros((400, 200), np.uint8)
    lab[20:60] = CLASS_INDEX["nerve"]
    lab[60:100] = CLASS_INDEX["vessel"]
    good = quality_score(None, lab, None, SUPRA)
    low = np.zeros_like(lab)
    low[390:400, :100] = CLASS_INDEX["nerve"]  # hugging the bottom edge
    low[60:100] = CLASS_INDEX["vessel"]
    bad = quality_score(None, low, None, SUPRA)
    assert bad.score < good.score
    assert bad.parts["structure_details"]["nerve"]["location"] < 1.0
    assert bad.reason == "nerve out of place"


def test_image_part_penalises_low_contrast_shadow_and_motion():
    lab = pecs_labels()
    img = speckle()
    base = quality_score(img, lab, None, PECS2)
    flat = (img.astype(float) * 0.15 + 100).astype(np.uint8)
    low_contrast = quality_score(flat, lab, None, PECS2)
    assert low_contrast.parts["image_factors"]["contrast"] < base.parts["image_factors"]["contrast"]
    assert low_contrast.score < base.score
    shadowed = img.copy()
    shadowed[100:, 40:160] = 0  # an acoustic shadow below a bone or air
    shadow = quality_score(shadowed, lab, None, PECS2)
    assert shadow.parts["image_factors"]["shadow"] < 0.5 < base.parts["image_factors"]["shadow"]
    assert shadow.reason == "shadowing"
    still = quality_score(img, lab, None, PECS2, prev_image=img)
    assert still.parts["steadiness"] == pytest.approx(1.0)


def _anatomy_image(shift_px: int, seed: int) -> np.ndarray:
    """Bright bands (fascia-like) on speckle; ``shift_px`` moves the anatomy down."""
    echo = np.full((200, 200), 30.0)
    for top in (40, 90, 140):
        echo[top + shift_px: top + shift_px + 12] = 120.0
    rng = np.random.default_rng(seed)
    return (echo * rng.rayleigh(1.0, echo.shape)).clip(0, 255).astype(np.uint8)


def test_steadiness_ignores_new_speckle_but_not_probe_motion():
    lab = pecs_labels()
    img = _anatomy_image(0, seed=0)
    noise_only = quality_score(img, lab, None, PECS2, prev_image=_anatomy_image(0, seed=1))
    moved = quality_score(img, lab, None, PECS2, prev_image=_anatomy_image(8, seed=1))
    # fully new speckle (more than a still probe ever gives) still scores well above
    # an 8 px (1.6 mm at 0.2 mm/px) movement of the anatomy
    assert noise_only.parts["steadiness"] > 0.5
    assert moved.parts["steadiness"] < noise_only.parts["steadiness"] - 0.3
    assert moved.score < noise_only.score
    assert moved.reason == "probe moving"


def test_depth_setting_uses_spacing_when_known():
    lab = pecs_labels()
    img = speckle()
    ok = quality_score(img, lab, None, PECS2, spacing_mm=0.2)  # 40 mm deep: in range
    shallow = quality_score(img, lab, None, PECS2, spacing_mm=0.05)  # 10 mm deep
    assert ok.parts["image_factors"]["depth"] == pytest.approx(1.0)
    assert shallow.parts["image_factors"]["depth"] < 0.5
    assert shallow.parts["image_factors"]["depth_detail"] == "shallow"


def test_bad_inputs_name_what_was_wrong():
    lab = pecs_labels()
    with pytest.raises(ValueError, match="labels must be a 2-D"):
        quality_score(None, lab[None], None, PECS2)
    with pytest.raises(ValueError, match="image has shape"):
        quality_score(speckle(100, 100), lab, None, PECS2)
    with pytest.raises(TypeError, match="image must be a numpy array"):
        quality_score([[1]], lab, None, PECS2)


def test_real_images_with_more_expected_structures_score_higher(shared_data):
    """The real usgra_seg images, ground-truth masks as the segmentation."""
    from scipy.stats import spearmanr

    import benchmarks.quality_real as bench

    data = shared_data / "usgra_seg"
    if not (data / "images").is_dir():
        pytest.skip(f"usgra_seg not found at {data}")
    res = bench.run(data, "supraclavicular", limit=40)  # bounded: 40 images, 200 scores
    abl = res["ablation"]["by_count"]
    assert abl[0]["mean"] < abl[1]["mean"] < abl[2]["mean"]
    assert res["ablation"]["spearman_rho"] > 0.8
    assert res["ablation_ordered_share"] > 0.9
    # as annotated (no removal): images with both structures outscore nerve-only ones
    nat = res["natural"]["by_count"]
    if nat[1]["n"] and nat[2]["n"]:
        assert nat[2]["mean"] > nat[1]["mean"]
    assert spearmanr([0, 1, 2], [abl[k]["mean"] for k in (0, 1, 2)])[0] == pytest.approx(1.0)


def test_real_image_degradations_lower_the_image_part(shared_data):
    import cv2

    import benchmarks.quality_real as bench

    data = shared_data / "usgra_seg"
    names = sorted(p.name for p in (data / "images").glob("*.png"))[:5]
    if not names:
        pytest.skip(f"no usgra_seg images at {data}")
    for name in names:
        img, lab = bench.load_pair(data / "images" / name, data / "masks" / name)
        base = quality_score(img, lab, None, SUPRA).parts["image"]
        flat = cv2.convertScaleAbs(img, alpha=0.2, beta=60)
        assert quality_score(flat, lab, None, SUPRA).parts["image"] < base, name
        shadow = img.copy()
        shadow[img.shape[0] // 2:, : img.shape[1] * 2 // 3] = 0
        assert quality_score(shadow, lab, None, SUPRA).parts["image"] < base, name


def test_real_cine_loops_consecutive_frames_are_steadier_than_distant_ones(shared_data):
    import benchmarks.quality_real as bench

    videos = shared_data / "regional_us_videos" / "videos"
    if not any(videos.glob("*.mp4")):
        pytest.skip(f"no real cine loops at {videos}")
    res = bench.run_steadiness(videos, max_frames=30)  # bounded: 30 frames per loop
    assert res["pairs"] > 100
    assert res["mean_by_lag"][1] > res["mean_by_lag"][5] + 0.2
    assert res["share_nearer_steadier"] > 0.9


def test_target_depth_is_checked_when_the_spacing_is_known():
    axillary = find_preset(PRESETS, "axillary")  # nerve expected 5-20 mm deep
    lab = np.zeros((400, 200), np.uint8)
    lab[100:140, 80:120] = CLASS_INDEX["nerve"]  # centre row 119.5
    lab[100:140, 20:60] = CLASS_INDEX["vessel"]
    near = quality_score(None, lab, None, axillary, spacing_mm=0.1)  # nerve 12 mm deep
    deep = quality_score(None, lab, None, axillary, spacing_mm=0.25)  # 30 mm deep
    unknown = quality_score(None, lab, None, axillary)
    assert near.parts["structure_details"]["nerve"]["location"] == pytest.approx(1.0)
    assert deep.parts["structure_details"]["nerve"]["location"] == pytest.approx(0.0125)
    assert unknown.score == near.score > deep.score
    assert deep.reason == "nerve out of place"
