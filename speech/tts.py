"""Speech output: text -> WAV (pyttsx3 / eSpeak NG) -> sound device, with priorities.

    out = SpeechOutput(TTSSettings(), on_speaking=lambda speaking, text: ...)
    out.say("show fascia", priority="ack")
    out.say("needle near pleura", priority="alert")   # interrupts the ack
    out.close()

* One worker thread owns the queue and the playback; WAVs are made by one pyttsx3
  engine living in its own thread (pyttsx3 is flaky when driven from several threads
  or re-entered). If pyttsx3 fails, writes nothing, or takes longer than
  ``_SYNTH_TIMEOUT_S``, that engine is dropped and the ``espeak-ng`` command line is
  used from then on.
* Priorities ``alert > answer > ack``: an alert interrupts a less urgent utterance
  being spoken and goes ahead of queued ones; the queue is bounded (oldest least
  urgent item dropped, alerts never).
* ``on_speaking(True/False, text)`` and :attr:`speaking` tell the recognizer to mute
  itself (CommandListener.set_speaking) while we speak, plus ``mute_tail_ms``.
* No sound device: logged clearly once; the WAV is still made (and kept in
  ``wav_dir`` when configured) and everything keeps running.
"""
from __future__ import annotations

import itertools
import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .settings import TTSSettings

log = logging.getLogger(__name__)

PRIORITY_RANK = {"alert": 0, "answer": 1, "ack": 2}
_SYNTH_TIMEOUT_S = 10.0


class TTSError(RuntimeError):
    """Speech could not be synthesised by any backend."""


@dataclass(order=True, frozen=True)
class SayItem:
    rank: int
    seq: int
    text: str = ""
    priority: str = "answer"


def rank_of(priority: str) -> int:
    if priority not in PRIORITY_RANK:
        raise ValueError(f"priority must be one of {list(PRIORITY_RANK)}, got {priority!r}")
    return PRIORITY_RANK[priority]


def preempts(new_priority: str, current_priority: str) -> bool:
    """An alert interrupts an answer or ack being spoken; nothing else interrupts."""
    return rank_of(new_priority) == 0 and rank_of(current_priority) > 0


def enqueue(items: list[SayItem], item: SayItem, max_len: int) -> tuple[list[SayItem], list[SayItem]]:
    """Pure: the queue after adding ``item`` (sorted, most urgent first) and the items
    dropped to keep it within ``max_len`` (least urgent, oldest first; never alerts)."""
    q = sorted(items + [item])
    dropped: list[SayItem] = []
    while len(q) > max_len:
        victims = [i for i in q if i.rank > 0]
        if not victims:
            break
        worst = max(v.rank for v in victims)
        v = min((i for i in victims if i.rank == worst), key=lambda i: i.seq)
        q.remove(v)
        dropped.append(v)
    return q, dropped


# ----------------------------------------------------------------------------- synthesis

def espeak_cli_to_wav(text: str, path: str | Path, rate_wpm: int = 170, voice: str = "") -> Path:
    """Synthesise with the ``espeak-ng`` command line (the fallback; no sound card)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise TTSError("espeak-ng command not found (install the Debian package espeak-ng)")
    cmd = [exe, "-s", str(rate_wpm), "-w", str(path)]
    if voice:
        cmd += ["-v", voice]
    r = subprocess.run(cmd + ["--", text], capture_output=True, timeout=30)
    if r.returncode != 0 or not _valid_wav(path):
        raise TTSError(f"espeak-ng failed (rc {r.returncode}): {r.stderr.decode(errors='replace')[:200]}")
    return Path(path)


def _valid_wav(path: str | Path) -> bool:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() > 0
    except (OSError, wave.Error, EOFError):
        return False


class _Pyttsx3Synth:
    """One pyttsx3 engine, used only from its own thread."""

    def __init__(self, rate_wpm: int, voice: str) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._rate, self._voice = rate_wpm, voice
        self.broken: str | None = None
        self._thread = threading.Thread(target=self._loop, name="pyttsx3", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        engine = None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            text, path, done = job
            try:
                if engine is None:
                    import pyttsx3
                    engine = pyttsx3.init()
                    engine.setProperty("rate", self._rate)
                    if self._voice:
                        engine.setProperty("voice", self._voice)
                engine.save_to_file(text, str(path))
                engine.runAndWait()
                done["ok"] = _valid_wav(path)
                if not done["ok"]:
                    done["error"] = "pyttsx3 wrote no audio"
                    engine = None  # start afresh next time
            except Exception as exc:  # pyttsx3/driver errors have no common base class
                done["ok"], done["error"] = False, f"{type(exc).__name__}: {exc}"
                engine = None
            done["event"].set()

    def to_wav(self, text: str, path: Path) -> bool:
        done = {"event": threading.Event(), "ok": False, "error": ""}
        self._jobs.put((text, path, done))
        if not done["event"].wait(_SYNTH_TIMEOUT_S):
            self.broken = f"pyttsx3 took more than {_SYNTH_TIMEOUT_S} s"
            return False
        if not done["ok"]:
            log.warning("pyttsx3 failed (%s); using the espeak-ng command line", done["error"])
            self.broken = done["error"]
        return bool(done["ok"])

    def close(self) -> None:
        self._jobs.put(None)


def read_wav_float(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        rate, n, ch = w.getframerate(), w.getnframes(), w.getnchannels()
        a = np.frombuffer(w.readframes(n), "<i2").reshape(-1, ch)
    return a, rate


# ----------------------------------------------------------------------------- output

class SoundDevicePlayer:
    """Plays int16 audio on the default output; interruptible. Raises OSError-like
    errors as :class:`NoSoundDeviceError`."""

    def __init__(self) -> None:
        try:
            import sounddevice as sd
        except OSError as exc:
            raise NoSoundDeviceError(f"PortAudio not available: {exc}") from exc
        try:
            outs = [d for d in sd.query_devices() if d.get("max_output_channels", 0) > 0]
        except Exception as exc:  # PortAudio's own error type
            raise NoSoundDeviceError(f"cannot list sound devices: {exc}") from exc
        if not outs:
            raise NoSoundDeviceError("no audio output device (no sound card found by PortAudio)")
        self._sd = sd

    def play(self, samples: np.ndarray, rate: int, stop: threading.Event) -> bool:
        """Play; returns False when interrupted by ``stop``."""
        self._sd.play(samples, rate)
        try:
            dur = len(samples) / rate
            waited = 0.0
            while waited < dur + 0.5:
                if stop.wait(0.02):
                    self._sd.stop()
                    return False
                waited += 0.02
                if not self._sd.get_stream().active:
                    break
            return True
        finally:
            self._sd.stop()


class NoSoundDeviceError(RuntimeError):
    """No audio output: speech is synthesised but not played."""


class SpeechOutput:
    """Prioritised speech output. Thread-safe ``say``; one worker thread speaks."""

    def __init__(self, settings: TTSSettings | None = None,
                 on_speaking: Callable[[bool, str], None] | None = None,
                 player: object | None = None) -> None:
        self.settings = s = settings or TTSSettings()
        self._on_speaking = on_speaking
        self._cv = threading.Condition()
        self._queue: list[SayItem] = []
        self._seq = itertools.count()
        self._current: SayItem | None = None
        self._stop_current = threading.Event()
        self._closed = False
        self.speaking = False
        # texts done to the end (played where there is a device), and cut short by an alert
        self.spoken: list[str] = []
        self.interrupted: list[str] = []
        self.wav_files: list[Path] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="tts-")
        self._synth = _Pyttsx3Synth(s.rate_wpm, s.voice) if s.backend == "pyttsx3" else None
        self._player = player
        if player is None and s.output == "speaker" and s.enabled:
            try:
                self._player = SoundDevicePlayer()
            except NoSoundDeviceError as exc:
                log.warning("no sound device: speech output is not played (%s); "
                            "everything else keeps running", exc)
        self._worker = threading.Thread(target=self._loop, name="tts", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ API

    def say(self, text: str, priority: str = "answer") -> None:
        """Queue ``text``; an alert interrupts a less urgent utterance being spoken."""
        if not self.settings.enabled or (self.settings.output == "none" and self._player is None):
            log.info("tts disabled, not saying %r", text)
            return
        item = SayItem(rank_of(priority), next(self._seq), text, priority)
        with self._cv:
            if self._closed:
                raise RuntimeError("SpeechOutput is closed")
            self._queue, dropped = enqueue(self._queue, item, self.settings.max_queue)
            for d in dropped:
                log.warning("tts queue full, dropped %s %r", d.priority, d.text)
            if self._current is not None and preempts(priority, self._current.priority):
                self._stop_current.set()
            self._cv.notify_all()

    def synthesize(self, text: str, path: str | Path) -> Path:
        """Write ``text`` as a WAV (pyttsx3, falling back to the espeak-ng CLI)."""
        p = Path(path)
        if self._synth is not None and self._synth.broken is None:
            if self._synth.to_wav(text, p):
                return p
        return espeak_cli_to_wav(text, p, self.settings.rate_wpm, self.settings.voice)

    @property
    def backend_in_use(self) -> str:
        return "pyttsx3" if self._synth is not None and self._synth.broken is None else "espeak-ng"

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until the queue is empty and nothing is being spoken (tests, shutdown)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._queue and self._current is None,
                                     timeout=timeout_s)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._stop_current.set()
            self._cv.notify_all()
        self._worker.join(timeout=5)
        if self._synth is not None:
            self._synth.close()

    # ------------------------------------------------------------------ worker

    def _set_speaking(self, speaking: bool, text: str) -> None:
        self.speaking = speaking
        if self._on_speaking is not None:
            try:
                self._on_speaking(speaking, text)
            except Exception:  # a listener's bug must not kill speech output
                log.exception("on_speaking callback failed")

    def _loop(self) -> None:
        n = 0
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                item = self._queue.pop(0)
                self._current = item
                self._stop_current.clear()
            try:
                n += 1
                if self.settings.output == "wav_dir" and self.settings.wav_dir:
                    d = Path(self.settings.wav_dir)
                    d.mkdir(parents=True, exist_ok=True)
                    path = d / f"say_{n:05d}_{item.priority}.wav"
                else:
                    path = Path(self._tmp.name) / f"say_{n % 4}.wav"
                self.synthesize(item.text, path)
                self.wav_files.append(path)
                del self.wav_files[:-32]
                done = True
                if self._player is not None and not self._stop_current.is_set():
                    samples, rate = read_wav_float(path)
                    self._set_speaking(True, item.text)
                    try:
                        done = self._player.play(samples, rate, self._stop_current)
                    finally:
                        self._set_speaking(False, item.text)
                elif self._stop_current.is_set():
                    done = False
                (self.spoken if done else self.interrupted).append(item.text)
                del self.spoken[:-64], self.interrupted[:-64]
            except Exception:  # keep speaking later items whatever went wrong with this one
                log.exception("speech output failed for %r", item.text)
            finally:
                with self._cv:
                    self._current = None
                    self._cv.notify_all()
