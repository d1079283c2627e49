"""Audio in: WAV files, the audio track of a video (or any other media) file, the
microphone, and conversion to the one internal format (16 kHz mono int16).

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


#: media read through PyAV (FFmpeg) rather than the wave module
WAV_SUFFIXES = (".wav", ".wave")


def read_audio(path: str | Path) -> tuple[np.ndarray, WavInfo]:
    """Any recording as 16 kHz mono int16: a WAV file (:func:`read_wav`), or the audio
    track of a video or other media file (mp4, mov, mkv, avi, m4a, mp3, ...:
    :func:`read_media_audio`). A recording with no samples at all is an AudioFileError:
    there is nothing to listen to."""
    p = Path(path)
    samples, info = read_wav(p) if p.suffix.lower() in WAV_SUFFIXES else read_media_audio(p)
    if len(samples) == 0:
        raise AudioFileError(f"{p} holds no audio (0 samples)")
    return samples, info


def has_audio_track(path: str | Path) -> bool:
    """True if the media file ``path`` holds an audio stream (False when PyAV cannot open
    it: the caller reads the video through OpenCV anyway)."""
    try:
        import av
        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except Exception:  # noqa: BLE001 - not a media file PyAV reads: no track to use
        return False


def read_media_audio(path: str | Path) -> tuple[np.ndarray, WavInfo]:
    """The first audio track of a media file, decoded with PyAV (FFmpeg), mixed down and
    resampled to 16 kHz mono int16, and aligned with the file's video: audio that starts
    after the first video frame is padded with silence in front, audio before it is cut,
    so sample ``i`` is media time ``i / 16000`` of the video. A file that breaks off part
    way keeps the audio decoded up to there (logged). Raises AudioFileError naming the
    file for a missing file, one FFmpeg cannot open, or one without an audio track."""
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"media file {p} does not exist" if not p.exists()
                             else f"media path {p} is not a file")
    try:
        import av
    except ImportError as exc:
        raise AudioFileError(f"{p}: reading the audio of a media file needs PyAV "
                             f"(pip install av): {exc}") from exc
    try:
        c = av.open(str(p))
    except av.error.FFmpegError as exc:
        raise AudioFileError(f"media file {p} cannot be opened: {exc}") from exc
    with c:
        if not c.streams.audio:
            raise AudioFileError(f"media file {p} has no audio track")
        a = c.streams.audio[0]
        rate, ch = a.codec_context.sample_rate, a.codec_context.channels
        offset_s = 0.0
        if c.streams.video and a.start_time is not None \
                and c.streams.video[0].start_time is not None:
            v = c.streams.video[0]
            offset_s = float(a.start_time * a.time_base - v.start_time * v.time_base)
        res = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
        parts: list[np.ndarray] = []
        try:
            for frame in c.decode(a):
                parts += [f.to_ndarray().reshape(-1) for f in res.resample(frame)]
        except av.error.FFmpegError as exc:
            if not parts:
                raise AudioFileError(f"media file {p}: its audio cannot be decoded: {exc}") from exc
            log.warning("media file %s: audio breaks off after %.2f s (%s); keeping that",
                        p, sum(map(len, parts)) / SAMPLE_RATE_HZ, exc)
        parts += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    x = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
    shift = int(round(offset_s * SAMPLE_RATE_HZ))
    if shift > 0:
        x = np.concatenate([np.zeros(shift, np.int16), x])
    elif shift < 0:
        x = x[-shift:]
    log.info("audio track of %s: %d Hz, %d channel(s), %.2f s: converted to 16 kHz mono",
             p, rate, ch, len(x) / SAMPLE_RATE_HZ)
    return x, WavInfo(str(p), rate, ch, 2, True)


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


def strip_padding(x: np.ndarray, min_run: int = 160) -> np.ndarray:
    """The clip without the runs of exact digital zeros (at least ``min_run`` samples, 10
    ms) at its start and end: a file's padding, which no microphone delivers. Left in, a
    clip with a recorded background of 50 dB or more would be framed by digital silence,
    its quietest 100 ms (the room tone put around it) would be that silence, and the
    background would sound like speech beside it. A clip with nothing else is kept whole."""
    nz = np.flatnonzero(x)
    if len(nz) == 0:
        return x
    a = int(nz[0]) if nz[0] >= min_run else 0
    b = int(nz[-1]) + 1 if len(x) - 1 - nz[-1] >= min_run else len(x)
    return x[a:b]


def cut_at_edge(x: np.ndarray, edge_ms: int = 30, within_db: float = 10.0) -> bool:
    """Whether the recording starts or ends in the middle of its loudest sound: a 10 ms
    frame among its first or last ``edge_ms`` within ``within_db`` of its loudest frame
    (its file padding stripped first). Such a clip holds a word the recording cut: 16 of
    the 200 shared Speech Commands words, e.g. a "no" whose first 150 ms end the file. A
    benchmark reports the words whole and cut apart; it scores both."""
    x = strip_padding(x)
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    if len(f) < 2:
        return False
    e = 10 * np.log10((f * f).mean(axis=1) + 1e-9)
    k = max(1, min(len(f) // 2, edge_ms // 10))
    return bool(max(e[:k].max(), e[-k:].max()) >= e.max() - within_db)


def room_tone(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of the clip's own quietest 100 ms, tiled: the room's background to
    put before or after it (the whole clip when shorter than 100 ms)."""
    if n <= 0:
        return x[:0]
    m = max(1, len(x) // 1600)
    f = x[: m * 1600].reshape(m, -1) if len(x) >= 1600 else x[None, :]
    q = f[int(np.argmin((f.astype(np.float64) ** 2).mean(axis=1)))]
    return np.tile(q, int(np.ceil(n / max(1, len(q)))))[:n]


def active_power(x: np.ndarray) -> float:
    """Mean power of the louder half of 10 ms frames (the speech power an SNR refers to)."""
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    if len(f) == 0:
        return 1.0
    p = np.sort((f * f).mean(axis=1))[len(f) // 2:]
    return float(p.mean()) + 1e-9


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float | None) -> np.ndarray:
    """``speech`` (int16) in ``noise`` (float, at least as long) at ``snr_db`` over the
    speech's ``active_power`` (None: the speech as it is); scaled down as a whole where the
    sum would clip, so the SNR stays."""
    s = speech.astype(np.float64)
    if snr_db is None:
        return speech
    ps, pn = active_power(speech), float((noise ** 2).mean()) + 1e-9
    g = np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    y = s + g * noise[: len(s)]
    peak = np.abs(y).max()
    if peak > 32000:  # keep the mix in range, SNR unchanged
        y *= 32000 / peak
    return np.round(y).astype(np.int16)


def noise_piece(noises: list[np.ndarray], n: int, seed: int) -> np.ndarray:
    """``n`` samples (float64) of one of ``noises``, the recording and the offset drawn from
    ``seed``; a recording shorter than ``n`` is repeated."""
    rng = np.random.default_rng(seed)
    src = noises[int(rng.integers(len(noises)))]
    off = int(rng.integers(0, max(1, len(src) - n)))
    piece = src[off: off + n].astype(np.float64)
    if len(piece) < n:
        piece = np.pad(piece, (0, n - len(piece)), mode="wrap")
    return piece


def speech_end_s(x: np.ndarray) -> float:
    """Where the speech in a recording ends, from its own energy: the end of the last 10 ms
    frame within 35 dB of the loudest and 10 dB over the quietest tenth (on clean synthetic
    speech, with digital silence around it, the first condition alone decides)."""
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    if len(f) == 0:
        return 0.0
    e = 10 * np.log10((f * f).mean(axis=1) + 1)
    idx = np.nonzero(e > max(e.max() - 35, np.percentile(e, 10) + 10))[0]
    return (idx[-1] + 1) * 0.01 if len(idx) else len(x) / SAMPLE_RATE_HZ


def chunks(samples: np.ndarray, chunk_ms: int = 50, start_s: float = 0.0):
    """Yield (chunk, start_s) pieces of a 16 kHz signal, as a stream would deliver them."""
    n = max(1, SAMPLE_RATE_HZ * chunk_ms // 1000)
    for i in range(0, len(samples), n):
        yield samples[i:i + n], start_s + i / SAMPLE_RATE_HZ


def open_microphone(device: int | str | None,
                    callback: Callable[[np.ndarray, float], None],
                    block_ms: int = 20):
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
