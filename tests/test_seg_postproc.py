"""Post-processing of the segmentation (models.segmenter): per-class thresholds, blob
rules, the manifest's ``post_process`` key and the optional flip test-time augmentation."""

import numpy as np
import pytest

from models.classes import CLASS_INDEX, CLASSES
from models.segmenter import (MIN_BLOB_FRAC, BlobRule, PostProcess, Segmenter,
                              clean_blobs, parse_post_process, probs_to_output)
from models.settings import SegmentationSettings
from conftest import copy_shipped_model

NERVE, VESSEL, FASCIA = CLASS_INDEX["nerve"], CLASS_INDEX["vessel"], CLASS_INDEX["fascia"]
NC = len(CLASSES) - 1


def blank(h=10, w=10):
    return np.zeros((NC, h, w), np.float32)


def test_default_post_process_is_the_old_rule_set():
    pp = parse_post_process(None)
    assert pp.threshold == 0.5 and pp.tta_flip is False
    assert set(pp.rules) == {"nerve", "vessel"}
    assert all(r == BlobRule(min_blob_frac=MIN_BLOB_FRAC) for r in pp.rules.values())
    rng = np.random.default_rng(0)
    probs = rng.random((NC, 40, 50)).astype(np.float32)
    old = probs_to_output(probs, (80, 100))
    new = probs_to_output(probs, (80, 100), post=pp)
    assert np.array_equal(old.labels, new.labels) and old.confidence == new.confidence


def test_per_class_threshold_matches_brute_force():
    rng = np.random.default_rng(1)
    probs = rng.random((NC, 30, 30)).astype(np.float32)
    thr = np.full(NC, 0.5, np.float32)
    thr[FASCIA - 1], thr[NERVE - 1] = 0.4, 0.7
    pp = PostProcess(rules={"fascia": BlobRule(threshold=0.4), "nerve": BlobRule(threshold=0.7)})
    out = probs_to_output(probs, (30, 30), post=pp)
    cand = np.where(probs > thr[:, None, None], probs, -1.0)
    want = np.where(cand.max(0) > 0, cand.argmax(0) + 1, 0)
    assert np.array_equal(out.labels, want)
    # confidence: mean winning probability over each class's pixels
    m = out.labels == FASCIA
    assert out.confidence[FASCIA] == pytest.approx(float(probs[FASCIA - 1][m].mean()), rel=1e-5)


def test_a_class_below_its_own_threshold_does_not_block_another():
    probs = blank(2, 2)
    probs[NERVE - 1] = 0.45  # nerve more probable but under its 0.5
    probs[FASCIA - 1] = 0.42  # fascia over its 0.4
    out = probs_to_output(probs, (2, 2), post=PostProcess(rules={"fascia": BlobRule(threshold=0.4)}))
    assert (out.labels == FASCIA).all()
    assert (probs_to_output(probs, (2, 2)).labels == 0).all()  # one threshold 0.5: nothing


def test_a_class_on_top_takes_its_pixels_from_a_more_probable_layer():
    NEEDLE, MUSCLE = CLASS_INDEX["needle"], CLASS_INDEX["pec_major"]
    probs = blank(4, 8)
    probs[MUSCLE - 1] = 0.99  # the layer the needle crosses, sure everywhere
    probs[NEEDLE - 1, 1:3, 2:6] = 0.8  # the needle, less probable than the layer
    probs[NEEDLE - 1, 3, :] = 0.3  # under its threshold: not drawn
    plain = probs_to_output(probs, (4, 8))
    assert (plain.labels == MUSCLE).all()  # argmax alone: the needle is lost
    out = probs_to_output(probs, (4, 8), post=parse_post_process({"on_top": ["needle"]}))
    want = np.full((4, 8), MUSCLE)
    want[1:3, 2:6] = NEEDLE
    assert np.array_equal(out.labels, want)
    assert out.confidence[NEEDLE] == pytest.approx(0.8)  # its own probability, not the layer's
    assert out.confidence[MUSCLE] == pytest.approx(0.99)


def two_blobs(big_p=0.6, small_p=0.9):
    """Vessel blobs on a 10x10 frame: 4x5 = 20 px (prob big_p), 2x2 = 4 px (small_p)."""
    probs = blank()
    probs[VESSEL - 1, 0:4, 0:5] = big_p
    probs[VESSEL - 1, 7:9, 7:9] = small_p
    return probs


def test_min_blob_frac_drops_small_blobs():
    pp = PostProcess(rules={"vessel": BlobRule(min_blob_frac=0.05)})  # 5 px of 100
    lab = probs_to_output(two_blobs(), (10, 10), post=pp).labels
    assert (lab[0:4, 0:5] == VESSEL).all() and (lab == VESSEL).sum() == 20


def test_min_blob_mean_prob_drops_unlikely_blobs():
    pp = PostProcess(rules={"vessel": BlobRule(min_blob_mean_prob=0.8)})
    lab = probs_to_output(two_blobs(), (10, 10), post=pp).labels
    assert (lab[7:9, 7:9] == VESSEL).all() and (lab == VESSEL).sum() == 4


@pytest.mark.parametrize("keep,want", [(True, 20), (False, 0)])
def test_keep_largest_when_no_blob_is_likely_enough(keep, want):
    pp = PostProcess(rules={"vessel": BlobRule(min_blob_mean_prob=0.95, keep_largest=keep)})
    out = probs_to_output(two_blobs(), (10, 10), post=pp)
    assert (out.labels == VESSEL).sum() == want
    if keep:
        assert (out.labels[0:4, 0:5] == VESSEL).all()
        assert out.confidence[VESSEL] == pytest.approx(0.6)


def test_keep_largest_never_keeps_a_blob_under_min_blob_frac():
    # the only blob that passes the size rule is the 20 px one; with min_blob_frac 0.3 none
    pp = PostProcess(rules={"vessel": BlobRule(min_blob_frac=0.3, min_blob_mean_prob=0.95,
                                               keep_largest=True)})
    assert not (probs_to_output(two_blobs(), (10, 10), post=pp).labels == VESSEL).any()


def test_clean_blobs_counts_and_leaves_other_classes():
    lab = np.zeros((6, 6), np.uint8)
    lab[0, 0] = NERVE  # 1 px blob
    lab[3:6, 3:6] = NERVE  # 9 px blob
    lab[0, 5] = VESSEL
    pmax = np.full((6, 6), 0.9, np.float32)
    assert clean_blobs(lab, pmax, NERVE, BlobRule(min_blob_frac=2 / 36)) == 1
    assert lab[0, 0] == 0 and (lab[3:6, 3:6] == NERVE).all() and lab[0, 5] == VESSEL
    assert clean_blobs(lab, pmax, NERVE, BlobRule()) == 0  # no rule: nothing to do


@pytest.mark.parametrize("spec,words", [
    ({"classes": {"liver": {"min_blob_frac": 0.1}}}, "unknown class"),
    ({"classes": {"nerve": {"threshold": 1.5}}}, "nerve.threshold"),
    ({"classes": {"nerve": {"min_blob": 0.1}}}, "keys"),
    ({"thresh": 0.5}, "unknown key"),
    ({"tta_flip": "yes"}, "tta_flip"),
    ({"classes": {"vessel": {"keep_largest": 1}}}, "keep_largest"),
    ({"on_top": "needle"}, "on_top must be a list"),
    ({"on_top": ["scalpel"]}, "on_top must be a list"),
])
def test_bad_post_process_is_refused_with_a_reason(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_post_process(spec)


def copy_model(tmp_path, change):
    model = copy_shipped_model(tmp_path, change)
    return Segmenter(SegmentationSettings(model_path=str(model))).load()


def test_manifest_without_post_process_loads_with_the_defaults(tmp_path):
    seg = copy_model(tmp_path, lambda m: m.pop("post_process", None))
    assert seg.post == parse_post_process(None)


def test_shipped_manifest_post_process_is_used():
    seg = Segmenter(SegmentationSettings()).load()
    spec = seg.manifest["post_process"]
    assert seg.post == parse_post_process(spec)
    assert seg.post.tta_flip is False  # off: it doubles the model time
    assert seg.post.threshold_for("fascia") == spec["classes"]["fascia"]["threshold"]
    # segment() applies it: fascia pixels between the two thresholds are labelled fascia
    probs = blank(4, 4)
    probs[FASCIA - 1] = 0.45
    out = seg.post_process(probs[None], (4, 4))
    assert (out.labels == FASCIA).all() == (seg.post.threshold_for("fascia") < 0.45)


def test_flip_tta_averages_the_mirror_image(tmp_path):
    seg = copy_model(tmp_path, lambda m: m.setdefault("post_process", {}).update(tta_flip=True))
    plain = Segmenter(SegmentationSettings()).load()
    rng = np.random.default_rng(3)
    x = rng.random((1, 1) + seg.input_hw).astype(np.float32)
    xf = np.ascontiguousarray(x[..., ::-1])
    want = 0.5 * (plain.predict(x) + plain.predict(xf)[..., ::-1])
    got = seg.predict(x)
    assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(got, plain.predict(x), atol=1e-3)
    # mirror symmetric: the TTA output of the mirror image is the mirrored TTA output
    assert np.allclose(seg.predict(xf), got[..., ::-1], atol=1e-5)
