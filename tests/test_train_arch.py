"""models.train's two last stages: the 3x3 one and `UpAdd` (a 1x1 computed before upsampling),
and the conversion of a trained 3x3 stage into an UpAdd to fine-tune from.

Training needs torch (the dev extra, so CI runs the first two); exporting needs onnx (the train
extra), so the round trip through an ONNX file skips where onnx is missing.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")

BASE = 6


@pytest.fixture
def bn_free(monkeypatch):
    """SegNets as fine-tuning builds them: convolutions with biases, no BatchNorm."""
    monkeypatch.setattr(train_mod, "_BN", [False])
    torch.manual_seed(3)
    n3 = train_mod.SegNet(BASE, last_kernel=3).eval()
    with torch.no_grad():  # biases away from zero, so a dropped or misplaced bias shows
        for name, p in n3.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
    n1 = train_mod.SegNet(BASE, last_kernel=1).eval()
    n1.load_state_dict(train_mod.last_stage_to_1x1(n3.state_dict(), n1))
    return n3, n1


def test_the_converted_stage_answers_a_constant_image_as_the_3x3_did(bn_free):
    n3, n1 = bn_free
    inner = (..., slice(224, 288), slice(224, 288))  # beyond every border effect of a 512 frame
    outs = []
    for level in (0.2, 0.7):
        x = torch.full((1, 1, 512, 512), level)
        with torch.no_grad():
            a, b = n3(x), n1(x)
        assert float((a - b)[inner].abs().max()) < 1e-4
        outs.append(b[inner])
    # the output follows the input (not a constant that would match anyway) ...
    assert float((outs[0] - outs[1]).abs().max()) > 1e-3
    # ... and the two stages differ where the input is not constant (a real change of network)
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((n3(x) - n1(x)).abs().max()) > 1e-3


def test_upadd_is_a_1x1_over_the_full_resolution_concatenation(bn_free):
    """relu(up(W_y y + c) + W_f f) = relu(W [up(y); f] + c): upsampling after the 1x1 is exact."""
    _, n1 = bn_free
    y = torch.rand(1, BASE, 20, 24)
    f = torch.rand(1, 8, 40, 48)
    w = torch.cat([n1.d0.up[0].weight, n1.d0.skip[0].weight], 1)
    bias = n1.d0.up[0].bias
    ref = torch.relu(torch.nn.functional.conv2d(torch.cat([n1._up(y, f), f], 1), w, bias))
    with torch.no_grad():
        assert float((n1.d0(y, f) - ref).abs().max()) < 1e-5


def test_onnx_round_trip_and_a_refused_architecture(bn_free, tmp_path):
    pytest.importorskip("onnx")
    n3, n1 = bn_free
    frame = (np.random.default_rng(1).random((70, 90)) * 255).astype(np.uint8)
    p3, p1 = tmp_path / "k3.onnx", tmp_path / "k1.onnx"
    assert train_mod.export_onnx(n3, p3, 64, [frame]) < 1e-4
    assert train_mod.export_onnx(n1, p1, 64, [frame]) < 1e-4  # onnxruntime runs UpAdd as torch does
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        want = n1(x)
        # a 3x3 model fine-tuned as 1x1 starts from the conversion above
        assert float((train_mod.net_from_onnx(p3, BASE, 1)(x) - want).abs().max()) < 1e-5
        assert float((train_mod.net_from_onnx(p1, BASE, 1)(x) - want).abs().max()) < 1e-5
    # a run that does not say which last stage takes its starting model's
    assert (train_mod.onnx_last_kernel(p3), train_mod.onnx_last_kernel(p1)) == (3, 1)
    with pytest.raises(KeyError, match=r"d0\.up\.0\.weight.*last_kernel=3"):
        train_mod.net_from_onnx(p1, BASE, 3)
    with pytest.raises(ValueError, match="last_kernel must be 1 or 3, not 5"):
        train_mod.SegNet(BASE, last_kernel=5)


def test_the_context_block_lets_the_centre_see_the_whole_frame():
    # `--context 1`: two dilated 3x3 at the 1/16 bottleneck. Without them the centre pixel's
    # output depends on the middle ~140 px of a 192 frame only; with them, on every pixel
    fields = []
    for context in (0, 1):
        torch.manual_seed(0)
        net = train_mod.SegNet(BASE, last_kernel=1, context=context).eval()
        x = torch.rand(1, 1, 192, 192, requires_grad=True)
        net(x)[0, 0, 96, 96].backward()
        rows, cols = np.nonzero(x.grad[0, 0].abs().numpy() > 0)
        fields.append((rows.min(), rows.max(), cols.min(), cols.max()))
    (r0, r1, c0, c1), whole = fields
    assert r0 > 8 and c0 > 8 and r1 < 183 and c1 < 183
    assert whole == (0, 191, 0, 191)


def test_a_context_model_is_loaded_back_with_its_context(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setattr(train_mod, "_BN", [False])
    torch.manual_seed(4)
    net = train_mod.SegNet(BASE, last_kernel=1, context=1).eval()
    frame = (np.random.default_rng(2).random((70, 90)) * 255).astype(np.uint8)
    path = tmp_path / "ctx.onnx"
    assert train_mod.export_onnx(net, path, 64, [frame]) < 1e-4
    back = train_mod.net_from_onnx(path, BASE, 1)
    assert back.context == 1
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert float((back(x) - net(x)).abs().max()) < 1e-5


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_that_is_not_there_is_refused_by_name(tmp_path):
    """`--device cuda` where PyTorch sees no GPU: a clear error before any data is read."""
    with pytest.raises(SystemExit, match=r"--device cuda: not usable here"):
        train_mod.main(["--device", "cuda", "--data", str(tmp_path / "none"),
                        "--out", str(tmp_path / "m.onnx"), "--cache", str(tmp_path)])


def test_a_training_step_runs_on_the_device_asked_for_and_returns_on_the_cpu():
    """`train(device=...)`: the net trains where asked and comes back on the CPU for export
    (run here on the CPU, and on a GPU where the machine has one)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 255).astype(np.uint8)
    lab = np.zeros((64, 64), np.uint8)
    lab[20:40, 20:40] = train_mod.CLASSES.index("vessel")
    s = train_mod.Sample(img, lab, "usgra", "a.png")
    net = train_mod.train([s], 3, 32, 2, 1e-3, 0, BASE, None, {}, device=dev)
    assert net.iters_done == 3 and not net.training
    assert all(p.device.type == "cpu" for p in net.parameters())
