"""Packing the real data for a GPU machine (`python -m models.pack_data`) keeps every label,
and the trainer refuses masks whose values are not labels (a palette mask re-saved as grey).

Training needs torch (the dev extra, so CI runs these); a runtime-only environment skips them.
"""
import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")
pack = pytest.importorskip("models.pack_data")


def make_data(root, n=4, shape=(500, 600)):
    """usgra_seg with palette masks (0 background, 1 nerve, 2 vessel) and dltrack_apo with
    grey 0/255 masks, as the shared folders hold them."""
    rng = np.random.default_rng(3)
    for name in ("usgra_seg", "dltrack_apo"):
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir(parents=True)
    (root / "usgra_seg" / "LICENSE").write_text("CC-BY 4.0")
    h, w = shape
    for i in range(n):
        img = (rng.random(shape) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "usgra_seg" / "images" / f"{i:04d}.png"), img)
        m = np.zeros(shape, np.uint8)
        m[100 + 10 * i:200 + 10 * i, 150:300] = 1
        m[300:380, 350 + 20 * i:460 + 20 * i] = 2
        p = Image.fromarray(m, mode="P")
        p.putpalette([0, 0, 0, 255, 255, 0, 255, 0, 0] + [0] * 759)
        p.save(root / "usgra_seg" / "masks" / f"{i:04d}.png")
        cv2.imwrite(str(root / "dltrack_apo" / "images" / f"img_{i:05d}.png"), img)
        a = np.zeros(shape, np.uint8)
        a[200 + 5 * i:215 + 5 * i, :] = 255
        cv2.imwrite(str(root / "dltrack_apo" / "masks" / f"img_{i:05d}.png"), a)


def test_packed_data_is_smaller_and_holds_the_same_labels(tmp_path):
    src, dst = tmp_path / "data", tmp_path / "packed"
    make_data(src)
    assert pack.main(["--data", str(src), "--out", str(dst),
                      "--max-side", "usgra_seg=200", "dltrack_apo=150"]) == 0
    us = train_mod.load_usgra(dst)
    assert [s.image.shape for s in us] == [(167, 200)] * 4  # 500x600 -> longest side 200
    nerve, vessel = train_mod.CLASSES.index("nerve"), train_mod.CLASSES.index("vessel")
    orig = train_mod.load_usgra(src)
    for a, b in zip(orig, us):  # the nerve and vessel keep their share of the frame
        for c in (nerve, vessel):
            assert (b.labels == c).mean() == pytest.approx((a.labels == c).mean(), abs=0.01)
    dl = train_mod.load_dltrack(dst)
    assert all(max(s.image.shape) == 150 and (s.labels > 0).any() for s in dl)
    assert (dst / "usgra_seg" / "LICENSE").read_text() == "CC-BY 4.0"


def test_a_palette_mask_saved_as_grey_is_refused_by_name(tmp_path):
    src = tmp_path / "data"
    make_data(src, n=2)
    bad = src / "usgra_seg" / "masks" / "0001.png"
    grey = cv2.imread(str(bad), cv2.IMREAD_GRAYSCALE)  # palette colours as grey levels
    cv2.imwrite(str(bad), grey)
    with pytest.raises(ValueError, match=r"0001\.png.*not labels of usgra_seg"):
        train_mod.load_usgra(src)


def test_verify_names_an_image_whose_labels_changed(tmp_path):
    src, dst = tmp_path / "data", tmp_path / "packed"
    make_data(src, n=2)
    assert pack.main(["--data", str(src), "--out", str(dst)]) == 0
    m = cv2.imread(str(dst / "usgra_seg" / "masks" / "0000.png"), cv2.IMREAD_GRAYSCALE)
    m[m == 2] = 0  # the vessel lost
    cv2.imwrite(str(dst / "usgra_seg" / "masks" / "0000.png"), m)
    with pytest.raises(ValueError, match=r"0000\.png: classes"):
        pack.verify(src, dst)


def test_bad_arguments_are_named(tmp_path, capsys):
    assert pack.main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "usgra_seg" in capsys.readouterr().err
    assert pack.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"),
                      "--max-side", "usgra=10"]) == 2
    assert "--max-side 'usgra=10'" in capsys.readouterr().err
