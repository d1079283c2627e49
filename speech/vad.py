"""Streaming energy endpointer: cuts a 16 kHz int16 stream into utterances.

Why energy and an adaptive floor rather than a trained VAD: it is deterministic,
cheap (well under 1 % of a core), has no model to ship, and the recognizer's
garbage-model test (speech/decision.py) rejects the noise bursts it lets through.
The floor is a low percentile of recent frame energies, so a tap that starts running
raises the floor within a few seconds instead of holding the endpointer "in speech".
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE_HZ

FRAME_MS = 10
_FRAME = SAMPLE_RATE_HZ * FRAME_MS // 1000


@dataclass(frozen=True)
class VadSettings:
    on_db: float = 9.0  # frame energy above the noise floor that counts as speech
    off_db: float = 6.0  # below floor + off_db counts as silence (hysteresis)
    min_speech_ms: int = 60  # speech frames needed to open an utterance
    hangover_ms: int = 200  # silence that closes an utterance
    preroll_ms: int = 150  # audio kept before the detected start (word onsets are soft)
    max_utterance_ms: int = 5000  # longer is conversation, not a command: not decoded
    floor_window_ms: int = 3000
    floor_percentile: float = 10.0
    min_energy_db: float = 30.0  # absolute floor: digital silence never opens speech


@dataclass
class Utterance:
    """One endpointed stretch of audio. ``speech_start_s``/``speech_end_s`` bound the
    frames above threshold; ``samples`` adds pre-roll and the hangover tail."""

    samples: np.ndarray
    start_s: float  # time of samples[0]
    speech_start_s: float
    speech_end_s: float
    closed_at_s: float  # stream time at which the endpointer decided it had ended
    too_long: bool = False

    @property
    def duration_s(self) -> float:
        return self.speech_end_s - self.speech_start_s


class Endpointer:
    """Feed any chunk sizes; get closed utterances back. Same input, same output.

    ``sink`` (optional) is told, in stream order, when an utterance opens (with its
    pre-roll), each further 10 ms frame of it, when it is abandoned (too long) and when
    it closes, so a recognizer can decode while the user is still speaking.
    """

    def __init__(self, settings: VadSettings | None = None, sink=None) -> None:
        self.s = settings or VadSettings()
        self.sink = sink
        self._pending = np.zeros(0, np.int16)  # samples not yet a whole frame
        # Time is origin + frame count * 10 ms, never a running float sum, so that any
        # chunking of the same stream gives bit-identical times (replay determinism).
        self._origin: float | None = None
        self._frames_done = 0
        hist = max(1, self.s.floor_window_ms // FRAME_MS)
        self._energies: deque[float] = deque(maxlen=hist)
        self._pre: deque[np.ndarray] = deque(maxlen=max(1, self.s.preroll_ms // FRAME_MS))
        self._in_speech = False
        self._run = 0  # consecutive speech frames while not in speech
        self._cand: list[np.ndarray] = []  # frames of a run that may open speech
        self._buf: list[np.ndarray] = []
        self._buf_start = 0.0
        self._speech_start = 0.0
        self._last_voiced_end = 0.0
        self._silence = 0
        self._n_frames = 0
        self._too_long = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, samples: np.ndarray, start_s: float) -> list[Utterance]:
        samples = np.asarray(samples, np.int16).ravel()
        expected = self._now() + len(self._pending) / SAMPLE_RATE_HZ
        if self._origin is None or abs(start_s - expected) > 0.002:
            # first chunk, or a gap/jump in the stream: re-anchor the clock
            self._origin = (start_s - len(self._pending) / SAMPLE_RATE_HZ
                            - self._frames_done * FRAME_MS / 1000.0)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(data) // _FRAME
        out: list[Utterance] = []
        if n:
            frames = data[: n * _FRAME].reshape(n, _FRAME)
            x = frames.astype(np.float64)
            energies = 10.0 * np.log10((x * x).mean(axis=1) + 1.0)
            for i in range(n):
                u = self._step(frames[i], float(energies[i]), self._now())
                self._frames_done += 1
                if u is not None:
                    out.append(u)
        self._pending = data[n * _FRAME:].copy()
        return out

    def _now(self) -> float:
        """Stream time of the next whole frame."""
        if self._origin is None:
            return 0.0
        return round(self._origin + self._frames_done * FRAME_MS / 1000.0, 6)

    def flush(self) -> list[Utterance]:
        """End of stream: close an open utterance."""
        if self._in_speech:
            return [self._close(self._now())]
        return []

    def _floor(self) -> float:
        if not self._energies:
            return self.s.min_energy_db
        return float(np.percentile(np.fromiter(self._energies, float), self.s.floor_percentile))

    def _step(self, frame: np.ndarray, e: float, t0: float) -> Utterance | None:
        s = self.s
        floor = self._floor()
        self._energies.append(e)
        t1 = round(t0 + FRAME_MS / 1000.0, 6)
        loud = e > max(floor + s.on_db, s.min_energy_db)
        quiet = e < max(floor + s.off_db, s.min_energy_db)
        if not self._in_speech:
            if loud:
                self._run += 1
                self._cand.append(frame)
                if self._run * FRAME_MS >= s.min_speech_ms:
                    self._in_speech = True
                    pre = list(self._pre)
                    self._buf = pre + self._cand
                    self._buf_start = round(t1 - len(self._buf) * FRAME_MS / 1000.0, 6)
                    self._speech_start = round(t1 - self._run * FRAME_MS / 1000.0, 6)
                    self._last_voiced_end = t1
                    self._silence = 0
                    self._too_long = False
                    self._cand = []
                    self._pre.clear()
                    if self.sink is not None:
                        self.sink.on_open(np.concatenate(self._buf))
                return None
            # a short burst that did not open speech goes back to the pre-roll
            for f in self._cand:
                self._pre.append(f)
            self._cand = []
            self._run = 0
            self._pre.append(frame)
            return None
        # in speech
        if not self._too_long:
            self._buf.append(frame)
            if len(self._buf) * FRAME_MS > s.max_utterance_ms + s.preroll_ms + s.hangover_ms:
                self._too_long = True
                self._buf = []  # conversation: stop keeping audio, wait for the end
                if self.sink is not None:
                    self.sink.on_abort()
            elif self.sink is not None:
                self.sink.on_audio(frame)
        if quiet:
            self._silence += 1
            if self._silence * FRAME_MS >= s.hangover_ms:
                return self._close(t1)
        else:
            self._last_voiced_end = t1
            self._silence = 0
        return None

    def _close(self, t: float) -> Utterance:
        samples = (np.concatenate(self._buf) if self._buf and not self._too_long
                   else np.zeros(0, np.int16))
        u = Utterance(samples, self._buf_start, self._speech_start, self._last_voiced_end,
                      t, self._too_long)
        self._in_speech = False
        self._buf = []
        self._run = 0
        self._silence = 0
        self._too_long = False
        if self.sink is not None:
            self.sink.on_close(u)
        return u
