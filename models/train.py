"""Train the segmentation model (training only: needs torch, onnx, onnxscript).

    python -m models.train --data ../shared/data --out models/pecs_seg.onnx --iters 3000
    python -m models.train --data ../shared/data --cv 3 --iters 800 --cv-json /tmp/cv.json

Data: usgra_seg (nerve, vessel), dltrack_apo (aponeurosis -> fascia) and frames from
models.simulator (every class). A multi-label head (one sigmoid per non-background
class); the loss (BCE + soft Dice) is masked per sample to the classes its dataset
labels. Cross-validation holds out contiguous blocks of each real dataset (neighbouring
file names are often frames of one scan) and reports Dice per fold on held-out images
through the same post-processing as the runtime.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.classes import CLASSES, COLOURS_BGR
from models.data import list_images, read_grey, read_mask
from models.metrics import dice, hd95, iou
from models.needle import needle_tip_from_mask
from models.segmenter import file_sha256, pre_process_image, probs_to_output

log = logging.getLogger("models.train")

NC = len(CLASSES) - 1  # output channels: one per non-background class
CH = {name: i - 1 for i, name in enumerate(CLASSES) if i > 0}
NEEDLE_CH = CH["needle"]


@dataclass
class NeedleLoss:
    """Extra supervision of the thin, rare needle (off when ``weight`` is 0).

    The needle covers about 0.1 % of a batch's pixels: under the plain BCE + pooled Dice
    its logits were driven to about -8 everywhere and never recovered. This adds, on the
    needle channel of the samples that label it, a BCE whose positives weigh
    ``pos_weight`` times the negatives plus a batch soft Dice of its own, times
    ``weight``; the needle target is dilated by ``dilate`` px at the model's scale (the
    shaft is about 1 px wide at 192x192 and breaks up under nearest resizing)."""

    weight: float = 0.0
    pos_weight: float = 20.0
    dilate: int = 0
    channels: tuple = (NEEDLE_CH,)  # also other small simulated structures (sim nerve)


NEEDLE_LOSS = NeedleLoss()

#: label value of the injectate pocket in simulated frames made with ``pocket=True``: background
#: for every class (``targets``), kept apart so ``--pocket-weight`` can find its pixels
POCKET_LABEL = 255
#: ``--pocket-weight``: how many times the vessel channel's BCE counts on those pixels (0: off)
POCKET_WEIGHT = [0.0]
VESSEL_CH = CH["vessel"]


# ----------------------------------------------------------------------------- network

_BN = [True]  # False: conv with bias and no BN (for fine-tuning an exported model,
# whose BN the exporter folded into the convolutions)


# `--context`: a context block at the 1/16 bottleneck (see SegNet); 0 = none (every
# shipped model so far). A module setting like _BN, so every SegNet built in a run agrees.
CONTEXT = [0]


def cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1,
        bn: bool | None = None) -> nn.Sequential:
    """3x3 conv + BN + ReLU (``bn`` None: as `_BN` says). Plain convolutions: on CPUs (oneDNN,
    onnxruntime) they run faster per FLOP than depthwise ones at these small channel counts."""
    if not (_BN[0] if bn is None else bn):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=True),
                             nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def net_from_onnx(path: Path, base: int, last_kernel: int = 3) -> nn.Module:
    """A BN-free SegNet (or `models.pretrained.EffLiteSeg`, told by its weights' names) with
    the (BN-folded) weights of an exported model.

    ``last_kernel=1`` on a model trained with 3 (see `UpAdd`): the 3x3 kernel's taps are
    summed, which gives the same response to a locally constant input, and split between the
    decoder and stem inputs; a start to fine-tune from."""
    import onnx
    from onnx import numpy_helper

    _BN[0] = False
    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    context = int(any(n.startswith(("ctx.", "net.ctx.")) for n in init))
    segnet = not any(n.startswith("net.blocks.") for n in init)  # else models.pretrained's
    if segnet:
        net = SegNet(base, last_kernel=last_kernel, context=context)
        arch = f"SegNet(last_kernel={last_kernel})"
    else:
        from models.pretrained import EffLiteSeg
        net = EffLiteSeg(NC, bn=False)
        arch = "EffLiteSeg(bn=False)"
    new = {}
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        wname = node.input[1]
        key = wname[4:] if wname.startswith("net.") else wname
        new[key] = torch.from_numpy(init[wname].copy())
        if len(node.input) > 2 and node.input[2] in init:
            new[key[:-len("weight")] + "bias"] = torch.from_numpy(init[node.input[2]].copy())
    sd = net.state_dict()
    if segnet and last_kernel == 1 and "d0.0.weight" in new:
        new = last_stage_to_1x1(new, net)
    new = fold_skip_bias(new)
    extra = set(new) - set(sd)
    if extra:
        raise KeyError(f"{path}: {sorted(extra)} have no place in {arch}")
    missing = set(sd) - set(new)
    if missing:
        raise KeyError(f"{path} lacks {sorted(missing)} of {arch}")
    for k, v in new.items():
        if v.shape != sd[k].shape:
            raise KeyError(f"{path}: {k} has shape {tuple(v.shape)}, {arch} (base={base}) "
                           f"wants {tuple(sd[k].shape)}")
    net.load_state_dict(new)
    return net


def fold_skip_bias(weights: dict) -> dict:
    """An early `UpAdd` gave its skip branch a bias too (the v12 cross-validation fold models
    have one). A constant passes the bilinear upsampling unchanged, so the skip bias moves
    into the up branch's bias exactly; other weights are returned as they are."""
    if "d0.skip.0.bias" not in weights or "d0.up.0.bias" not in weights:
        return weights
    out = dict(weights)
    out["d0.up.0.bias"] = out["d0.up.0.bias"] + out.pop("d0.skip.0.bias")
    return out


def onnx_last_kernel(path: Path) -> int:
    """The last stage of an exported SegNet: 1 (`UpAdd`) or 3."""
    import onnx

    names = {i.name for i in onnx.load(str(path)).graph.initializer}
    return 1 if any(".d0.up." in n or n.startswith("d0.up.") for n in names) else 3


def last_stage_to_1x1(weights: dict, net: "SegNet") -> dict:
    """BN-free SegNet weights with a 3x3 last stage (``d0.0.*``) -> weights for ``net``'s
    `UpAdd`: the taps summed (the same response where the stage's input is locally constant),
    split between the decoder (``up``, with the bias) and stem (``skip``) inputs."""
    out = dict(weights)
    w = out.pop("d0.0.weight").sum(dim=(2, 3), keepdim=True)
    ny = net.d0.up[0].in_channels
    out["d0.up.0.weight"], out["d0.skip.0.weight"] = w[:, :ny], w[:, ny:]
    out["d0.up.0.bias"] = out.pop("d0.0.bias")
    return out


def _up(x, ref):
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class UpAdd(nn.Module):
    """The full-resolution last stage with a 1x1 kernel, computed cheaply: a 1x1 convolution
    commutes with bilinear upsampling, so relu(W [up(y); f] + c) = relu(up(W_y y + c) + W_f f),
    which mixes the half-resolution decoder at half resolution and needs no full-resolution
    concatenation. The 3x3 stage it replaces took a quarter of the CPU time."""

    def __init__(self, cy: int, cf: int, cout: int, bn: bool | None = None):
        super().__init__()
        bn = _BN[0] if bn is None else bn
        self.up = nn.Sequential(nn.Conv2d(cy, cout, 1, bias=not bn),
                                *([nn.BatchNorm2d(cout)] if bn else []))
        # no bias of its own: the up branch's carries through the upsampling unchanged
        self.skip = nn.Sequential(nn.Conv2d(cf, cout, 1, bias=False))

    def forward(self, y, f):
        return F.relu(_up(self.up(y), f) + self.skip(f))


class SegNet(nn.Module):
    """A compact U-Net: a full-resolution stem and last stage for thin structures (fascia,
    needle, pleura), encoder at 1/2..1/16, decoder with skips. Logits (N, NC, H, W).
    ``last_kernel`` 3: the last stage is a 3x3 over [up(decoder); stem]; 1: `UpAdd`."""

    def __init__(self, base: int = 12, nc: int = NC, full: int = 8, last_kernel: int = 3,
                 context: int | None = None):
        super().__init__()
        if last_kernel not in (1, 3):
            raise ValueError(f"last_kernel must be 1 or 3, not {last_kernel}")
        b = base
        self.last_kernel = last_kernel
        self.context = CONTEXT[0] if context is None else int(context)
        self.full = cbr(1, full)
        self.stem = cbr(full, b, 2)                                   # 1/2
        self.e1 = cbr(b, b)
        self.e2 = nn.Sequential(cbr(b, 2 * b, 2), cbr(2 * b, 2 * b))          # 1/4
        self.e3 = nn.Sequential(cbr(2 * b, 4 * b, 2), cbr(4 * b, 4 * b))      # 1/8
        self.e4 = nn.Sequential(cbr(4 * b, 6 * b, 2), cbr(6 * b, 6 * b))      # 1/16
        if self.context:
            # two dilated 3x3 (2 and 4) added to the bottleneck: its field of view grows from
            # part of the frame to all of it (12x12 cells at 192), cheaply (1/16 resolution).
            # Nerve errors are whole wrong regions (model card): a question of context.
            self.ctx = nn.Sequential(cbr(6 * b, 6 * b, dilation=2), cbr(6 * b, 6 * b, dilation=4))
        self.d3 = cbr(10 * b, 4 * b)
        self.d2 = cbr(6 * b, 2 * b)
        self.d1 = cbr(3 * b, b)
        self.d0 = cbr(b + full, full) if last_kernel == 3 else UpAdd(b, full, full)
        self.head = nn.Conv2d(full, nc, 1)

    _up = staticmethod(_up)

    def forward(self, x):
        f0 = self.full(x)
        x1 = self.e1(self.stem(f0))
        x2 = self.e2(x1)
        x3 = self.e3(x2)
        x4 = self.e4(x3)
        if self.context:
            x4 = x4 + self.ctx(x4)
        y = self.d3(torch.cat([self._up(x4, x3), x3], 1))
        y = self.d2(torch.cat([self._up(y, x2), x2], 1))
        y = self.d1(torch.cat([self._up(y, x1), x1], 1))
        if self.last_kernel == 3:
            y = self.d0(torch.cat([self._up(y, f0), f0], 1))
        else:
            y = self.d0(y, f0)
        return self.head(y)


class WithSigmoid(nn.Module):
    """What is exported: probabilities, so the runtime needs no activation code."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x))


# ----------------------------------------------------------------------------- data

@dataclass
class Sample:
    image: np.ndarray  # uint8 grey
    labels: np.ndarray  # uint8 CLASSES indices
    source: str  # usgra | dltrack | sim
    name: str
    extra: dict | None = None  # sim: needle tip, spacing


SOURCE_CLASSES = {
    "usgra": ("nerve", "vessel"),
    "dltrack": ("fascia",),
    "sim": tuple(CLASSES[1:]),
}


# Classes a real dataset is known never to hold (`--real-absent`): usgra_seg's volunteers and
# DL_Track's muscles were scanned without a needle, so on their images the needle channel is
# a label too, 0 on every pixel. Without it the needle was learnt from the simulator alone
# and the model painted bright specks of real scans as needle in half of all frames.
REAL_ABSENT: list[str] = []
REAL_ABSENT_SOURCES: list[str] = ["usgra", "dltrack"]  # the real datasets it applies to


def channel_mask(source: str) -> np.ndarray:
    """1 for each channel the sample's dataset supervises on every pixel."""
    m = np.zeros(NC, np.float32)
    names = SOURCE_CLASSES[source] + (tuple(REAL_ABSENT) if source in REAL_ABSENT_SOURCES else ())
    for name in names:
        m[CH[name]] = 1.0
    return m


# the label values each real dataset's masks may hold (anything else is a broken copy: a
# palette mask saved as grey turns usgra's 1 and 2 into 38 and 75, and the model then learns
# that no real image holds a nerve or a vessel)
MASK_VALUES = {"usgra_seg": (0, 1, 2), "dltrack_apo": (0, 255)}


def _checked_mask(path: Path, dataset: str) -> np.ndarray:
    m = read_mask(path)
    bad = sorted(set(np.unique(m).tolist()) - set(MASK_VALUES[dataset]))
    if bad:
        raise ValueError(f"mask {str(path)!r}: values {bad[:8]} are not labels of {dataset} "
                         f"(expected {list(MASK_VALUES[dataset])}); was it re-saved as an image?")
    return m


def load_usgra(root: Path) -> list[Sample]:
    out = []
    for p in list_images(root / "usgra_seg" / "images"):
        m = _checked_mask(root / "usgra_seg" / "masks" / p.name, "usgra_seg").astype(np.uint8)
        lab = np.zeros_like(m)
        lab[m == 1] = CLASSES.index("nerve")
        lab[m == 2] = CLASSES.index("vessel")
        out.append(Sample(read_grey(p), lab, "usgra", p.name))
    return out


def load_dltrack(root: Path) -> list[Sample]:
    out = []
    for p in list_images(root / "dltrack_apo" / "images"):
        m = _checked_mask(root / "dltrack_apo" / "masks" / p.name, "dltrack_apo")
        lab = np.where(m > 127, CLASSES.index("fascia"), 0).astype(np.uint8)
        out.append(Sample(read_grey(p), lab, "dltrack", p.name))
    return out


def _artery_needle_frame(rng: np.random.Generator):
    """A frame whose needle tip stops 0-4 mm from the artery's wall, half of them with
    local anaesthetic opening the plane (``--sim-artery``)."""
    from models.simulator import (SimParams, near_artery_needle, sample_anatomy,
                                  simulate_frame)

    anatomy = sample_anatomy(rng)
    probe = float(rng.uniform(-6.0, 6.0))
    needle = near_artery_needle(rng, anatomy, probe, float(rng.uniform(0.0, 4.0)))
    la = float(rng.uniform(2.0, 9.0)) if rng.random() < 0.5 else 0.0
    return simulate_frame(rng, SimParams(anatomy=anatomy, probe_x_mm=probe, needle=needle,
                                         la_radius_mm=la, time_s=float(rng.uniform(0, 1))))


def make_sim(n: int, seed: int, store_hw: tuple = (320, 320), cache: Path | None = None,
             needle_only: bool = False, la: bool = False, artery: bool = False,
             pocket: bool = False) -> list[Sample]:
    """n simulated 542x562 frames, stored downsized (the model sees them downsized).
    ``needle_only``: keep only frames whose labels hold a needle (drawing until n).
    ``la``: every frame shows local anaesthetic opening the plane (a dark pocket, 2-9 mm
    half-width, at the needle tip or the target), labelled as what it is not: no vessel,
    no pleura (the pocket is background). ``artery``: every needle stops 0-4 mm from the
    artery's wall, under its reverberations (``_artery_needle_frame``). ``pocket``: the
    injectate's pixels are labelled ``POCKET_LABEL`` (still background to every class)."""
    from models.simulator import SimParams, simulate_frame

    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:  # read each array once
            images, labels, meta = z["images"], z["labels"], json.loads(str(z["meta"]))
        return [Sample(images[i], labels[i], "sim", f"sim{seed}_{i}", meta[i])
                for i in range(len(meta))]
    imgs, labs, meta = [], [], []
    rng = np.random.default_rng(seed)
    while len(imgs) < n:
        if artery:
            f = _artery_needle_frame(rng)
        else:
            f = (simulate_frame(rng, SimParams(la_radius_mm=float(rng.uniform(2.0, 9.0))))
                 if la else simulate_frame(rng))
        if needle_only and not (f.needle["visible"] and f.needle["tip_px"] is not None):
            continue
        h, w = store_hw
        sx, sy = w / f.image.shape[1], h / f.image.shape[0]
        lab = f.labels
        if pocket and f.fluid is not None:
            lab = np.where(f.fluid, np.uint8(POCKET_LABEL), lab)
        imgs.append(cv2.resize(f.image, (w, h), interpolation=cv2.INTER_AREA))
        labs.append(cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST))
        meta.append({"tip_px": f.needle["tip_px"] if f.needle["visible"] else None,
                     "orig_hw": list(f.image.shape), "spacing_mm": f.spacing_mm,
                     "scale": [sx, sy]})
    if cache is not None:
        np.savez_compressed(cache, images=np.stack(imgs), labels=np.stack(labs),
                            meta=json.dumps(meta))
    return [Sample(imgs[i], labs[i], "sim", f"sim{seed}_{i}", meta[i]) for i in range(n)]


# --aug-us P: ultrasound-specific augmentation, each part drawn with a probability scaled by P
# (0: off, the shipped recipe). A probe held at another angle or pressing harder (rotation,
# shear, vertical squash), another time-gain-compensation setting (a smooth gain ramp with
# depth) and speckle of another grain (smoothed multiplicative noise).
AUG_US = [0.0]
# --zoom-out P MIN: with probability P a frame is shrunk to MIN..1 of the input size before
# its window is cut (P 0: off, the draws unchanged)
ZOOM_OUT = [0.0, 1.0]


def _tilt(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator):
    """Rotate (+-12 deg), shear (+-0.12) and squash (0.85-1.15 vertically) about the frame's
    centre; outside the frame is black background, as beside a real sector."""
    h, w = img.shape
    a = math.radians(rng.uniform(-12, 12))
    sh, sy = rng.uniform(-0.12, 0.12), rng.uniform(0.85, 1.15)
    m = np.array([[math.cos(a), -math.sin(a) + sh], [math.sin(a), math.cos(a) * sy]])
    c = np.array([w / 2, h / 2])
    t = c - m @ c
    M = np.hstack([m, t[:, None]]).astype(np.float32)
    img = cv2.warpAffine(np.ascontiguousarray(img), M, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lab = cv2.warpAffine(np.ascontiguousarray(lab), M, (w, h), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, lab


def _us_intensity(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    h, w = x.shape
    if rng.random() < 0.5 * p:  # time-gain compensation: brighter or darker with depth
        ramp = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
        a, b = rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.4)
        x = x * np.exp(a * ramp + b * (4 * ramp ** 2 - 1 / 3)).astype(np.float32)
    if rng.random() < 0.3 * p:  # speckle of another grain
        n = rng.normal(0, rng.uniform(0.05, 0.2), (h, w)).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), rng.uniform(0.6, 1.5))
        x = x * (1 + n)
    return x


def augment(s: Sample, size: int, rng: np.random.Generator, patch: int = 0,
            focus: int | tuple = 0, with_view: bool = False):
    """Random crop/scale, horizontal flip, gain/gamma, noise -> (img float, labels), at
    the model's scale (image resized to size x size), then a random patch x patch window
    when ``patch`` is set: the net is fully convolutional, and patches make an
    iteration about (size/patch)^2 times cheaper on a CPU.

    ``with_view``: also return the whole size x size frame the window was cut from (uint8,
    after crop, flip and tilt, before the intensity changes) and the window's (y0, x0, h, w),
    for a teacher to look at (``--distill``). The random draws are the same either way."""
    img, lab = s.image, s.labels
    h, w = img.shape
    if rng.random() < 0.8:
        area = rng.uniform(0.55, 1.0)
        ar = math.exp(rng.uniform(-0.25, 0.25))
        ch = int(min(h, round(h * math.sqrt(area) * ar)))
        cw = int(min(w, round(w * math.sqrt(area) / ar)))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        img, lab = img[y0:y0 + ch, x0:x0 + cw], lab[y0:y0 + ch, x0:x0 + cw]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)
    lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    if AUG_US[0] and rng.random() < 0.5 * AUG_US[0]:
        img, lab = _tilt(img, lab, rng)
    if ZOOM_OUT[0] and 0 < patch < size and rng.random() < ZOOM_OUT[0]:
        # zoom out: the whole frame smaller than the model's input, a window cut from it
        # (crops above only zoom in; models/MODEL_CARD.md, "The same weights at another
        # input size")
        side = max(patch, int(round(size * rng.uniform(ZOOM_OUT[1], 1.0))))
        img = cv2.resize(np.ascontiguousarray(img), (side, side), interpolation=cv2.INTER_AREA)
        lab = cv2.resize(np.ascontiguousarray(lab), (side, side), interpolation=cv2.INTER_NEAREST)
    side = img.shape[0]
    view = (img, (0, 0, side, side))
    if 0 < patch < size:
        y0, x0 = (int(v) for v in rng.integers(0, side - patch + 1, 2))
        if focus and rng.random() < 0.7:
            # one of the focus classes the frame holds, at random
            held = [c for c in np.atleast_1d(focus) if (lab == c).any()]
            c = held[int(rng.integers(len(held)))] if held else -1
            ys, xs = np.nonzero(lab == c)
            if len(ys):  # a window holding a pixel of the rare class
                j = int(rng.integers(len(ys)))
                y0 = int(np.clip(ys[j] - rng.integers(patch), 0, side - patch))
                x0 = int(np.clip(xs[j] - rng.integers(patch), 0, side - patch))
        img, lab = img[y0:y0 + patch, x0:x0 + patch], lab[y0:y0 + patch, x0:x0 + patch]
        view = (view[0], (y0, x0, patch, patch))
    x = img.astype(np.float32) / 255.0
    gamma = math.exp(rng.uniform(-0.35, 0.35))
    x = np.clip(x, 0, 1) ** gamma * rng.uniform(0.7, 1.3)
    if AUG_US[0]:
        x = _us_intensity(x, rng, AUG_US[0])
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(0.01, 0.05), x.shape).astype(np.float32)
    out = np.clip(x, 0, 1).astype(np.float32), np.ascontiguousarray(lab)
    return (*out, *view) if with_view else out


def targets(lab: np.ndarray) -> np.ndarray:
    """CLASSES index map -> multi-hot (NC, H, W)."""
    return (lab[None] == np.arange(1, NC + 1, dtype=np.uint8)[:, None, None]).astype(np.float32)


class Teacher:
    """A trained model (exported ONNX, sigmoid outputs) whose probabilities the net learns to
    match on some classes of some datasets (``--distill``): knowledge distillation.

    It sees the clean frame (after crop, flip and tilt, before the intensity changes) at the
    model's input size; its probabilities are cut to the window the student sees."""

    def __init__(self, path: Path, classes: tuple[str, ...], sources: tuple[str, ...],
                 weight: float = 1.0):
        from models.segmenter import ModelIntegrityError, Segmenter, load_manifest
        from models.settings import SegmentationSettings

        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"models.train: --distill: no teacher model at {str(path)!r}")
        try:  # the runtime's loader: its manifest, sha256 check and one-thread session
            classes_of = list(load_manifest(path)["classes"])
            if classes_of != list(CLASSES):
                raise SystemExit(f"models.train: --distill {str(path)!r}: its output channels "
                                 f"{classes_of[1:]} are not this trainer's {list(CLASSES[1:])}")
            self.model = Segmenter(SegmentationSettings(model_path=str(path), threads=1)).load()
        except (OSError, ValueError, ModelIntegrityError) as exc:
            raise SystemExit(f"models.train: --distill {str(path)!r}: {exc}") from exc
        self.path, self.sha256 = path, self.model.manifest["sha256"]
        self.classes, self.sources, self.weight = classes, sources, weight
        self.channels = np.zeros(NC, np.float32)
        for c in classes:
            self.channels[CH[c]] = 1.0

    def __call__(self, frame: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
        """(NC, h, w) teacher probabilities for ``window`` of the uint8 frame."""
        frame = np.ascontiguousarray(frame)  # a flipped view has negative strides
        p = self.model.predict(pre_process_image(frame, self.model.input_hw))[0]
        if p.shape[1:] != frame.shape:
            p = np.stack([cv2.resize(c, frame.shape[::-1], interpolation=cv2.INTER_LINEAR) for c in p])
        y0, x0, h, w = window
        return np.ascontiguousarray(p[:, y0:y0 + h, x0:x0 + w], dtype=np.float32)

    def describe(self) -> dict:
        return {"model": str(self.path), "sha256": self.sha256, "classes": list(self.classes),
                "sources": list(self.sources), "weight": self.weight}


def batch(samples: list[Sample], idx: np.ndarray, size: int, rng: np.random.Generator,
          patch: int = 0, focus: int | tuple = 0, teacher: Teacher | None = None):
    """(x, y, m, pm) tensors for the samples ``idx``; with a ``teacher`` also (t, tm): its
    probabilities (zeros where it is not asked) and the channels it teaches per sample."""
    xs, ys, ms, pms, ts, tms = [], [], [], [], [], []
    for i in idx:
        x, lab, *view = augment(samples[i], size, rng, patch,
                                focus if samples[i].source == "sim" else 0, teacher is not None)
        if teacher is not None:
            if samples[i].source in teacher.sources:
                ts.append(teacher(*view))
                tms.append(teacher.channels)
            else:
                ts.append(np.zeros((NC, *x.shape), np.float32))
                tms.append(np.zeros(NC, np.float32))
        y = targets(lab)
        if NEEDLE_LOSS.dilate > 0 and y[NEEDLE_CH].any():
            k = 2 * NEEDLE_LOSS.dilate + 1
            y[NEEDLE_CH] = cv2.dilate(y[NEEDLE_CH], np.ones((k, k), np.uint8))
        cm = channel_mask(samples[i].source)
        # per-pixel BCE mask: a dataset's own channels everywhere; the other channels only
        # where this dataset marks one of its classes (a nerve pixel is known not to be
        # muscle or fascia), so unlabelled classes do not take over labelled structures
        own = (y * cm[:, None, None]).max(axis=0)
        pm = np.where(cm[:, None, None] > 0, 1.0, own[None]).astype(np.float32)
        if POCKET_WEIGHT[0] > 0 and cm[VESSEL_CH] > 0:
            # the injectate pocket is a hard negative of the vessel channel
            pm[VESSEL_CH][lab == POCKET_LABEL] *= np.float32(POCKET_WEIGHT[0])
        xs.append(x[None])
        ys.append(y)
        ms.append(cm)
        pms.append(pm)
    out = (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
           torch.from_numpy(np.stack(ms)), torch.from_numpy(np.stack(pms)))
    if teacher is None:
        return out
    return (*out, torch.from_numpy(np.stack(ts)), torch.from_numpy(np.stack(tms)))


def distill_loss(logits, t, tm):
    """Soft-target BCE against the teacher's probabilities, over the channels it teaches
    (per sample), every pixel; 0 when it teaches none in this batch."""
    w = tm[:, :, None, None].expand_as(t)
    n = w.sum()
    if n <= 0:
        return logits.sum() * 0.0
    return (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * w).sum() / n


def loss_fn(logits, y, m, pm=None):
    """BCE + soft Dice, each only over the channels the sample's dataset labels.

    The Dice is pooled over the batch per channel ("batch Dice"): a per-image Dice
    punishes any probability on images without the class (most windows have no needle),
    which taught the first model never to predict the needle at all."""
    if pm is None:
        pm = m[:, :, None, None].expand_as(y)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    bce = (bce * pm).sum() / (pm.sum() / (y.shape[2] * y.shape[3])).clamp(min=1) / (y.shape[2] * y.shape[3])
    p = torch.sigmoid(logits)
    w = m[:, :, None, None]
    inter = (p * y * w).sum(dim=(0, 2, 3))
    den = (p * w).sum(dim=(0, 2, 3)) + (y * w).sum(dim=(0, 2, 3))
    has = (m.sum(0) > 0) & ((y * w).sum(dim=(0, 2, 3)) > 0)
    d = 1 - (2 * inter + 1.0) / (den + 1.0)
    d = (d * has).sum() / has.sum().clamp(min=1)
    loss = bce + d
    if NEEDLE_LOSS.weight > 0:
        # samples whose dataset labels the needle (the simulator; with --real-absent needle
        # the real images too, as negatives)
        sel = m[:, NEEDLE_CH] > 0
        if sel.any():
            for ch in NEEDLE_LOSS.channels:
                ln, yn = logits[sel, ch], y[sel, ch]
                b = F.binary_cross_entropy_with_logits(
                    ln, yn, pos_weight=torch.tensor(NEEDLE_LOSS.pos_weight, device=ln.device))
                pn = torch.sigmoid(ln)
                dn = 1 - (2 * (pn * yn).sum() + 1.0) / (pn.sum() + yn.sum() + 1.0)
                loss = loss + NEEDLE_LOSS.weight * (b + dn)
    return loss


# ----------------------------------------------------------------------------- evaluation

def predict_probs(net: nn.Module, image: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(pre_process_image(image, (size, size)))
    with torch.no_grad():
        return torch.sigmoid(net(x))[0].numpy()


def evaluate(net, samples: list[Sample], size: int) -> dict:
    """Dice/IoU/HD95 per labelled class over images whose mask holds the class, using the
    runtime's post-processing at the image's own size; needle tip error on sim frames.
    ``net``: the torch network, or any function image -> probabilities (C, size, size) (an
    exported model run by onnxruntime: ``models.quantize``)."""
    if isinstance(net, nn.Module):
        net.eval()
        probs_of = lambda image: predict_probs(net, image, size)  # noqa: E731
    else:
        probs_of = net
    per: dict[str, dict[str, list]] = {}
    tip_err = []
    for s in samples:
        out = probs_to_output(probs_of(s.image), s.image.shape)
        for name in SOURCE_CLASSES[s.source]:
            ci = CLASSES.index(name)
            gt = s.labels == ci
            if not gt.any():
                continue
            pr = out.labels == ci
            # real and simulated figures apart: "usgra:nerve", "sim:nerve", ...
            d = per.setdefault(f"{s.source}:{name}", {"dice": [], "iou": [], "hd95_px": []})
            d["dice"].append(dice(pr, gt))
            d["iou"].append(iou(pr, gt))
            h = hd95(pr, gt)
            if h is not None:
                d["hd95_px"].append(h)
        if s.source == "sim" and s.extra and s.extra.get("tip_px"):
            found = needle_tip_from_mask(out.labels == CLASSES.index("needle"))
            if found is not None:
                sx, sy = s.extra["scale"]
                tx, ty = s.extra["tip_px"]
                # error in original (542x562) pixels and mm
                ex = (found[0][0] - (tx + 0.5) * sx + 0.5) / sx
                ey = (found[0][1] - (ty + 0.5) * sy + 0.5) / sy
                e = math.hypot(ex, ey)
                tip_err.append((e, e * s.extra["spacing_mm"]))
            else:
                tip_err.append((float("inf"), float("inf")))
    res = {name: {k: (float(np.mean(v)) if v else None) for k, v in d.items()}
           | {"n": len(d["dice"])} for name, d in per.items()}
    if tip_err:
        e = np.array(tip_err)
        res["needle_tip"] = {"median_px": float(np.median(e[:, 0])),
                             "median_mm": float(np.median(e[:, 1])),
                             "p90_px": float(np.percentile(e[:, 0], 90, method="higher")),
                             "p90_mm": float(np.percentile(e[:, 1], 90, method="higher")),
                             "found": int(np.isfinite(e[:, 0]).sum()), "n": len(e)}
    return res


def sim_test_set(n: int, cache: Path) -> list[Sample]:
    """The held-out simulated frames every model is scored on (seed 99999)."""
    return make_sim(n, 99999, cache=cache / f"sim_{n}_99999.npz")


def needle_test_set(n: int, cache: Path) -> list[Sample]:
    """Held-out simulated frames that all hold a visible needle (seed 88888, never trained on)."""
    return make_sim(n, 88888, needle_only=True, cache=cache / f"simneedle_{n}_88888.npz")


def sim_metrics_entries(sim_res: dict, n_sim: int, needle_res: dict, n_needle: int) -> dict:
    """The manifest's SIM held-out figures (``evaluate`` on the two sets above)."""
    return {"simulated_held_out": {"frames": n_sim, "note": "simulated PECS II frames (seed "
                                   "99999), not real data", **sim_res},
            "simulated_needle_held_out": {"frames": n_needle, "note": "simulated PECS II frames "
                                          "that all hold a visible needle (seed 88888), not "
                                          "real data", **needle_res}}


# ----------------------------------------------------------------------------- training

class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (unreadable, or made by another run)."""


@dataclass
class Checkpoint:
    """Where and how often a training run saves what it needs to go on after a kill.

    The file holds the weights, the optimizer's moments, the batch/augmentation RNG, the
    next iteration and the training seconds spent (the time-budget schedule follows the
    training clock, not the wall clock, so time spent dead does not count). It is written
    atomically (a temporary file, then a rename), every ``every_s`` seconds of training
    (0: after every iteration) and once more when the loop ends. With ``resume`` an
    existing file is continued from, after checking it was made by the same run
    (``fingerprint``: the arguments that shape training); the caller removes it once the
    model is exported."""

    path: Path
    every_s: float = 300.0
    resume: bool = False
    fingerprint: dict = field(default_factory=dict)

    def save(self, state: dict) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)  # --cv-save DIR may be new
        torch.save({"version": 1, "fingerprint": self.fingerprint, **state}, tmp)
        os.replace(tmp, self.path)

    def load(self) -> dict | None:
        """The saved state, or None when there is nothing to resume."""
        if not (self.resume and self.path.exists()):
            return None
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as e:  # a torn or foreign file
            raise CheckpointError(f"checkpoint {self.path}: cannot be read ({e}); delete it "
                                  "to start again") from e
        if state.get("version") != 1:
            raise CheckpointError(f"checkpoint {self.path}: version {state.get('version')!r}, "
                                  "expected 1")
        saved = state.get("fingerprint", {})
        diff = sorted(k for k in set(saved) | set(self.fingerprint)
                      if saved.get(k) != self.fingerprint.get(k))
        if diff:
            shown = ", ".join(f"{k}: saved {saved.get(k)!r}, now {self.fingerprint.get(k)!r}"
                              for k in diff)
            raise CheckpointError(f"checkpoint {self.path} was made by another run ({shown}); "
                                  "use the same arguments, or delete it to start again")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --arch: "segnet" (from scratch, shipped) or "efflite0" (ImageNet-pretrained EfficientNet-
# Lite0 encoder, models/pretrained.py; a screen)
ARCH = ["segnet"]


def new_net(base: int, last_kernel: int) -> nn.Module:
    if ARCH[0] == "efflite0":
        from models.pretrained import EffLiteSeg
        net = EffLiteSeg(NC)
        log.info("encoder from %s", net.load_imagenet()["weights"])
        return net
    return SegNet(base, last_kernel=last_kernel)


def train(samples: list[Sample], iters: int, size: int, bs: int, lr: float, seed: int,
          base: int, minutes: float | None, mix: dict[str, float], patch: int = 0,
          init: nn.Module | None = None, focus: int | tuple = 0,
          needle_bias: float | None = None, aug_seed: int | None = None,
          ckpt: Checkpoint | None = None, last_kernel: int = 3,
          device: str = "cpu", teacher: Teacher | None = None) -> nn.Module:
    """Train ``net`` (``init`` or a new one) on ``device``; returns it on the CPU, in eval mode."""
    torch.manual_seed(seed)
    # a continued run draws other batches than the run it continues (same seed, same data)
    rng = np.random.default_rng(seed if aug_seed is None else aug_seed)
    net = (init if init is not None else new_net(base, last_kernel)).to(device)
    if needle_bias is not None:  # restart the needle output from its prior
        with torch.no_grad():
            net.head.bias[NEEDLE_CH] = needle_bias
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    start, spent, run, done = 0, 0.0, 0.0, 0
    saved = ckpt.load() if ckpt else None
    if saved is not None:
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        start, spent, run, done = saved["it"], saved["spent_s"], saved["run"], saved["done"]
        log.info("resumed from %s at iteration %d (%.1f training minutes done)",
                 ckpt.path, start, spent / 60)  # type: ignore[union-attr]

    def state(next_it: int, spent_s: float) -> dict:
        return {"net": net.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "it": next_it, "spent_s": spent_s,
                "run": run, "done": done}
    by_src: dict[str, np.ndarray] = {}
    for i, s in enumerate(samples):
        by_src.setdefault(s.source, []).append(i)  # type: ignore[arg-type]
    srcs = sorted(by_src)
    p = np.array([mix.get(k, 1.0) for k in srcs])
    p = p / p.sum()
    t0 = time.time() - spent  # training seconds before this process count
    last_save = time.time()
    warm = 50  # iterations of linear warm-up
    net.train()
    for it in range(start, iters):
        # with a time budget the schedule follows the clock, so a slow (shared) machine
        # still anneals the learning rate to zero before the budget ends
        f = it / iters
        if minutes:
            f = max(f, (time.time() - t0) / (minutes * 60))
            if f >= 1.0:
                log.info("time budget %.1f min reached at iter %d", minutes, it)
                break
        cur = lr * min(1.0, (it + 1) / warm) * 0.5 * (1 + math.cos(math.pi * f))
        for g in opt.param_groups:
            g["lr"] = cur
        which = rng.choice(len(srcs), size=bs, p=p)
        idx = np.array([rng.choice(by_src[srcs[k]]) for k in which])
        x, y, m, pm, *taught = (t.to(device, non_blocking=True)
                                for t in batch(samples, idx, size, rng, patch, focus, teacher))
        logits = net(x)
        loss = loss_fn(logits, y, m, pm)
        if teacher is not None:
            loss = loss + teacher.weight * distill_loss(logits, *taught)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        run = 0.95 * run + 0.05 * loss.item() if it else loss.item()
        if it % 50 == 0 or it == iters - 1:
            el = time.time() - t0
            with torch.no_grad():  # is the needle output separating needle from the rest?
                pn, yn = torch.sigmoid(logits[:, NEEDLE_CH]), y[:, NEEDLE_CH] > 0
                sel = (m[:, NEEDLE_CH] > 0)[:, None, None].expand_as(yn)
                on = float(pn[yn & sel].mean()) if (yn & sel).any() else float("nan")
                off = float(pn[~yn & sel].mean()) if (~yn & sel).any() else float("nan")
            log.info("iter %d/%d loss %.4f lr %.5f %.1f s (%.2f s/iter) needle p on/off %.3f/%.4f",
                     it, iters, run, cur, el, el / (it + 1), on, off)
        if ckpt and time.time() - last_save >= ckpt.every_s:
            ckpt.save(state(it + 1, time.time() - t0))
            last_save = time.time()
    else:
        it = iters
    if ckpt:  # the final weights: a kill during evaluation or export only redoes those
        ckpt.save(state(it, time.time() - t0))
    net.cpu().eval()
    net.iters_done = done  # type: ignore[attr-defined]
    net.train_s = time.time() - t0  # type: ignore[attr-defined]  # every process, resumes included
    return net


def folds(n: int, k: int) -> list[np.ndarray]:
    """Contiguous blocks (neighbouring files are often frames of the same scan)."""
    edges = np.linspace(0, n, k + 1).astype(int)
    return [np.arange(edges[i], edges[i + 1]) for i in range(k)]


# ----------------------------------------------------------------------------- export

def export_onnx(net: nn.Module, path: Path, size: int, check_images: list[np.ndarray]) -> float:
    """Export probabilities model; returns max |onnxruntime - torch| on check images."""
    import onnxruntime as ort

    model = WithSigmoid(net).eval()
    dummy = torch.zeros(1, 1, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"],
                          output_names=["probs"], opset_version=18, dynamo=True,
                          external_data=False)
    except Exception as exc:  # the dynamo exporter is young; the legacy one is fine here
        log.warning("dynamo export failed (%s); using the legacy exporter", exc)
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"],
                          output_names=["probs"], opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for im in check_images:
        x = pre_process_image(im, (size, size))
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"image": x})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def write_manifest(onnx_path: Path, size: int, extra: dict) -> Path:
    manifest = {
        "name": onnx_path.stem,
        "file": onnx_path.name,
        "sha256": file_sha256(onnx_path),
        "input": {"name": "image", "shape": [1, 1, size, size], "dtype": "float32",
                  "layout": "NCHW"},
        "output": {"name": "probs", "shape": [1, NC, size, size], "activation": "sigmoid",
                   "channels": list(CLASSES[1:])},
        "classes": list(CLASSES),
        "colours_bgr": {k: list(v) for k, v in COLOURS_BGR.items()},
        "preprocessing": {
            "colour": "BGR -> grey (OpenCV BT.601); grey used as is",
            "resize": f"to {size}x{size}, aspect not kept; INTER_AREA when shrinking, "
                      "else INTER_LINEAR",
            "scale": "pixel / 255 (0..1), no mean/std",
        },
        "postprocessing": {
            "labels": "probabilities resized (bilinear) to frame size; label = argmax over "
                      "channels whose probability > 0.5, else background",
            "confidence": "mean probability over the pixels labelled the class (0 if none)",
            "present": "area >= 0.04% of the frame",
        },
        "data": [
            {"name": "usgra-seg", "classes": ["nerve", "vessel"], "images": 204,
             "licence": "CC-BY 4.0",
             "credit": "T. M. K., public project tmkand/usgra-seg (2025)"},
            {"name": "DL_Track aponeurosis training data", "classes": ["fascia"],
             "images": 459, "licence": "Apache-2.0",
             "credit": "Ritsche, Cronin et al., public project njcronin/DL_Track"},
            {"name": "models.simulator (PECS II)", "classes": list(CLASSES[1:]),
             "licence": "project's own", "credit": "this project"},
        ],
        "intended_use": "decision support research prototype; not for clinical use",
        **extra,
    }
    src = {"usgra-seg": "usgra", "DL_Track aponeurosis training data": "dltrack"}
    for d in manifest["data"]:
        if REAL_ABSENT and src.get(d["name"]) in REAL_ABSENT_SOURCES:
            d["absent_classes"] = list(REAL_ABSENT)
            d["absent_note"] = ("scanned without a needle: supervised as 0 on every pixel "
                                "(models.train --real-absent)")
    mpath = onnx_path.with_suffix(".json")
    mpath.write_text(json.dumps(manifest, indent=1))
    return mpath


# ----------------------------------------------------------------------------- CLI

# the arguments that shape a training run: a checkpoint is only resumed with all of them equal
TRAINING_ARGS = ("data", "size", "base", "iters", "batch", "patch", "lr", "sim", "seed", "minutes",
                 "init_onnx", "cv_init", "focus", "needle_weight", "needle_pos_weight",
                 "needle_loss_classes", "needle_dilate", "needle_bias", "sim_needle", "sim_la",
                 "sim_artery", "pocket_weight",
                 "sim_weight", "aug_seed", "cv", "last_kernel", "real_absent",
                 "real_absent_sources", "context", "aug_us", "arch", "distill", "distill_weight",
                 "distill_classes", "distill_sources")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
                    help="folder holding usgra_seg/ and dltrack_apo/ (default ../shared/data)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "pecs_seg.onnx"))
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--base", type=int, default=12)
    ap.add_argument("--last-kernel", type=int, default=None, choices=(3, 1),
                    help="kernel of the full-resolution last decoder stage (1: UpAdd, a third "
                         "less CPU time; the shipped model's since v12); 1 from a model trained "
                         "with 3 starts from the sum of its taps (default: the --init-onnx or "
                         "--cv-init model's own, 3 from scratch)")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128,
                    help="train on random patch x patch windows of the size x size input (0: whole)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sim", type=int, default=600, help="simulated training frames")
    ap.add_argument("--sim-test", type=int, default=60, help="simulated held-out frames")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu",
                    help="where the training steps run: cpu (default) or cuda[:N] where PyTorch "
                         "sees one; batches are drawn on the CPU either way, evaluation and "
                         "export run on the CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=None, help="stop training after this")
    ap.add_argument("--cv", type=int, default=0, help="k-fold cross-validation instead of export")
    ap.add_argument("--init-onnx", default=None,
                    help="fine-tune: start from this exported model's weights (BN folded)")
    ap.add_argument("--focus", default=None, nargs="+", choices=list(CLASSES[1:]),
                    help="oversample simulated frames holding this class, windows on it")
    ap.add_argument("--needle-weight", type=float, default=0.0,
                    help="extra needle loss (pos-weighted BCE + Dice on the needle channel) "
                         "times this; 0: off")
    ap.add_argument("--needle-pos-weight", type=float, default=20.0)
    ap.add_argument("--needle-loss-classes", nargs="+", default=["needle"],
                    choices=list(CLASSES[1:]),
                    help="channels that get the extra loss on simulated frames")
    ap.add_argument("--needle-dilate", type=int, default=0,
                    help="dilate the needle target by this many px at the model's scale")
    ap.add_argument("--needle-bias", type=float, default=None,
                    help="set the needle output's bias to this before training")
    ap.add_argument("--sim-needle", type=int, default=0,
                    help="extra simulated training frames that all hold a needle (seeds 3000+)")
    ap.add_argument("--sim-la", type=int, default=0,
                    help="extra simulated training frames showing local anaesthetic opening "
                         "the plane (seeds 5000+): a dark pocket that is neither vessel nor pleura")
    ap.add_argument("--sim-artery", type=int, default=0,
                    help="extra simulated training frames whose needle stops 0-4 mm from the "
                         "artery (seeds 7000+), half with local anaesthetic")
    ap.add_argument("--pocket-weight", type=float, default=0.0, metavar="W",
                    help="on the injectate pocket's pixels of the --sim-la and --sim-artery frames, "
                         "the vessel channel's BCE counts W times (a hard negative; 0: off)")
    ap.add_argument("--real-absent", nargs="*", default=[], choices=["needle"],
                    help="classes the real datasets never hold (volunteer scans: no needle): "
                         "supervised as 0 on every pixel of the real images")
    ap.add_argument("--context", type=int, default=0, choices=(0, 1),
                    help="1: a context block (two dilated 3x3, dilation 2 and 4) added to the "
                         "1/16 bottleneck, for a field of view of the whole frame (from scratch)")
    ap.add_argument("--real-absent-sources", nargs="+", default=["usgra", "dltrack"],
                    choices=["usgra", "dltrack"], help="the real datasets --real-absent applies to")
    ap.add_argument("--arch", default="segnet", choices=("segnet", "efflite0"),
                    help="segnet: the compact U-Net from scratch (shipped); efflite0: an "
                         "ImageNet-pretrained EfficientNet-Lite0 encoder (models/pretrained.py)")
    ap.add_argument("--aug-us", type=float, default=0.0, metavar="P",
                    help="ultrasound-specific augmentation (tilt/shear/squash, depth gain ramp, "
                         "speckle), each part drawn with probability scaled by P (0: off)")
    ap.add_argument("--zoom-out", type=float, nargs=2, default=None, metavar=("P", "MIN"),
                    help="with probability P shrink a frame to MIN..1 of --size before its "
                         "window is cut (crops only zoom in; default: off)")
    ap.add_argument("--sim-weight", type=float, default=1.0,
                    help="share of simulated samples in a batch relative to each real dataset")
    ap.add_argument("--cv-init", default=None, metavar="DIR",
                    help="with --cv: continue training fold k from DIR/fold{k}.onnx (a finished "
                         "fold's model, e.g. from --cv-save) instead of from scratch")
    ap.add_argument("--aug-seed", type=int, default=None,
                    help="seed of the batch/augmentation draws (default: --seed); give a new one "
                         "when continuing a run")
    ap.add_argument("--distill", default=None, metavar="MODEL",
                    help="a trained ONNX model to learn from as well (knowledge distillation): "
                         "the net also matches its probabilities; with --cv a folder holding "
                         "foldK.onnx, each trained without fold K")
    ap.add_argument("--distill-weight", type=float, default=1.0,
                    help="weight of the teacher's term against the labels' loss")
    ap.add_argument("--distill-classes", nargs="+", default=["nerve", "vessel", "fascia"],
                    choices=list(CLASSES[1:]), help="the classes the teacher teaches")
    ap.add_argument("--distill-sources", nargs="+", default=["usgra", "dltrack"],
                    choices=sorted(SOURCE_CLASSES), help="the datasets it teaches on")
    ap.add_argument("--cv-json", default=None)
    ap.add_argument("--cv-save", default=None, help="with --cv: folder to save each fold's ONNX model")
    ap.add_argument("--folds", type=int, nargs="*", default=None,
                    help="with --cv: run only these folds (0-based), e.g. when time is short")
    ap.add_argument("--cv-results", default=None,
                    help="JSON of a finished cross-validation to put in the manifest")
    ap.add_argument("--cache", default="/tmp/seg_cache", help="folder for simulated-frame caches")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0,
                    help="save a checkpoint every this many training minutes (0: after every "
                         "iteration; negative: never), next to --out (NAME.ckpt.pt) or in "
                         "--cv-save (foldK.ckpt.pt); removed once the model is exported")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the checkpoint a killed run with the same arguments "
                         "left (starts afresh when there is none)")
    ap.add_argument("--attach", action="append", default=[], metavar="NAME=FILE",
                    help="no training: put the JSON in FILE (its 'summary' if it has one) "
                         "under metrics.NAME in the manifest of --out")
    args = ap.parse_args(argv)
    if args.attach:
        return attach_metrics(Path(args.out), args.attach)
    try:
        return run(args, argv)
    except CheckpointError as e:
        print(f"python -m models.train: error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Train (or cross-validate) as ``args`` say; see main()."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.distill and args.cv and not Path(args.distill).is_dir():
        raise SystemExit(f"models.train: --distill {args.distill!r}: with --cv it must be a "
                         "folder holding foldK.onnx (each teacher trained without fold K)")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    if args.device != "cpu":
        try:
            torch.zeros(1, device=args.device)
        except (RuntimeError, AssertionError) as e:
            raise SystemExit(f"models.train: --device {args.device}: not usable here ({e})")
        torch.backends.cudnn.benchmark = True  # fixed window sizes: let cuDNN pick kernels
    if args.last_kernel is None:
        start = (Path(args.init_onnx) if args.init_onnx
                 else Path(args.cv_init) / f"fold{(args.folds or [0])[0]}.onnx" if args.cv_init
                 else None)
        args.last_kernel = onnx_last_kernel(start) if start else 3
    NEEDLE_LOSS.weight = args.needle_weight
    NEEDLE_LOSS.pos_weight = args.needle_pos_weight
    if args.pocket_weight < 0:
        raise SystemExit(f"models.train: --pocket-weight must be >= 0, got {args.pocket_weight}")
    POCKET_WEIGHT[0] = args.pocket_weight
    NEEDLE_LOSS.dilate = args.needle_dilate
    NEEDLE_LOSS.channels = tuple(CH[c] for c in args.needle_loss_classes)
    REAL_ABSENT[:] = args.real_absent
    REAL_ABSENT_SOURCES[:] = args.real_absent_sources
    CONTEXT[0] = args.context
    AUG_US[0] = args.aug_us
    if args.zoom_out:
        p_zoom, low = args.zoom_out
        if not (0 < p_zoom <= 1 and args.patch / args.size <= low < 1):
            raise SystemExit(f"models.train: --zoom-out {p_zoom:g} {low:g}: P must be in "
                             f"(0, 1] and MIN in [patch/size = {args.patch / args.size:.3f}, 1)")
        ZOOM_OUT[:] = [p_zoom, low]
    ARCH[0] = args.arch
    root = Path(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    us, dl = load_usgra(root), load_dltrack(root)
    sim = make_sim(args.sim, 1000 + args.seed, cache=cache / f"sim_{args.sim}_{1000 + args.seed}.npz")
    sim_test = sim_test_set(args.sim_test, cache)
    if args.sim_needle:
        sim = sim + make_sim(args.sim_needle, 3000 + args.seed, needle_only=True,
                             cache=cache / f"simneedle_{args.sim_needle}_{3000 + args.seed}.npz")
    pocket = args.pocket_weight > 0  # the pocket's pixels marked (other cache files)
    tag = "p" if pocket else ""
    if args.sim_la:
        sim = sim + make_sim(args.sim_la, 5000 + args.seed, la=True, pocket=pocket,
                             cache=cache / f"simla{tag}_{args.sim_la}_{5000 + args.seed}.npz")
    if args.sim_artery:
        sim = sim + make_sim(args.sim_artery, 7000 + args.seed, artery=True, pocket=pocket,
                             cache=cache / f"simartery{tag}_{args.sim_artery}_{7000 + args.seed}.npz")
    log.info("data: usgra %d, dltrack %d, sim %d (+%d test) in %.0f s", len(us), len(dl),
             len(sim), len(sim_test), time.time() - t0)
    mix = {"usgra": 1.0, "dltrack": 1.0, "sim": args.sim_weight}

    def checkpoint(path: Path, **extra) -> Checkpoint | None:
        if args.checkpoint_minutes < 0:
            return None
        shape = {k: v for k, v in vars(args).items() if k in TRAINING_ARGS}
        if args.init_onnx:
            shape["init_sha256"] = file_sha256(args.init_onnx)
        return Checkpoint(path, args.checkpoint_minutes * 60, args.resume, {**shape, **extra})

    def teacher(path: Path | None) -> Teacher | None:
        if path is None:
            return None
        t = Teacher(path, tuple(args.distill_classes), tuple(args.distill_sources),
                    args.distill_weight)
        log.info("teacher %s (%s) on %s", path, ", ".join(t.classes), ", ".join(t.sources))
        return t

    if args.cv:
        results = []
        fu, fd = folds(len(us), args.cv), folds(len(dl), args.cv)
        for k in range(args.cv):
            if args.folds and k not in args.folds:
                continue
            hold_u, hold_d = set(fu[k].tolist()), set(fd[k].tolist())
            tr = ([s for i, s in enumerate(us) if i not in hold_u]
                  + [s for i, s in enumerate(dl) if i not in hold_d] + sim)
            te = [us[i] for i in sorted(hold_u)] + [dl[i] for i in sorted(hold_d)]
            focus = tuple(CLASSES.index(c) for c in args.focus) if args.focus else 0
            if args.focus:
                tr = tr + [s for s in sim if np.isin(s.labels, focus).any()]
            fold_init, init_sha = None, None
            if args.cv_init:
                init_path = Path(args.cv_init) / f"fold{k}.onnx"
                fold_init = net_from_onnx(init_path, args.base, args.last_kernel)
                init_sha = file_sha256(init_path)
            ck = checkpoint(Path(args.cv_save or Path(args.out).parent) / f"fold{k}.ckpt.pt",
                            fold=k, cv_init_sha256=init_sha)
            net = train(tr, args.iters, args.size, args.batch, args.lr, args.seed + k,
                        args.base, args.minutes, mix, args.patch, fold_init, focus, args.needle_bias,
                        None if args.aug_seed is None else args.aug_seed + k, ck, args.last_kernel,
                        args.device,
                        teacher(Path(args.distill) / f"fold{k}.onnx" if args.distill else None))
            if args.cv_save:
                # keep the fold's model: seg-eval can then score its held-out images
                fp = Path(args.cv_save) / f"fold{k}.onnx"
                export_onnx(net, fp, args.size, [te[0].image])
                write_manifest(fp, args.size, {"cv_fold": k, "held_out_usgra": [us[i].name for i in sorted(hold_u)],
                                               "held_out_dltrack": [dl[i].name for i in sorted(hold_d)]})
            r = evaluate(net, te + sim_test, args.size)
            r["fold"] = k
            r["iters"] = getattr(net, "iters_done", args.iters)
            r["held_out"] = {"usgra": [us[i].name for i in (min(hold_u), max(hold_u))],
                             "dltrack": [dl[i].name for i in (min(hold_d), max(hold_d))]}
            log.info("fold %d: %s", k, json.dumps(r))
            results.append(r)
            if args.cv_json:
                Path(args.cv_json).write_text(json.dumps(summarise_cv(results, args), indent=1))
            if ck:
                ck.remove()
        print(json.dumps(summarise_cv(results, args)["summary"], indent=1))
        return 0
    init = (net_from_onnx(Path(args.init_onnx), args.base, args.last_kernel)
            if args.init_onnx else None)
    focus = tuple(CLASSES.index(c) for c in args.focus) if args.focus else 0
    if args.focus:  # sim frames that hold a rare class count double
        sim = sim + [s for s in sim if np.isin(s.labels, focus).any()]
    out = Path(args.out)
    ck = checkpoint(out.with_name(out.stem + ".ckpt.pt"))
    tutor = teacher(Path(args.distill) if args.distill else None)
    net = train(us + dl + sim, args.iters, args.size, args.batch, args.lr, args.seed,
                args.base, args.minutes, mix, args.patch, init, focus, args.needle_bias,
                args.aug_seed, ck, args.last_kernel, args.device, tutor)
    train_s = time.time() - t0
    sim_metrics = evaluate(net, sim_test, args.size)
    log.info("held-out simulated frames: %s", json.dumps(sim_metrics))
    # held-out frames that all hold a visible needle (seed stream never trained on)
    needle_test = needle_test_set(args.sim_test, cache)
    needle_metrics = evaluate(net, needle_test, args.size)
    log.info("held-out simulated needle frames: %s", json.dumps(needle_metrics))
    worst = export_onnx(net, out, args.size, [us[0].image, dl[0].image, sim_test[0].image])
    log.info("exported %s (%.0f kB); max |onnxruntime - torch| = %.2e", out,
             out.stat().st_size / 1024, worst)
    if worst > 1e-4:
        log.error("onnxruntime and torch disagree by %.2e (> 1e-4)", worst)
        return 1
    cv_res = json.loads(Path(args.cv_results).read_text()) if args.cv_results else None
    mpath = write_manifest(out, args.size, {
        "training": {"command": "python -m models.train " + " ".join(argv or sys.argv[1:]),
                     "iters": getattr(net, "iters_done", args.iters), "max_iters": args.iters,
                     "minutes_budget": args.minutes, "init_onnx": args.init_onnx,
                     "init_sha256": file_sha256(args.init_onnx) if args.init_onnx else None,
                     "focus": args.focus, "batch": args.batch, "patch": args.patch, "size": args.size,
                     "base_channels": args.base, "last_kernel": args.last_kernel,
                     "context": args.context,
                     "sim_frames": args.sim, "seed": args.seed,
                     "aug_seed": args.aug_seed,
                     "sim_needle_frames": args.sim_needle, "sim_la_frames": args.sim_la,
                     "sim_artery_frames": args.sim_artery,
                     "pocket_weight": args.pocket_weight,
                     "sim_weight": args.sim_weight, "real_absent": args.real_absent,
                     "aug_us": args.aug_us, "arch": args.arch,
                     "distill": tutor.describe() if tutor else None,
                     "real_absent_sources": args.real_absent_sources,
                     "needle_loss": {"weight": args.needle_weight,
                                     "pos_weight": args.needle_pos_weight,
                                     "dilate_px": args.needle_dilate,
                                     "classes": args.needle_loss_classes,
                                     "bias_init": args.needle_bias},
                     # train_s: training seconds over every process of a resumed run;
                     # wall_s: this process only (training, evaluation and export)
                     "train_s": round(getattr(net, "train_s", train_s)),
                     "wall_s": round(train_s), "threads": args.threads,
                     "onnx_vs_torch_max_abs": worst},
        "metrics": {
            **sim_metrics_entries(sim_metrics, len(sim_test), needle_metrics, len(needle_test)),
            "real_cross_validation": (cv_res or {}).get("summary",
                                                        "not run for this model"),
        },
    })
    log.info("manifest %s", mpath)
    if ck:
        ck.remove()
    return 0


def attach_metrics(onnx_path: Path, items: list[str]) -> int:
    """Add measured figures (cross-validation, speed) to an existing manifest; the
    weights and their sha256 are untouched."""
    mpath = onnx_path.with_suffix(".json")
    man = json.loads(mpath.read_text())
    for item in items:
        name, _, fname = item.partition("=")
        if not name or not fname:
            raise SystemExit(f"--attach wants NAME=FILE, got {item!r}")
        data = json.loads(Path(fname).read_text())
        man.setdefault("metrics", {})[name] = data.get("summary", data) if isinstance(data, dict) else data
    mpath.write_text(json.dumps(man, indent=1))
    print(f"updated {mpath}")
    return 0


def summarise_cv(results: list[dict], args) -> dict:
    summ: dict = {"folds": len(results), "k": args.cv, "max_iters_per_fold": args.iters,
                  "minutes_per_fold": args.minutes,
                  "note": "held-out contiguous blocks of usgra_seg and dltrack_apo; sim "
                          "classes and needle tip on 60 held-out simulated frames"}
    names = sorted({k for r in results for k in r if isinstance(r[k], dict) and "dice" in r[k]})
    for name in names:
        ds = [r[name]["dice"] for r in results if name in r and r[name]["dice"] is not None]
        hs = [r[name]["hd95_px"] for r in results if name in r and r[name]["hd95_px"] is not None]
        ious = [r[name]["iou"] for r in results if name in r and r[name]["iou"] is not None]
        summ[name] = {"dice_mean": float(np.mean(ds)), "dice_sd": float(np.std(ds, ddof=1)) if len(ds) > 1 else None,
                      "dice_per_fold": ds, "iou_mean": float(np.mean(ious)),
                      "hd95_px_mean": float(np.mean(hs)) if hs else None}
    tips = [r["needle_tip"] for r in results if "needle_tip" in r]
    if tips:
        summ["needle_tip_sim"] = {"median_mm_per_fold": [t["median_mm"] for t in tips],
                                  "median_px_per_fold": [t["median_px"] for t in tips],
                                  "found_per_fold": [t["found"] for t in tips],
                                  "n_per_fold": [t["n"] for t in tips]}
    return {"summary": summ, "folds": results}


if __name__ == "__main__":
    raise SystemExit(main())
