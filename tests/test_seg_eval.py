"""seg-eval on a small generated set: its figures equal Dice/IoU computed here by hand."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from models.classes import CLASS_INDEX
from models.seg_eval import main, parse_map, EvalError
from models.segmenter import Segmenter
from models.settings import SegmentationSettings
from models.simulator import SimParams, simulate_frame


def palette_png(path, values):
    im = Image.fromarray(values.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three simulated frames of different sizes (one saved in colour), palette masks with
    vessel=2 and nerve=1, and 0/255 masks of the fascia."""
    root = tmp_path_factory.mktemp("segeval")
    for d in ("images", "masks", "fmasks"):
        (root / d).mkdir()
    for k, (seed, size) in enumerate([(11, (271, 281)), (12, (300, 300)), (13, (542, 562))]):
        f = simulate_frame(seed, SimParams(size=size, needle=None))
        img = f.image if k != 1 else cv2.cvtColor(f.image, cv2.COLOR_GRAY2BGR)
        cv2.imwrite(str(root / "images" / f"f{k}.png"), img)
        vals = np.zeros(size, np.uint8)
        vals[f.labels == CLASS_INDEX["nerve"]] = 1
        vals[f.labels == CLASS_INDEX["vessel"]] = 2
        palette_png(root / "masks" / f"f{k}.png", vals)
        cv2.imwrite(str(root / "fmasks" / f"f{k}.png"),
                    np.where(f.labels == CLASS_INDEX["fascia"], 255, 0).astype(np.uint8))
    return root


def by_hand(root, mask_dir, cls, value):
    """Mean Dice and IoU over images whose mask holds the value, computed independently."""
    seg = Segmenter(SegmentationSettings())
    dices, ious = [], []
    for p in sorted((root / "images").glob("*.png")):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        gt = np.array(Image.open(root / mask_dir / p.name)) == value
        if not gt.any():
            continue
        pr = seg.segment(img).labels == CLASS_INDEX[cls]
        inter = np.logical_and(pr, gt).sum()
        dices.append(2 * inter / (pr.sum() + gt.sum()))
        ious.append(inter / np.logical_or(pr, gt).sum())
    return float(np.mean(dices)), float(np.mean(ious)), len(dices)


def test_dice_matches_hand_computation(dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["--images", str(dataset / "images"), "--masks", str(dataset / "masks"),
               "--map", "nerve=1,vessel=2", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["images"] == 3
    d, i, n = by_hand(dataset, "masks", "vessel", 2)
    assert r["per_class"]["vessel"]["dice"] == pytest.approx(d, abs=1e-9)
    assert r["per_class"]["vessel"]["iou"] == pytest.approx(i, abs=1e-9)
    assert r["per_class"]["vessel"]["images"] == n
    printed = capsys.readouterr().out
    assert "vessel" in printed and f"{d:.3f}" in printed


def test_binary_255_masks_work(dataset, tmp_path):
    out = tmp_path / "f.json"
    assert main(["--images", str(dataset / "images"), "--masks", str(dataset / "fmasks"),
                 "--map", "fascia=255", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    d, _, n = by_hand(dataset, "fmasks", "fascia", 255)
    assert n == 3 and r["per_class"]["fascia"]["dice"] == pytest.approx(d, abs=1e-9)
    assert r["per_class"]["fascia"]["hd95_px"] is not None


@pytest.mark.parametrize("make,args,words", [
    (None, ["--images", "NOPE", "--masks", "NOPE", "--map", "nerve=1"], "does not exist"),
    ("empty", ["--map", "nerve=1"], "no images"),
    ("nomask", ["--map", "nerve=1"], "no mask"),
    ("ok", ["--map", "liver=3"], "unknown class 'liver'"),
    ("ok", ["--map", "nerve=x"], "integer"),
    ("ok", ["--map", "nerve=1,vessel=1"], "value 1 to both 'nerve' and 'vessel'"),
    ("ok", ["--map", "nerve=1", "--spacing-mm", "nan"], "--spacing-mm must be a number > 0"),
    ("ok", ["--map", "nerve=1", "--threads", "0"], "--threads must be >= 1"),
    ("corrupt", ["--map", "nerve=1"], "no pair could be scored; first: a.png: cannot read image"),
])
def test_clear_errors(tmp_path, capsys, make, args, words):
    img, msk = tmp_path / "i", tmp_path / "m"
    img.mkdir()
    msk.mkdir()
    if make in ("nomask", "ok"):
        cv2.imwrite(str(img / "a.png"), np.zeros((20, 20), np.uint8))
    if make == "ok":
        cv2.imwrite(str(msk / "a.png"), np.zeros((20, 20), np.uint8))
    if make == "corrupt":
        (img / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        cv2.imwrite(str(msk / "a.png"), np.zeros((20, 20), np.uint8))
    if make is not None:
        args = ["--images", str(img), "--masks", str(msk)] + args
    assert main(args) == 2
    assert words in capsys.readouterr().err


def test_a_bad_pair_is_skipped_and_named_and_the_rest_scored(dataset, tmp_path, capsys):
    import shutil
    img, msk = tmp_path / "i", tmp_path / "m"
    shutil.copytree(dataset / "images", img)
    shutil.copytree(dataset / "masks", msk)
    (img / "f1.png").write_bytes((img / "f1.png").read_bytes()[:200])  # cut off
    palette_png(msk / "f2.png", np.zeros((10, 10), np.uint8))  # another size
    out = tmp_path / "r.json"
    assert main(["--images", str(img), "--masks", str(msk), "--map", "nerve=1,vessel=2,fascia=7",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 1 and [s["image"] for s in r["skipped"]] == ["f1.png", "f2.png"]
    assert "cannot read image" in r["skipped"][0]["why"] and "10x10" in r["skipped"][1]["why"]
    assert r["values_in_no_mask"]["fascia"] == 7 and "vessel" not in r["values_in_no_mask"]
    printed = capsys.readouterr()
    assert "skipped f1.png: cannot read image" in printed.out and "2 skipped" in printed.out
    assert "no mask holds the value 7 given to 'fascia'" in printed.out
    assert "[ERROR" not in printed.err  # OpenCV's own log line is not shown
    # the one good pair scores as it does alone
    one = tmp_path / "one"
    (one / "i").mkdir(parents=True)
    (one / "m").mkdir()
    shutil.copy(dataset / "images" / "f0.png", one / "i")
    shutil.copy(dataset / "masks" / "f0.png", one / "m")
    assert main(["--images", str(one / "i"), "--masks", str(one / "m"), "--map",
                 "nerve=1,vessel=2", "--json", str(one / "r.json")]) == 0
    alone = json.loads((one / "r.json").read_text())
    assert r["per_class"]["vessel"] == alone["per_class"]["vessel"]


def test_an_unwritable_json_is_refused_before_scoring(dataset, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for bad, words in ((tmp_path, "is a folder"), (tmp_path / "afile" / "r.json", "is a file")):
        assert main(["--images", str(dataset / "images"), "--masks", str(dataset / "masks"),
                     "--map", "nerve=1", "--json", str(bad)]) == 2
        got = capsys.readouterr()
        assert words in got.err and got.out == ""  # nothing scored first


def test_parse_map():
    assert parse_map("nerve=1, vessel=2") == {"nerve": 1, "vessel": 2}
    with pytest.raises(EvalError, match="twice"):
        parse_map("nerve=1,nerve=2")


def test_confidence_splits_the_shown_images_into_sure_and_unsure(tmp_path):
    """A segmenter that also reports confidences: of the images where it shows the vessel,
    those below --min-confidence count as unsure, each side with its own mean Dice."""
    from types import SimpleNamespace

    from models.seg_eval import evaluate_pairs, pair_files

    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    vessel = CLASS_INDEX["vessel"]
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 2  # 100 px of vessel
    shown = {0: (slice(5, 15), 0.3), 1: (slice(5, 10), 0.9), 2: (slice(10, 15), 0.8), 3: (None, 0.0)}
    for k in shown:
        cv2.imwrite(str(tmp_path / "i" / f"{k}.png"), np.full((20, 20), k, np.uint8))
        cv2.imwrite(str(tmp_path / "m" / f"{k}.png"), gt)

    def segment(image):
        rows, conf = shown[int(image[0, 0])]
        labels = np.zeros((20, 20), np.uint8)
        if rows is not None:
            labels[rows, 5:15] = vessel
        confidence = [0.0] * 10
        confidence[vessel] = conf
        return SimpleNamespace(labels=labels, confidence=confidence)

    r = evaluate_pairs(pair_files(tmp_path / "i", tmp_path / "m"), {"vessel": 2}, segment)["per_class"]["vessel"]
    half = 2 * 50 / (50 + 100)  # the two images showing half the vessel
    assert (r["images"], r["unsure_images"], r["sure_images"]) == (4, 1, 2)  # image 3 shows none
    assert r["unsure_dice"] == pytest.approx(1.0) and r["sure_dice"] == pytest.approx(half)
    r = evaluate_pairs(pair_files(tmp_path / "i", tmp_path / "m"), {"vessel": 2}, segment,
                       min_confidence=0.85)["per_class"]["vessel"]
    assert (r["unsure_images"], r["sure_images"]) == (2, 1)
    # a segmenter that reports labels only gives the table without the split
    plain = evaluate_pairs(pair_files(tmp_path / "i", tmp_path / "m"), {"vessel": 2},
                           lambda im: segment(im).labels)["per_class"]["vessel"]
    assert "unsure_images" not in plain and plain["dice"] == pytest.approx(r["dice"])


def test_min_confidence_out_of_range_is_refused(dataset, capsys):
    assert main(["--images", str(dataset / "images"), "--masks", str(dataset / "masks"),
                 "--map", "vessel=2", "--min-confidence", "1.5"]) == 2
    assert "--min-confidence must be in [0, 1], got 1.5" in capsys.readouterr().err
