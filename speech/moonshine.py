"""Moonshine tiny's encoder (Useful Sensors / Moonshine AI, English model MIT licence) as a
second set of ears for the single-word head.

Why: the single-word head (speech/whisper_head.py) reads Whisper tiny.en's encoder output,
and on real speakers it never heard no head over those features (linear, MLP, every encoder
layer, a temporal convolution) named more than 87-90 % of clean single words (docs/SPEECH.md,
"Moonshine's ears"). Moonshine tiny (27 M parameters) was trained on other real speech; its
encoder output, pooled the same way and read beside Whisper's, lets a linear head name
92 % of them. Through the whole pipeline that gain mostly did not carry (rule MH2: +6 of
800 held-out words, fewer wrong ones, 12 ms more latency at p95): an opt-in, off by default
(``speech.head_moonshine``).

Only the encoder is used (no decoding, no tokenizer). It ships in the PyPI wheel
``moonshine-voice==0.1.0`` (``moonshine_voice/assets/tiny-en/encoder_model.ort``, ONNX
Runtime format), installed with ``--no-deps`` by scripts/setup.sh: nothing of that package
is imported, its file is read and its sha256 checked below. Nothing here is trained by us.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

PACKAGE = "moonshine_voice"
PIN = "moonshine-voice==0.1.0"
ENCODER = Path("assets") / "tiny-en" / "encoder_model.ort"
# sha256 of the encoder in that wheel: a different file is refused (supply chain)
ENCODER_SHA256 = "94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221"
DIM = 288  # the encoder's output width; pooled() gives twice that
MIN_SAMPLES = 2400  # 150 ms: shorter input is padded with zeros (the encoder's convolutions)


class MoonshineError(RuntimeError):
    """Moonshine's encoder is not installed, not the pinned file, or cannot run."""


def encoder_path() -> Path:
    """The encoder file inside the installed wheel (the package is found, not imported)."""
    from .whisper import package_dir
    root = package_dir(PACKAGE)
    if root is None:
        raise MoonshineError(f"Moonshine's encoder is not installed: pip install --no-deps "
                             f"{PIN} (scripts/setup.sh does)")
    p = root / ENCODER
    if not p.is_file():
        raise MoonshineError(f"{p} is missing: reinstall {PIN}")
    return p


class MoonshineEncoder:
    """``pooled(samples)``: the mean and the max over time of Moonshine tiny's encoder
    output for 16 kHz samples (int16, or float in [-1, 1]), (2 * DIM,) float32."""

    def __init__(self, path: str | Path | None = None, check_sha256: bool = True,
                 threads: int = 1) -> None:
        p = Path(path) if path else encoder_path()
        try:
            data = p.read_bytes()
        except OSError as e:
            raise MoonshineError(f"{p}: cannot read Moonshine's encoder ({e})") from e
        if check_sha256 and hashlib.sha256(data).hexdigest() != ENCODER_SHA256:
            raise MoonshineError(f"{p}: not the pinned Moonshine tiny encoder (sha256 differs; "
                                 f"reinstall {PIN})")
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        try:
            self._s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise MoonshineError(f"{p}: onnxruntime cannot load it ({e})") from e
        self.path = p

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """(frames, DIM) encoder output; about 41 frames per second."""
        x = np.asarray(samples)
        if x.ndim != 1 or len(x) == 0:
            raise MoonshineError(f"encode(): wants mono samples, got shape {x.shape}")
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        if len(x) < MIN_SAMPLES:
            x = np.pad(x, (0, MIN_SAMPLES - len(x)))
        x = x[None]
        out = self._s.run(None, {"input_values": x,
                                 "attention_mask": np.ones(x.shape, np.int64)})[0]
        return out[0]

    def pooled(self, samples: np.ndarray) -> np.ndarray:
        e = self.encode(samples)
        return np.concatenate([e.mean(axis=0), e.max(axis=0)]).astype(np.float32)


_shared: MoonshineEncoder | None = None


def shared_encoder() -> MoonshineEncoder:
    """One encoder per process (13 MB; the listeners of a benchmark share it)."""
    global _shared
    if _shared is None:
        _shared = MoonshineEncoder()
    return _shared
