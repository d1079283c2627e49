"""Audio in: WAV files, microphone, and conversion to the one internal format
(16 kHz mono int16).

Everything that enters the recognizer goes through :func:`to_internal`, so a 44.1 kHz
stereo WAV and a 16 kHz mono one give the same kind of samples. Resampling uses
``scipy.signal.resample_poly`` (polyphase, anti-aliased) which is deterministic.
"""
from __future__ import annotations

import logging
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000


class AudioFileError(ValueError):
    """A WAV file that cannot be used; the message names the file and the problem."""


class NoMicrophoneError(RuntimeError):
    """No usable microphone (no sound card, no PortAudio, or the device failed to open).
    Voice control is disabled; everything else keeps running."""


@dataclass(frozen=True)
class WavInfo:
    path: str
    sample_rate_hz: int
    channels: int
    sample_width_bytes: int
    converted: bool  # resampled and/or mixed down to mono


def to_internal(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Any PCM array (frames x channels or 1-D; int16/int32/uint8/float) at any rate ->
    16 kHz mono int16. Channels are averaged; floats are taken as -1..1."""
    a = np.asarray(samples)
    if a.ndim == 2:
        a = a.astype(np.float64).mean(axis=1) if a.shape[1] > 1 else a[:, 0]
    elif a.ndim != 1:
        raise ValueError(f"audio must be 1-D or (frames, channels), got shape {a.shape}")
    if a.dtype == np.uint8:
        x = (a.astype(np.float64) - 128.0) * 256.0
    elif a.dtype == np.int32:
        x = a.astype(np.float64) / 65536.0
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        # floats from files are -1..1; floats from a channel mean of int16 are already scaled
        if samples.dtype.kind == "f":
            x = x * 32767.0
    else:
        x = a.astype(np.float64)
    if rate_hz != SAMPLE_RATE_HZ:
        if rate_hz <= 0:
            raise ValueError(f"sample rate must be positive, got {rate_hz}")
        from scipy.signal import resample_poly  # heavy import only when needed
        g = gcd(int(rate_hz), SAMPLE_RATE_HZ)
        x = resample_poly(x, SAMPLE_RATE_HZ // g, int(rate_hz) // g)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path) -> tuple[np.ndarray, WavInfo]:
    """Read a WAV file as 16 kHz mono int16, converting rate and channels.

    Raises AudioFileError for a missing file, a file that is not WAV, or a truncated
    one (the header promises more audio than the file holds).
    """
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"WAV file {p} does not exist")
    if not p.is_file():
        raise AudioFileError(f"WAV path {p} is not a file")
    try:
        with wave.open(str(p), "rb") as w:
            ch, sw, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(n)
    except wave.Error as exc:
        if "unknown format" in str(exc):
            return _read_wav_scipy(p)
        raise AudioFileError(f"WAV file {p} is not a readable PCM WAV: {exc}") from exc
    except EOFError as exc:
        raise AudioFileError(f"WAV file {p} is truncated (header incomplete)") from exc
    expected = n * ch * sw
    if len(data) < expected:
        raise AudioFileError(
            f"WAV file {p} is truncated: header says {n} frames "
            f"({n / max(rate, 1):.2f} s) but the file holds {len(data) // max(ch * sw, 1)}")
    if sw == 1:
        a = np.frombuffer(data, np.uint8)
    elif sw == 2:
        a = np.frombuffer(data, "<i2")
    elif sw == 3:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3)
        a = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8)
             | (b[:, 2].astype(np.int32) << 16))
        a = np.where(a & 0x800000, a - (1 << 24), a).astype(np.int32) << 8
    elif sw == 4:
        a = np.frombuffer(data, "<i4")
    else:
        raise AudioFileError(f"WAV file {p}: unsupported sample width {sw} bytes")
    a = a.reshape(-1, ch)
    converted = rate != SAMPLE_RATE_HZ or ch != 1 or sw != 2
    if converted:
        log.info("WAV %s is %d Hz, %d channel(s), %d-bit: converting to 16 kHz mono int16",
                 p, rate, ch, 8 * sw)
    return to_internal(a, rate), WavInfo(str(p), rate, ch, sw, converted)


def _read_wav_scipy(p: Path) -> tuple[np.ndarray, WavInfo]:
    """Float WAVs (format 3), which the wave module does not read."""
    from scipy.io import wavfile
    try:
        rate, a = wavfile.read(str(p))
    except ValueError as exc:
        raise AudioFileError(f"WAV file {p} is not a readable WAV: {exc}") from exc
    ch = 1 if a.ndim == 1 else a.shape[1]
    log.info("WAV %s is %s %d Hz, %d channel(s): converting", p, a.dtype, rate, ch)
    return to_internal(a, rate), WavInfo(str(p), rate, ch, a.dtype.itemsize, True)


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Write mono int16 samples (used by tests and benchmarks)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(np.asarray(samples, np.int16).tobytes())


def chunks(samples: np.ndarray, chunk_ms: int = 50, start_s: float = 0.0):
    """Yield (chunk, start_s) pieces of a 16 kHz signal, as a stream would deliver them."""
    n = max(1, SAMPLE_RATE_HZ * chunk_ms // 1000)
    for i in range(0, len(samples), n):
        yield samples[i:i + n], start_s + i / SAMPLE_RATE_HZ


def open_microphone(device: int | str | None,
                    callback: Callable[[np.ndarray, float], None],
                    block_ms: int = 50):
    """Open a microphone input stream that calls ``callback(samples_int16_16k, start_s)``.

    Returns the started ``sounddevice.InputStream`` (call ``.stop()``/``.close()``).
    Raises NoMicrophoneError with a clear message when PortAudio or an input device is
    missing, so the caller can disable voice control and keep everything else running.
    """
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise NoMicrophoneError(f"no microphone: PortAudio is not available ({exc}); "
                                "voice control disabled") from exc
    try:
        devices = sd.query_devices()
        inputs = [d for d in devices if d.get("max_input_channels", 0) > 0]
    except Exception as exc:  # PortAudio raises its own error types
        raise NoMicrophoneError(f"no microphone: cannot list sound devices ({exc}); "
                                "voice control disabled") from exc
    if not inputs:
        raise NoMicrophoneError("no microphone: this machine has no audio input device "
                                "(no sound card found by PortAudio); voice control disabled")
    try:
        info = sd.query_devices(device, "input")
        rate = int(info["default_samplerate"]) or SAMPLE_RATE_HZ
    except Exception as exc:
        raise NoMicrophoneError(f"no microphone: input device {device!r} not usable ({exc}); "
                                f"inputs found: {[d['name'] for d in inputs]}") from exc
    t0 = [None]

    def _cb(indata, frames, time_info, status):  # PortAudio thread
        if status:
            log.warning("microphone status: %s", status)
        if t0[0] is None:
            t0[0] = time_info.inputBufferAdcTime
        callback(to_internal(indata.copy(), rate), time_info.inputBufferAdcTime - t0[0])

    try:
        stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="int16",
                                blocksize=max(1, rate * block_ms // 1000), callback=_cb)
        stream.start()
    except Exception as exc:
        raise NoMicrophoneError(f"no microphone: opening input device {device!r} failed "
                                f"({exc}); voice control disabled") from exc
    return stream
