"""`assistant needle-eval`: the tracked needle tip through a video against marked tips, on a
simulated clip whose true tips `assistant simulate` writes."""
from __future__ import annotations

import csv
import json

import pytest

from assistant import cli
from models import needle_eval


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert cli.main(["simulate", "--out", str(out), "--seconds", "4", "--seed", "7"]) == 0
    meta = json.loads((out / "clip_meta.json").read_text())
    return out, meta


def _shifted(src, dst, dx):
    with open(src, newline="") as f, open(dst, "w", newline="") as g:
        rows = list(csv.reader(f))
        w = csv.writer(g)
        w.writerow(rows[0])
        for r in rows[1:]:
            w.writerow([r[0], f"{float(r[1]) + dx:.2f}", r[2]] if r[1] else r)


def test_simulate_writes_the_true_tips_and_the_tracked_tip_is_near_them(clip, tmp_path, capsys):
    out, meta = clip
    tips = out / "clip_tips.csv"
    visible = sum(bool(f["needle"]["visible"] and f["needle"]["tip_px"]) for f in meta["frames"])
    assert 0 < visible < len(meta["frames"])
    assert len(needle_eval.read_tips(tips)) == len(meta["frames"])
    rep = tmp_path / "r.json"
    assert needle_eval.main([str(out / "clip.mp4"), "--tips", str(tips), "--spacing-mm",
                             str(meta["spacing_mm"]), "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["marked_frames"] == visible and r["frames_read"] == len(meta["frames"])
    assert r["reported_in_marked"] >= 0.8 * visible  # the shaft gate takes 3 frames
    assert r["tip_error_mm"]["median"] < 1.0
    assert r["false_needle_frames"] == 0 and r["no_needle_frames"] == len(meta["frames"]) - visible
    assert "within 2 mm:" in capsys.readouterr().out
    # marks 30 px to the side: the error it reports follows the marks, not the model
    _shifted(tips, tmp_path / "off.csv", 30.0)
    assert needle_eval.main([str(out / "clip.mp4"), "--tips", str(tmp_path / "off.csv"),
                             "--spacing-mm", str(meta["spacing_mm"]), "--json", str(rep)]) == 0
    assert 25 < json.loads(rep.read_text())["tip_error_px"]["median"] < 35


def test_only_listed_scores_the_listed_frames_alone(clip, tmp_path):
    out, meta = clip
    rows = list(csv.reader(open(out / "clip_tips.csv", newline="")))
    sparse = tmp_path / "every10.csv"
    with open(sparse, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0])
        w.writerows(r for r in rows[1:] if int(r[0]) % 10 == 0)
    rep = tmp_path / "r.json"
    assert needle_eval.main([str(out / "clip.mp4"), "--tips", str(sparse), "--only-listed",
                             "--spacing-mm", str(meta["spacing_mm"]), "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert [row["frame"] for row in r["frames"]] == list(range(0, len(meta["frames"]), 10))


@pytest.mark.parametrize("text, words", [
    ("", "header frame,x,y"),
    ("f,x,y\n1,2,3\n", "header frame,x,y"),
    ("frame,x,y\n", "no annotated frame"),
    ("frame,x,y\n-1,2,3\n", "line 2: frame '-1' is not a frame index"),
    ("frame,x,y\n1,2,3\n1,4,5\n", "line 3: frame 1 is listed twice"),
    ("frame,x,y\n1,2,\n", "line 2: x, y '2', '' are not pixel coordinates"),
    ("frame,x,y\n1,a,3\n", "line 2: x, y 'a', '3'"),
])
def test_a_bad_tips_file_is_named_with_its_line(tmp_path, text, words):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(needle_eval.NeedleEvalError, match=words.replace("(", r"\(")):
        needle_eval.read_tips(p)


def test_blank_marks_are_frames_without_a_needle(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("frame,x,y\n0,,\n3,10.5,20\n\n")
    assert needle_eval.read_tips(p) == {0: None, 3: (10.5, 20.0)}


def test_bad_arguments_are_refused_by_name(clip, tmp_path, capsys):
    out, meta = clip
    tips = str(out / "clip_tips.csv")
    assert needle_eval.main([str(out / "clip.mp4"), "--tips", tips, "--spacing-mm", "0"]) == 2
    assert "--spacing-mm must be a number > 0" in capsys.readouterr().err
    assert needle_eval.main([str(tmp_path / "none.mp4"), "--tips", tips, "--spacing-mm", "0.1"]) == 2
    assert "none.mp4: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert needle_eval.main([str(bad), "--tips", tips, "--spacing-mm", "0.1"]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["needle-eval", "--help"])
    assert exc.value.code == 0


def test_the_sites_segmentation_settings_are_the_ones_measured(clip, tmp_path, capsys):
    out, meta = clip
    args = ["needle-eval", str(out / "clip.mp4"), "--tips", str(out / "clip_tips.csv"),
            "--spacing-mm", str(meta["spacing_mm"])]
    site = tmp_path / "site.yaml"
    site.write_text("segmentation:\n  needle_filter: one_euro\n")
    assert cli.main(["--config", str(site), *args]) == 0
    assert "tracker filter one_euro" in capsys.readouterr().out
    assert cli.main(args) == 0  # the repo's config.yaml
    assert "tracker filter alpha_beta" in capsys.readouterr().out


def test_a_folder_of_frame_images_gives_what_the_video_gives(clip, tmp_path, capsys):
    import cv2
    out, meta = clip
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    k = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(frames / f"f{k:04d}.png"), frame)
        k += 1
    cap.release()
    common = ["--tips", str(out / "clip_tips.csv"), "--spacing-mm", str(meta["spacing_mm"])]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert needle_eval.main([str(out / "clip.mp4"), *common, "--json", str(a)]) == 0
    assert needle_eval.main([str(frames), *common, "--fps", str(meta["fps"]), "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("frames_read", "marked_frames", "reported_in_marked", "tip_error_px",
                "false_needle_frames"):
        assert ra[key] == rb[key], key
    # a folder needs its frame rate; an unreadable image is named and skipped
    assert needle_eval.main([str(frames), *common]) == 2
    assert "give its frame rate, --fps" in capsys.readouterr().err
    (frames / "f0000.png").write_bytes(b"not an image")
    assert needle_eval.main([str(frames), *common, "--fps", "20", "--json", str(b)]) == 0
    assert "not scored: cannot read image" in capsys.readouterr().err
    assert json.loads(b.read_text())["frames_read"] == ra["frames_read"]
