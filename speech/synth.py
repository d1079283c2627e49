"""Synthetic speech for tests and benchmarks: eSpeak NG to 16 kHz int16 samples.

Synthetic voices are not human voices: figures measured with them say so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from .audio import read_wav

T = TypeVar("T")


def cached(path: Path, load: Callable[[Path], T], write: Callable[[Path], None]) -> T:
    """``load(path)``, after ``write`` has made the file if it is missing or cannot be read.
    ``write`` gets a name of this process's own in the same folder (same suffix), renamed to
    ``path`` once whole: processes sharing a cache never read a file another is still
    writing (espeak-ng's WAV header says 2^30 frames until it closes the file)."""
    if path.exists():
        try:
            return load(path)
        except (OSError, ValueError, EOFError) as e:  # a run killed mid-write, before this
            print(f"remaking the cached file {path}: {e}", file=sys.stderr, flush=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return load(path)


def espeak(text: str, voice: str = "en-us", speed_wpm: int = 160, pitch: int = 50,
           out_wav: str | Path | None = None) -> np.ndarray:
    """Speak ``text`` with the espeak-ng command line; returns 16 kHz mono int16."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    with tempfile.TemporaryDirectory() as d:
        p = Path(out_wav) if out_wav else Path(d) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed_wpm), "-p", str(pitch),
                        "-w", str(p), "--", text], check=True, capture_output=True)
        x, _ = read_wav(p)
    return x


def with_silence(x: np.ndarray, before_s: float = 0.5, after_s: float = 0.8,
                 noise_std: float = 3.0, seed: int = 0) -> np.ndarray:
    """Pad with faint deterministic noise (a quiet room, not digital zeros)."""
    rng = np.random.default_rng(seed)
    b = int(16000 * before_s)
    a = int(16000 * after_s)
    y = np.concatenate([np.zeros(b), x.astype(np.float64), np.zeros(a)])
    y += rng.normal(0.0, noise_std, len(y))
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)
