"""What models.train supervises: real images as needle negatives (`--real-absent needle`), and
fold models with an early last stage loaded exactly.

Training needs torch (the dev extra, so CI runs these); a runtime-only environment skips them.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")

NEEDLE = train_mod.NEEDLE_CH
NERVE, VESSEL = train_mod.CH["nerve"], train_mod.CH["vessel"]


@pytest.fixture
def real_absent(monkeypatch):
    def set_(names):
        monkeypatch.setattr(train_mod, "REAL_ABSENT", list(names))
    return set_


def usgra_sample(size=64):
    img = (np.random.default_rng(5).random((size, size)) * 255).astype(np.uint8)
    lab = np.zeros((size, size), np.uint8)
    lab[10:20, 10:20] = train_mod.CLASSES.index("nerve")
    return train_mod.Sample(img, lab, "usgra", "u.png")


def test_a_real_image_supervises_the_needle_as_absent_everywhere_only_when_asked(real_absent):
    s = usgra_sample()
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    real_absent([])
    _, y0, m0, pm0 = train_mod.batch([s], np.array([0]), 64, rng())
    assert m0[0, NEEDLE] == 0 and m0[0, NERVE] == 1
    # the needle channel is supervised only where usgra marks a nerve or vessel (exclusion)
    assert 0 < float(pm0[0, NEEDLE].mean()) < 0.2
    real_absent(["needle"])
    _, y1, m1, pm1 = train_mod.batch([s], np.array([0]), 64, rng())
    assert m1[0, NEEDLE] == 1 and float(pm1[0, NEEDLE].min()) == 1.0
    assert float(y1[0, NEEDLE].max()) == 0.0
    assert torch.equal(y0, y1)  # the same window: only what is supervised changed
    # the simulator labels the needle itself, as before
    assert train_mod.channel_mask("sim")[NEEDLE] == 1
    assert train_mod.channel_mask("dltrack")[NEEDLE] == 1


def test_the_negatives_can_be_kept_to_some_real_datasets(real_absent, monkeypatch):
    real_absent(["needle"])
    monkeypatch.setattr(train_mod, "REAL_ABSENT_SOURCES", ["usgra"])
    assert train_mod.channel_mask("usgra")[NEEDLE] == 1
    # DL_Track's aponeuroses keep an unsupervised needle channel (away from their own masks)
    assert train_mod.channel_mask("dltrack")[NEEDLE] == 0
    assert train_mod.channel_mask("dltrack")[train_mod.CH["fascia"]] == 1


def test_a_needle_painted_on_a_real_image_costs_only_with_real_absent(real_absent):
    s = usgra_sample()
    logits = torch.full((1, train_mod.NC, 64, 64), -6.0)
    logits[0, NEEDLE, 40:44, 5:60] = 6.0  # a confident "needle" on a volunteer's scan
    losses = []
    for names in ([], ["needle"]):
        real_absent(names)
        _, y, m, pm = train_mod.batch([s], np.array([0]), 64, np.random.default_rng(0))
        clean = logits.clone()
        clean[0, NEEDLE] = -6.0
        losses.append(float(train_mod.loss_fn(logits, y, m, pm) - train_mod.loss_fn(clean, y, m, pm)))
    assert abs(losses[0]) < 1e-6  # not supervised there: free to paint
    assert losses[1] > 1e-3


def test_an_early_upadd_skip_bias_is_folded_into_the_up_bias_exactly(monkeypatch):
    monkeypatch.setattr(train_mod, "_BN", [False])
    torch.manual_seed(4)
    early = train_mod.SegNet(6, last_kernel=1).eval()
    conv = early.d0.skip[0]
    biased = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
    with torch.no_grad():
        biased.weight.copy_(conv.weight)
        biased.bias.uniform_(-0.3, 0.3)
        for name, p in early.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
    early.d0.skip[0] = biased  # the fold models' last stage
    sd = early.state_dict()
    assert "d0.skip.0.bias" in sd
    now = train_mod.SegNet(6, last_kernel=1).eval()
    now.load_state_dict(train_mod.fold_skip_bias(sd))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert float((now(x) - early(x)).abs().max()) < 1e-5
    assert train_mod.fold_skip_bias(now.state_dict()).keys() == now.state_dict().keys()


def test_the_injectate_pocket_is_a_hard_negative_of_the_vessel_channel_only_when_asked(monkeypatch):
    from models.simulator import SimParams, simulate_frame

    # the simulator knows where its injectate is: a dark pocket at the tip, labelled background
    f = simulate_frame(11, SimParams(la_radius_mm=7.0, needle=None))
    assert f.fluid is not None and f.fluid.sum() > 500
    assert not f.labels[f.fluid].any()
    assert float(f.image[f.fluid].mean()) < 0.5 * float(f.image[f.labels > 0].mean())
    assert simulate_frame(11, SimParams(needle=None)).fluid is None
    marked = train_mod.make_sim(8, 5000, la=True, pocket=True)
    plain = train_mod.make_sim(8, 5000, la=True)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(marked, plain))
    k = next(i for i, s in enumerate(marked) if (s.labels == train_mod.POCKET_LABEL).sum() > 500)
    s = marked[k]
    pocket = s.labels == train_mod.POCKET_LABEL
    # the same labels elsewhere; the pocket is still background to every class
    assert np.array_equal(s.labels[~pocket], plain[k].labels[~pocket])
    assert not plain[k].labels[pocket].any()

    def one(weight):
        monkeypatch.setattr(train_mod, "POCKET_WEIGHT", [weight])
        # no crop, no patch: the window is the whole frame (the same draws each time)
        return train_mod.batch([s], np.array([0]), 320, np.random.default_rng(3))

    _, y0, _, pm0 = one(0.0)
    x1, y1, _, pm1 = one(10.0)
    assert torch.equal(y0, y1) and float(y1.sum(dim=1).max()) <= 1.0  # targets unchanged
    heavy = pm1[0, VESSEL] == 10.0
    assert int(heavy.sum()) > 100 and float(pm0[0, VESSEL].max()) == 1.0
    assert float(y1[0, :, heavy].max()) == 0.0  # only background pixels weigh more
    others = [c for c in range(train_mod.NC) if c != VESSEL]
    assert torch.equal(pm0[0, others], pm1[0, others])  # only the vessel channel
    # the heavy pixels are the dark pocket of the frame the net sees
    assert float(x1[0, 0][heavy].mean()) < 0.5 * float(x1[0, 0][~heavy].mean())
