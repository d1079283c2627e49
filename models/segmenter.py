"""Segmentation runtime: the shipped ONNX model through onnxruntime (no torch).

``Segmenter(settings).segment(image) -> SegOutput``; split into ``pre_process``,
``predict`` and ``post_process`` (MONAI-Deploy style) so each step can be timed and
tested. The model and its manifest load lazily on first use; the manifest's sha256 of
the .onnx is checked at load. Decision support, not for clinical use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from models.classes import CLASSES
from models.settings import SegmentationSettings

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODEL_DIR / "pecs_seg.onnx"
MAX_SIDE_PX = 4096
#: a class counts as present when its area is at least this fraction of the frame
MIN_AREA_FRAC = 0.0004
PROB_THRESHOLD = 0.5
#: compact structures (nerve, vessel): connected blobs smaller than this fraction of the
#: frame are dropped as speckle (a 2 mm artery on a 40 mm-deep 542-row frame is ~0.5 %)
BLOB_CLASSES = ("nerve", "vessel")
MIN_BLOB_FRAC = 0.0002
#: the manifest's ``post_process`` when it has none: the rules above, unchanged (one
#: threshold, speckle removal for nerve and vessel, no test-time flip), so an older
#: manifest keeps its older behaviour
DEFAULT_POST_PROCESS = {"threshold": PROB_THRESHOLD,
                        "classes": {c: {"min_blob_frac": MIN_BLOB_FRAC} for c in BLOB_CLASSES},
                        "tta_flip": False}


class ModelIntegrityError(RuntimeError):
    """The .onnx file does not match the sha256 in its manifest."""


@dataclass
class SegOutput:
    """One frame's segmentation; ``labels`` at the frame's size, 0 = background."""

    labels: np.ndarray
    classes: list
    confidence: list
    present: list
    timings_ms: dict = field(default_factory=dict)
    area_frac: list = field(default_factory=list)  # each class's fraction of the frame
    # the classes whose confidence is calibrated on real scans (the rest: raw, unverified)
    calibrated: list = field(default_factory=list)


# ----------------------------------------------------------------------------- pure steps

def validate_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check a frame and return it as uint8 grey (H, W). Raises ValueError naming what is
    wrong: not an array, empty, wrong dtype, wrong number of channels, too large."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.size == 0 or image.ndim < 2 or 0 in image.shape[:2]:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.ndim not in (2, 3):
        raise ValueError(f"{name} has {image.ndim} dimensions (shape {image.shape}): "
                         "expected (H, W) grey or (H, W, 3) BGR")
    if max(image.shape[:2]) > MAX_SIDE_PX:
        raise ValueError(f"{name} is too large ({image.shape[1]}x{image.shape[0]} px): the "
                         f"longest side may be at most {MAX_SIDE_PX} px")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} has dtype {image.dtype}: expected uint8")
    if image.ndim == 3:
        c = image.shape[2]
        if c == 1:
            return image[..., 0]
        if c == 3:
            return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if c == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        raise ValueError(f"{name} has {c} channels (shape {image.shape}): expected 1 (grey), "
                         "3 (BGR) or 4 (BGRA)")
    return image


def pre_process_image(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """uint8 frame (any size, grey or BGR) -> float32 tensor (1, 1, h, w) in 0..1."""
    grey = validate_image(image)
    h, w = input_hw
    interp = cv2.INTER_AREA if grey.shape[0] > h or grey.shape[1] > w else cv2.INTER_LINEAR
    small = cv2.resize(grey, (w, h), interpolation=interp)
    return (small.astype(np.float32) * (1.0 / 255.0))[None, None]


@dataclass(frozen=True)
class BlobRule:
    """Connected-component clean-up of one class (8-connectivity, at frame size).

    ``threshold``: this class's probability threshold (None: the common one).
    ``min_blob_frac``: blobs smaller than this fraction of the frame become background.
    ``min_blob_mean_prob``: blobs whose mean probability is below this become background...
    ``keep_largest``: ...except the largest blob that passed ``min_blob_frac`` when no
    blob passes both (a class found on the frame keeps its most likely place)."""

    threshold: float | None = None
    min_blob_frac: float = 0.0
    min_blob_mean_prob: float = 0.0
    keep_largest: bool = False


@dataclass(frozen=True)
class PostProcess:
    """Parameters of ``probs_to_output``; from the manifest's ``post_process`` key
    (``parse_post_process``), ``DEFAULT_POST_PROCESS`` when it has none."""

    threshold: float = PROB_THRESHOLD
    rules: dict = field(default_factory=dict)  # class name -> BlobRule
    tta_flip: bool = False  # average with the horizontally flipped frame (2x model time)
    # classes drawn over the others: wherever one is above its threshold it takes the pixel,
    # however probable another class is there (the needle lies in muscle: a multi-label head
    # may call its pixels both, and then the thin needle must not lose to the layer it crosses)
    on_top: tuple = ()

    def threshold_for(self, name: str) -> float:
        r = self.rules.get(name)
        return self.threshold if r is None or r.threshold is None else float(r.threshold)


_RULE_KEYS = {"threshold", "min_blob_frac", "min_blob_mean_prob", "keep_largest"}


def _prob(value, what: str, lo: float = 0.0, hi: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"post_process {what} must be a number in {lo}..{hi}, got {value!r}")
    return float(value)


def parse_post_process(spec: dict | None, classes: list | tuple = CLASSES) -> PostProcess:
    """A manifest's ``post_process`` dict (None: ``DEFAULT_POST_PROCESS``) -> PostProcess.
    Unknown keys or classes and out-of-range values raise ValueError naming them."""
    if spec is None:
        spec = DEFAULT_POST_PROCESS
    if not isinstance(spec, dict):
        raise ValueError(f"post_process must be a JSON object, got {type(spec).__name__}")
    unknown = set(spec) - {"threshold", "classes", "tta_flip", "on_top", "note"}
    if unknown:
        raise ValueError(f"post_process has unknown key(s) {sorted(unknown)}; known: "
                         "threshold, classes, tta_flip, on_top, note")
    on_top = spec.get("on_top", [])
    if not isinstance(on_top, list) or any(c not in classes or c == "background"
                                           for c in on_top):
        raise ValueError(f"post_process on_top must be a list of class names, got {on_top!r}")
    thr = _prob(spec.get("threshold", PROB_THRESHOLD), "threshold")
    tta = spec.get("tta_flip", False)
    if not isinstance(tta, bool):
        raise ValueError(f"post_process tta_flip must be true or false, got {tta!r}")
    rules = {}
    for name, r in (spec.get("classes") or {}).items():
        if name not in classes or name == "background":
            raise ValueError(f"post_process names unknown class {name!r}")
        if not isinstance(r, dict) or set(r) - _RULE_KEYS:
            raise ValueError(f"post_process rule of {name!r} must be an object with keys "
                             f"from {sorted(_RULE_KEYS)}, got {r!r}")
        keep = r.get("keep_largest", False)
        if not isinstance(keep, bool):
            raise ValueError(f"post_process {name}.keep_largest must be true or false")
        rules[name] = BlobRule(
            threshold=None if r.get("threshold") is None else _prob(r["threshold"], f"{name}.threshold"),
            min_blob_frac=_prob(r.get("min_blob_frac", 0.0), f"{name}.min_blob_frac"),
            min_blob_mean_prob=_prob(r.get("min_blob_mean_prob", 0.0), f"{name}.min_blob_mean_prob"),
            keep_largest=keep)
    return PostProcess(threshold=thr, rules=rules, tta_flip=tta, on_top=tuple(on_top))


class Calibration(NamedTuple):
    """One class's logistic map: P(outline good) = 1 / (1 + exp(-(w * raw +
    w_log_area * log10(area) + c))), raw = the mean winning probability of the class's
    pixels, area = the fraction of the frame they cover."""

    w: float
    w_log_area: float
    c: float


def parse_calibration(spec: dict | None, classes: list | tuple = CLASSES) -> dict:
    """A manifest's ``confidence_calibration`` (None: no class calibrated) -> {class name:
    Calibration}. Each class gives ``c`` and at least one of ``w`` (on the raw confidence)
    and ``w_log_area`` (on log10 of the area fraction), both >= 0 (the map must keep the
    order: a more probable or a larger outline is never less sure). Raises ValueError
    naming what is wrong: not an object, an unknown class, a missing or non-finite
    number, a negative weight, or no weight at all."""
    if spec is None:
        return {}
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), dict):
        raise ValueError("confidence_calibration must be an object with a 'classes' object, "
                         f"got {spec!r:.80}")
    out = {}
    for name, wc in spec["classes"].items():
        if name not in classes or name == "background":
            raise ValueError(f"confidence_calibration names unknown class {name!r}")
        try:
            if not isinstance(wc, dict) or ("w" not in wc and "w_log_area" not in wc):
                raise KeyError
            w, a, c = float(wc.get("w", 0.0)), float(wc.get("w_log_area", 0.0)), float(wc["c"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"confidence_calibration of {name!r} needs numbers c and w "
                             f"(or w_log_area), got {wc!r}") from None
        if not all(np.isfinite(v) for v in (w, a, c)) or w < 0 or a < 0 or w + a <= 0:
            raise ValueError(f"confidence_calibration of {name!r}: w and w_log_area must be "
                             f"finite, >= 0 and not both 0, and c finite, got w={w}, "
                             f"w_log_area={a}, c={c}")
        out[name] = Calibration(w, a, c)
    return out


def calibrate_confidence(confidence: list, classes: list | tuple, calibration: dict,
                         area_frac: list | None = None) -> list:
    """Raw confidences (mean winning probability of each class's pixels; 0 when absent) ->
    for each class in ``calibration``, the estimated probability that its outline is good
    (see the manifest's ``confidence_calibration``); other classes and absent ones as given.
    ``area_frac``: each class's fraction of the frame, needed by a map with ``w_log_area``."""
    out = list(confidence)
    for name, (w, a, c) in calibration.items():
        i = list(classes).index(name)
        if i < len(out) and out[i] > 0:
            z = w * float(out[i]) + c
            if a:
                if area_frac is None or i >= len(area_frac):
                    raise ValueError(f"the calibration of {name!r} needs the area fractions")
                z += a * float(np.log10(max(float(area_frac[i]), 1e-6)))
            out[i] = float(1.0 / (1.0 + np.exp(-z)))
    return out


def clean_blobs(labels: np.ndarray, pmax: np.ndarray, ci: int, rule: BlobRule) -> int:
    """Apply ``rule`` to the blobs of class index ``ci`` in ``labels`` (in place; dropped
    pixels become background). ``pmax``: the winning probability of each labelled pixel.
    Returns the number of blobs dropped."""
    if rule.min_blob_frac <= 0 and rule.min_blob_mean_prob <= 0:
        return 0
    sel = labels == ci
    if not sel.any():
        return 0
    # labelling without statistics, then sums over the class's own pixels only: OpenCV's
    # statistics cost about 2 ms a class at 562x542 (and more with its threads on a busy host)
    n, cc = cv2.connectedComponents(sel.view(np.uint8), connectivity=8)
    if n <= 1:
        return 0
    ids = cc[sel]
    area = np.bincount(ids, minlength=n)
    big = area >= rule.min_blob_frac * labels.shape[0] * labels.shape[1]
    big[0] = False
    keep = big.copy()
    if rule.min_blob_mean_prob > 0:
        mean = np.bincount(ids, weights=pmax[sel], minlength=n) / np.maximum(area, 1)
        keep &= mean >= rule.min_blob_mean_prob
        if rule.keep_largest and big.any() and not keep.any():
            keep[int(np.argmax(np.where(big, area, -1)))] = True
    drop = ~keep
    drop[0] = False
    if drop.any():
        vals = labels[sel]
        vals[drop[ids]] = 0
        labels[sel] = vals
    return int(drop.sum())


def probs_to_output(probs: np.ndarray, frame_shape: tuple, classes: list | tuple = CLASSES,
                    threshold: float = PROB_THRESHOLD,
                    min_area_frac: float = MIN_AREA_FRAC,
                    min_blob_frac: float = MIN_BLOB_FRAC,
                    post: PostProcess | None = None) -> SegOutput:
    """Per-class probabilities (C, h, w), one channel per non-background class, ->
    labels at frame size: the most probable class whose probability exceeds its
    threshold, else background; then each class's blob rules (``clean_blobs``).
    confidence[i] = mean probability over the pixels labelled i (0 if none);
    present[i] = area >= min_area_frac of the frame. Without ``post``: one ``threshold``
    and blobs of nerve or vessel smaller than ``min_blob_frac`` of the frame dropped."""
    if probs.ndim == 4:
        probs = probs[0]
    c = probs.shape[0]
    if c != len(classes) - 1:
        raise ValueError(f"model gives {c} channels, expected {len(classes) - 1} "
                         f"(one per class of {list(classes)[1:]})")
    if post is None:
        post = PostProcess(threshold=threshold, rules={
            name: BlobRule(min_blob_frac=min_blob_frac) for name in BLOB_CLASSES})
    H, W = int(frame_shape[0]), int(frame_shape[1])
    thr = [post.threshold_for(classes[ch + 1]) for ch in range(c)]
    uniform = all(t == thr[0] for t in thr)
    # one channel at a time: single-channel resizes and running maxima are several times
    # faster than resizing an (h, w, 9) array and taking argmax over its last axis
    labels = np.zeros((H, W), np.uint8)
    top: list = []  # the on_top classes' channels at frame size
    # pmax: the winning probability of a labelled pixel (with one threshold: at least it)
    pmax = np.full((H, W), np.float32(thr[0] if uniform else 0.0), np.float32)
    for ch in range(c):
        p = np.ascontiguousarray(probs[ch], dtype=np.float32)
        if p.shape != (H, W):
            # resize the probabilities, not the labels: smooth boundaries at frame size
            p = cv2.resize(p, (W, H), interpolation=cv2.INTER_LINEAR)
        better = p > pmax  # strict: on a tie the earlier class keeps the pixel
        if uniform:
            np.maximum(pmax, p, out=pmax)
        else:
            better &= p > np.float32(thr[ch])
            np.copyto(pmax, p, where=better)
        np.copyto(labels, np.uint8(ch + 1), where=better)
        if classes[ch + 1] in post.on_top:
            top.append((ch, p))
    # drawn over the others in the order the manifest names them (the last named on top)
    for ch, p in sorted(top, key=lambda t: post.on_top.index(classes[t[0] + 1])):
        above = p > np.float32(thr[ch])
        np.copyto(labels, np.uint8(ch + 1), where=above)
        np.copyto(pmax, p, where=above)
    for name, rule in post.rules.items():
        if name in classes:
            clean_blobs(labels, pmax, list(classes).index(name), rule)
    n = len(classes)
    counts = np.bincount(labels.ravel(), minlength=n)
    sums = np.bincount(labels.ravel(), weights=pmax.ravel(), minlength=n)
    min_area = max(1.0, min_area_frac * H * W)
    conf = [0.0] * n
    present = [False] * n
    area_frac = [float(counts[i]) / (H * W) for i in range(n)]
    for i in range(1, n):
        if counts[i] > 0:
            conf[i] = float(sums[i] / counts[i])
        present[i] = bool(counts[i] >= min_area)
    return SegOutput(labels=labels, classes=list(classes), confidence=conf, present=present,
                     area_frac=area_frac)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path_for(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_suffix(".json")


def load_manifest(model_path: str | Path) -> dict:
    """The manifest next to the weights (same stem, .json), with its sha256 checked."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"segmentation model {str(model_path)!r} does not exist")
    mpath = manifest_path_for(model_path)
    if not mpath.exists():
        raise FileNotFoundError(f"model manifest {str(mpath)!r} is missing (it must sit next "
                                f"to {model_path.name})")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise ValueError(f"model manifest {str(mpath)!r} is not valid JSON: {exc}") from exc
    for key in ("sha256", "input", "classes"):
        if key not in manifest:
            raise ValueError(f"model manifest {str(mpath)!r} lacks {key!r}")
    actual = file_sha256(model_path)
    if actual != manifest["sha256"]:
        raise ModelIntegrityError(f"{model_path.name} has sha256 {actual[:16]}..., its "
                                  f"manifest says {str(manifest['sha256'])[:16]}...: the file "
                                  "was changed or the manifest belongs to another model")
    return manifest


# ----------------------------------------------------------------------------- int8 on x86

#: the int8 dot-product instructions that add u8 x s8 products in 32 bits (Linux flag names)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (Linux /proc/cpuinfo); None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith("flags")), None)
    except OSError:
        return None
    return frozenset(line.split(":", 1)[1].split()) if line else None


#: the values of segmentation.int8_weights
INT8_WEIGHTS = ("auto", "s8", "u8", "s7")


def int8_weights_for(setting: str, machine: str, flags: frozenset[str] | None) -> str:
    """Which encoding of an int8 model's weights to run: "s8" (as quantized), "u8" (the
    same values shifted by 128, :func:`models.quantize.u8_variant`) or "s7" (7-bit weights
    whose sums cannot saturate, :func:`models.quantize.s7_variant`: faster than u8 without
    VNNI, not the same arithmetic, its own measured figures).

    On an x86 CPU without VNNI, onnxruntime multiplies u8 activations by s8 weights with an
    instruction (VPMADDUBSW) that adds pairs of products in 16 bits and saturates: the
    output changes (measured on an AVX2 host, 2026-12-05: nerve masks agreeing at Dice 0.92
    with exact arithmetic on SIM frames, serratus 0.17 on REAL ones). u8 x u8 is computed
    in 32 bits there (the model's own figures, but 11-12 ms a frame); the 7-bit weights run
    at the int8 speed (9.0-9.5 ms) with the same held-out Dice, but their vessel confidence
    flags fewer poor outlines (models/MODEL_CARD.md), so they run only where asked.
    ``setting`` "auto" picks "u8" on x86 without VNNI, or where the flags cannot be read,
    and "s8" elsewhere (VNNI, ARM)."""
    if setting not in INT8_WEIGHTS:
        raise ValueError(f"segmentation.int8_weights must be one of {', '.join(INT8_WEIGHTS)}, "
                         f"got {setting!r}")
    if setting != "auto":
        return setting
    if machine.lower() not in X86:
        return "s8"
    return "s8" if flags is not None and any(f in flags for f in VNNI_FLAGS) else "u8"


#: manifest entries of an int8 model's other encodings of its weights (models.quantize)
WEIGHT_VARIANTS = {"u8": "u8_variant", "s7": "s7_variant"}


def weights_file(model_path: Path, manifest: dict, wanted: str) -> tuple[str, Path, str]:
    """The encoding run and its file for an int8 model whose host or setting asks for
    ``wanted`` (:func:`int8_weights_for`), and a warning ("" if none). A missing s7 variant
    falls back to the u8 one (exact), a missing u8 variant to the model itself (s8)."""
    for enc in ((wanted, "u8") if wanted == "s7" else (wanted,)):
        variant = manifest.get(WEIGHT_VARIANTS.get(enc, ""))
        if enc == "s8":
            return "s8", model_path, ""
        if variant is not None:
            warn = "" if enc == wanted else (
                f"{model_path.name} has no {wanted} variant in its manifest: running its "
                f"{enc} weights (make one with python -m models.quantize --{wanted}-variant "
                f"{model_path})")
            return enc, model_path.parent / str(variant.get("file", "")), warn
    return "s8", model_path, (
        f"{model_path.name} is int8 with no u8 variant in its manifest: on this CPU (x86 "
        "without VNNI) its int8 sums may saturate and its masks differ from its measured "
        f"figures; make one with python -m models.quantize --u8-variant {model_path}")


def host_int8_weights(setting: str = "auto") -> str:
    """:func:`int8_weights_for` on this host (its machine type and CPU flags)."""
    import platform
    return int8_weights_for(setting, platform.machine(), cpu_flags())


# ----------------------------------------------------------------------------- runtime

class Segmenter:
    """Runs the segmentation model; loads it on first use (nothing heavy at construction)."""

    def __init__(self, settings: SegmentationSettings | None = None):
        self.settings = settings or SegmentationSettings()
        self.model_path = Path(self.settings.model_path) if self.settings.model_path else DEFAULT_MODEL
        self._session = None
        self._manifest: dict | None = None
        self._input_name = ""
        self._input_hw = (0, 0)
        self.classes: list = list(CLASSES)
        self.providers: list = []
        self.post: PostProcess = parse_post_process(None)
        self.calibration: dict = {}
        self.calibrated: list = []  # the calibration's classes in class order, set at load
        # the file run: the model, or its u8 weights variant (int8_weights_for); set at load
        self.run_path: Path = self.model_path
        self.int8_weights = ""  # "s8", "u8" or "s7" for an int8 model, else ""

    # lazily
    def load(self) -> "Segmenter":
        if self._session is not None:
            return self
        import onnxruntime as ort  # deferred: keep imports of this module light

        manifest = load_manifest(self.model_path)
        classes = list(manifest["classes"])
        if classes != list(CLASSES):
            log.warning("model classes %s differ from models.classes.CLASSES %s", classes, CLASSES)
        shape = manifest["input"]["shape"]  # [1, 1, h, w]
        post = parse_post_process(manifest.get("post_process"), classes)
        calibration = parse_calibration(manifest.get("confidence_calibration"), classes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(self.settings.threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if self.settings.provider == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                log.warning("segmentation.provider is 'cuda' but onnxruntime has no "
                            "CUDAExecutionProvider here; running on the CPU")
        run_path, weights = self.model_path, ""
        if "quantization" in manifest or any(v in manifest for v in WEIGHT_VARIANTS.values()):
            wanted = host_int8_weights(self.settings.int8_weights)
            weights, run_path, warning = weights_file(self.model_path, manifest, wanted)
            if warning:
                log.warning("%s", warning)
            if weights != "s8":
                variant = manifest[WEIGHT_VARIANTS[weights]]
                if not run_path.is_file():
                    raise FileNotFoundError(
                        f"{run_path} (the {weights} variant of {self.model_path.name}, "
                        f"which segmentation.int8_weights {self.settings.int8_weights!r} asks "
                        "for here) is missing; make it with python -m models.quantize "
                        f"--{weights}-variant {self.model_path}, or set "
                        "segmentation.int8_weights: s8 (on x86 without VNNI its sums saturate)")
                if file_sha256(run_path) != variant.get("sha256"):
                    raise ModelIntegrityError(f"{run_path.name} does not match the sha256 "
                                              f"in {self.model_path.with_suffix('.json').name}")
                log.info("running %s (%s's weights as %s)", run_path.name,
                         self.model_path.name, weights)
        sess = ort.InferenceSession(str(run_path), sess_options=opts, providers=providers)
        self.run_path, self.int8_weights = run_path, weights
        self._input_name = sess.get_inputs()[0].name
        self._input_hw = (int(shape[2]), int(shape[3]))
        self.classes = classes
        self.post = post
        self.calibration = calibration
        self.calibrated = [name for name in classes if name in calibration]
        self.providers = sess.get_providers()
        self._manifest = manifest
        self._session = sess
        log.info("loaded %s (input %s, providers %s)", self.model_path.name, shape, self.providers)
        return self

    @property
    def manifest(self) -> dict:
        self.load()
        return self._manifest  # type: ignore[return-value]

    @property
    def input_hw(self) -> tuple[int, int]:
        self.load()
        return self._input_hw

    @property
    def name(self) -> str:
        return self.model_path.stem

    @property
    def model_name(self) -> str:
        """Name plus the first 8 hex digits of the weights' sha256 (for SegResult.model)."""
        sha = (self._manifest or {}).get("sha256", "")
        return f"{self.model_path.stem}:{sha[:8]}" if sha else self.model_path.stem

    def pre_process(self, image: np.ndarray) -> np.ndarray:
        """uint8 frame -> model input tensor (1, 1, h, w) float32."""
        return pre_process_image(image, self.input_hw)

    def predict(self, tensor: np.ndarray) -> np.ndarray:
        """Model input -> per-class probabilities (1, C, h, w); with the manifest's
        ``post_process.tta_flip`` the mean of the frame's and its mirror image's (2x time)."""
        self.load()
        probs = self._session.run(None, {self._input_name: tensor})[0]
        if self.post.tta_flip:
            flipped = np.ascontiguousarray(tensor[..., ::-1])
            probs = 0.5 * (probs + self._session.run(None, {self._input_name: flipped})[0][..., ::-1])
        return probs

    def post_process(self, raw: np.ndarray, frame_shape: tuple) -> SegOutput:
        """Probabilities -> SegOutput at frame size (the manifest's ``post_process``), with
        the confidences of the classes the manifest calibrates calibrated."""
        self.load()
        out = probs_to_output(raw, frame_shape, self.classes, post=self.post)
        if self.calibration:
            out.confidence = calibrate_confidence(out.confidence, self.classes, self.calibration,
                                                  out.area_frac)
        out.calibrated = list(self.calibrated)
        return out

    def segment(self, image: np.ndarray) -> SegOutput:
        """A frame (uint8, any size, grey or BGR) -> SegOutput with timings."""
        t0 = time.perf_counter()
        x = self.pre_process(image)
        t1 = time.perf_counter()
        raw = self.predict(x)
        t2 = time.perf_counter()
        out = self.post_process(raw, image.shape[:2])
        t3 = time.perf_counter()
        out.timings_ms = {"pre": (t1 - t0) * 1e3, "predict": (t2 - t1) * 1e3,
                          "post": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return out
