"""models.train --distill: a trained model teaches the net on some classes of some datasets
(knowledge distillation, a screen; off in the shipped recipe).

The teacher must look at the same place as the student (its probabilities cut to the
student's window), teach only where asked, and leave augment() exactly as before when off.
The teacher here is the shipped model on a simulated frame, where it finds the vessel."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")

from models.simulator import simulate_frame  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "pecs_seg.onnx"
VESSEL, NERVE = train_mod.CH["vessel"], train_mod.CH["nerve"]


@pytest.fixture(scope="module")
def frame():
    f = simulate_frame(np.random.default_rng(7))
    assert (f.labels == train_mod.CLASSES.index("vessel")).sum() > 500
    return f


def _as(source, f):
    return train_mod.Sample(f.image, f.labels, source, f"{source}.png")


def test_asking_for_the_view_changes_no_random_draw(frame):
    s = _as("usgra", frame)
    for k in range(8):
        x0, lab0 = train_mod.augment(s, 192, np.random.default_rng(k), 128)
        x1, lab1, view, window = train_mod.augment(s, 192, np.random.default_rng(k), 128,
                                                   with_view=True)
        assert np.array_equal(x0, x1) and np.array_equal(lab0, lab1)
        assert view.dtype == np.uint8 and view.shape == (192, 192)
        assert window[2:] == x1.shape == (128, 128)


def test_the_window_is_where_the_student_looks(frame):
    """The view's window is the student's input before the intensity changes: the two are
    strongly correlated, and a window one quarter off is not."""
    s = _as("usgra", frame)
    for k in range(8):
        x, _, view, (y0, x0, h, w) = train_mod.augment(s, 192, np.random.default_rng(k), 128,
                                                       with_view=True)
        here = view[y0:y0 + h, x0:x0 + w].astype(np.float32)
        r = np.corrcoef(here.ravel(), x.ravel())[0, 1]
        y1 = (y0 + 32) % 65
        there = view[y1:y1 + h, x0:x0 + w].astype(np.float32)
        assert r > 0.8, (k, r)
        assert r > np.corrcoef(there.ravel(), x.ravel())[0, 1] + 0.2


def test_the_teacher_marks_the_vessel_where_the_labels_put_it_and_only_teaches_where_asked(frame):
    teacher = train_mod.Teacher(SHIPPED, ("nerve", "vessel"), ("usgra",))
    samples = [_as("usgra", frame), _as("sim", frame)]
    rng = np.random.default_rng(3)
    for _ in range(4):
        x, y, m, pm, t, tm = train_mod.batch(samples, np.array([0, 1]), 192, rng, 128,
                                             teacher=teacher)
        assert t.shape == y.shape and tm.shape == m.shape
        assert tm[0].nonzero().flatten().tolist() == sorted([NERVE, VESSEL])
        assert float(tm[1].abs().sum()) == 0 and float(t[1].abs().sum()) == 0
        vessel = y[0, VESSEL] > 0
        if vessel.sum() > 200:  # the window holds the artery: the teacher's vessel is on it
            assert float(t[0, VESSEL][vessel].mean()) > 0.5
            assert float(t[0, VESSEL][~vessel].mean()) < 0.1
    # and without a teacher, batch() is what it was
    assert len(train_mod.batch(samples, np.array([0]), 192, rng, 128)) == 4


def test_the_distillation_loss_counts_only_the_taught_channels():
    logits = torch.zeros(2, train_mod.NC, 8, 8)
    t = torch.zeros_like(logits)
    tm = torch.zeros(2, train_mod.NC)
    assert float(train_mod.distill_loss(logits, t, tm)) == 0.0
    tm[0, VESSEL] = 1
    t[0, VESSEL] = 1.0
    t[1] = 1.0  # not taught: ignored
    # BCE of p = 0.5 against 1 is log 2 on every taught pixel
    assert float(train_mod.distill_loss(logits, t, tm)) == pytest.approx(np.log(2), rel=1e-5)


def test_training_with_a_teacher_learns_its_map(frame):
    """A few iterations move the net towards the teacher's map of a class the sample's own
    labels do not supervise (pectoralis major on a "usgra" image: only the teacher does)."""
    teacher = train_mod.Teacher(SHIPPED, ("pec_major",), ("usgra",), weight=1.0)
    s = _as("usgra", frame)

    def gap(net):
        rng = np.random.default_rng(11)
        x, _, _, _, t, tm = train_mod.batch([s] * 4, np.arange(4), 64, rng, 0, teacher=teacher)
        net.eval()
        with torch.no_grad():
            return float(train_mod.distill_loss(net(x), t, tm))

    def trained(with_teacher):
        torch.manual_seed(0)
        return train_mod.train([s], 80, 64, 4, 3e-3, 0, 4, None, {}, init=train_mod.SegNet(4),
                               teacher=teacher if with_teacher else None)

    torch.manual_seed(0)
    before = gap(train_mod.SegNet(4))
    taught, alone = gap(trained(True)), gap(trained(False))
    assert taught < 0.7 * before and taught < 0.7 * alone, (before, taught, alone)


def test_a_teacher_with_other_classes_or_no_file_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no teacher model"):
        train_mod.Teacher(tmp_path / "none.onnx", ("nerve",), ("usgra",))
    bad = tmp_path / "t.onnx"
    bad.write_bytes(SHIPPED.read_bytes())
    manifest = json.loads(SHIPPED.with_suffix(".json").read_text())
    manifest["classes"] = ["background", "nerve", "vessel"]  # another model's classes
    bad.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="channels"):
        train_mod.Teacher(bad, ("nerve",), ("usgra",))


def test_cross_validation_needs_a_folder_of_fold_teachers(tmp_path):
    with pytest.raises(SystemExit, match="folder holding foldK.onnx"):
        train_mod.main(["--cv", "3", "--distill", str(SHIPPED), "--data", str(tmp_path),
                        "--cache", str(tmp_path)])
