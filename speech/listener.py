"""CommandListener: the streaming recognizer the speech node calls.

    listener = CommandListener(SpeechSettings())
    for chunk, t in stream:                  # any chunk size, 16 kHz mono int16
        for heard in listener.feed(chunk, t):
            publish(SpeechCommand(...))
    listener.flush()

Pipeline per utterance: endpointer (speech/vad.py: opens on energy, closes on quiet or
when the neural voice-activity model hears no more speech) -> not decoded when that model
heard no speech in it or it is a word's own tail (decision.not_speech) -> engine decode
with the command grammar and an open model (speech/engines.py), or the kws classifier
with Whisper's check, the single-word head and their fusion -> pure accept/reject
decisions (speech/decision.py). Deterministic: the same samples give the same commands,
whatever the chunk sizes (the endpointer works on fixed 10 ms frames).

Activation:
* ``wake``: the wake phrase must be in the utterance ("assistant, show fascia"); a wake
  phrase said alone is held ``wake_join_gap_ms`` for the command after a pause.
* ``always``: bare commands are acted on.
* ``push_to_talk``: only speech overlapping a pedal press (:meth:`push_to_talk`).
Muting: :meth:`set_speaking` / :meth:`set_muted_until` drop utterances that overlap the
assistant's own speech plus ``mute_tail_ms``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .commands import SINGLE_WORDS, CommandSet, load_commands
from .decision import (Decision, DecisionThresholds, cmd_early, cmd_fuse, decide, decide_kws,
                       decide_whisper, head_check, head_fuse, head_fuse_in_wake, head_veto,
                       joined_window_act, not_speech, same_command_again, second_opinion, soft_wake,
                       soft_window_act, unclear_after_wake, vetoed, wake_alone_heard, wake_below,
                       whisper_check, whisper_single_veto)
from .engines import Engine, EngineError, PocketSphinxEngine, make_engine
from .kws import NONE
from .settings import SpeechSettings, settings_problem
from .vad import Utterance, endpointer_for
from .whisper_head import (CMD_HEAD_FILE, HEAD_FILE, HEAD_MOON_FILE, HeadError, HeadResult,
                           WhisperHead)

log = logging.getLogger(__name__)

_BLOCK_FRAMES = 5  # 50 ms of audio per engine call while decoding in flight
_KWS_LEAD_S = 1.28  # quiet lead-in before a stream (kws engine): one classifier window
_KWS_TAIL_S = 0.32  # quiet tail after it
# Whisper's scores from the pause stand if the speech ended no later than this after it
_PAUSE_SLACK_S = 0.15
# rule J2: the stream kept for the command head's look back at a wake phrase said alone
# (longer than the join gap, a wake phrase and a command together)
_RING_SAMPLES = 8 * 16000


class _Ring:
    """The last ``n`` samples of a stream, kept in place: a feed costs its own length,
    not the buffer's."""

    def __init__(self, n: int) -> None:
        self._buf = np.zeros(n, np.int16)
        self._total = 0  # samples ever appended

    def __len__(self) -> int:
        return min(self._total, len(self._buf))

    def append(self, a: np.ndarray) -> None:
        n, k = len(self._buf), len(a)
        keep = a[-n:]
        self._buf[np.arange(self._total + k - len(keep), self._total + k) % n] = keep
        self._total += k

    def clear(self) -> None:
        self._total = 0

    def span(self, i: int, j: int) -> np.ndarray:
        """A copy of kept samples ``i`` to ``j`` (0: the oldest kept)."""
        first = self._total - len(self)
        return self._buf[np.arange(first + i, first + j) % len(self._buf)]


@dataclass(frozen=True)
class _WhisperJob:
    """Whisper's check of one stretch of audio on the listener's worker thread: the
    encoder pass (``enc``: the model's context and pooled output), then the search
    (``search``: a WhisperResult), which ends early once ``cancel`` is set."""

    enc: object  # Future
    search: object  # Future
    cancel: object  # threading.Event
    extra: object = None  # Future: the single-word head's other features (Moonshine's), or None


def _floor_noise(seconds: float, seed: int) -> np.ndarray:
    """Deterministic faint noise (a quiet room; the classifier never saw digital zeros)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0.0, 2.0, int(16000 * seconds))).astype(np.int16)


@dataclass(frozen=True)
class Heard:
    """A command as it reaches the assistant."""

    heard: str  # the words heard, wake phrase included
    command: str  # canonical id
    start_s: float  # media time of the start of speech
    end_s: float  # media time of the end of speech
    confidence: float
    needs_confirmation: bool = False
    # "" the engine alone; "second opinion": the classifier was unsure and PocketSphinx
    # agreed with one of its guesses; "whisper": the classifier did not act on it and
    # Whisper's check did; "head", "fused": the single-word head alone or with the
    # classifier; "command head": the command head with the classifier (rule M) (paths
    # with their own error rates: docs/SPEECH.md)
    via: str = ""


@dataclass(frozen=True)
class Unclear:
    """A command asked for (the wake phrase clearly heard, or the pedal down) but not
    understood: the assistant asks for it again instead of staying silent."""

    heard: str  # the wake phrase, when one was heard
    start_s: float  # media time of the speech that was not understood
    end_s: float
    guess: str | None  # the classifier's best command, too unsure to act on (or None)
    reason: str


@dataclass(frozen=True)
class UtteranceLog:
    """One endpointed utterance and what was decided (for benchmarks and debugging)."""

    start_s: float
    end_s: float
    closed_at_s: float
    decision: Decision
    decode_ms: float
    voice_prob: float | None = None  # highest neural speech probability in it (vad.py)
    unclear: bool = False  # a command asked for and not understood ("say again")
    # Whisper's check, when it ran (diagnostics; benchmarks/speech_bench.py --dump):
    # the classifier's own decision, Whisper's best phrases and its timing
    whisper: dict | None = None


class CommandListener:
    """Streaming voice-command recognizer. Not thread-safe: one feeder thread."""

    def __init__(self, settings: SpeechSettings | None = None, *,
                 commands: CommandSet | None = None, engine: Engine | None = None,
                 log_size: int | None = 256) -> None:
        self.settings = s = settings or SpeechSettings()
        if s.activation not in ("wake", "push_to_talk", "always"):
            raise ValueError(f"speech.activation must be wake, push_to_talk or always, "
                             f"got {s.activation!r}")
        problem = settings_problem(s)
        if problem:
            raise ValueError(problem)
        if commands is None:
            known = None
            if s.engine == "pocketsphinx":
                from .engines import cmudict_words
                known = cmudict_words()
            commands = load_commands(s.commands_file or None, known)
        if s.wake_phrase and s.wake_phrase not in commands.wake_phrases:
            raise ValueError(f"speech.wake_phrase {s.wake_phrase!r} is not one of the wake "
                             f"phrases of {commands.path}: {list(commands.wake_phrases)}")
        odd = [c for c in s.cmd_head_sure_for if c not in commands.commands or c in SINGLE_WORDS]
        if odd and s.cmd_head_sure_for != SpeechSettings.cmd_head_sure_for:
            # (the default may name toggles a site's file leaves out: those are never said)
            raise ValueError(f"speech.cmd_head_sure_for: {odd} are not multi-word commands of "
                             f"{commands.path}")
        self.commands = commands
        own_engine = engine is None
        self.engine = engine or make_engine(s, commands)
        self.thresholds = DecisionThresholds.from_settings(s)
        self._vad = endpointer_for(s, sink=self)
        # decode while the user speaks when the engine can (see engines.py)
        self._streaming = bool(getattr(self.engine, "streaming", False))
        # neural classifier: embeddings computed as the audio streams in (speech/kws.py)
        self._kws = self.engine.new_stream() if getattr(self.engine, "classifier", False) else None
        # the second opinion on commands asked for but not understood (kws only)
        self._second: PocketSphinxEngine | None = None
        if self._kws is not None and s.second_opinion:
            try:
                self._second = PocketSphinxEngine(commands, streaming=False)
            except EngineError as e:
                log.warning("speech: no second opinion on unclear commands (%s)", e)
        # Whisper's check of the classifier (speech/whisper.py; kws only)
        self._whisper = None
        self._spec = None  # Whisper's scores started at the last pause (on_pause)
        self._pool = None  # its worker thread, made when first needed
        self._moon_pool = None  # Moonshine's encoder beside it (head_moonshine), the same
        # rule J3's reading, on a thread of its own, and the utterance waiting for it
        self._j3_pool = None
        self._j3_wait: tuple | None = None
        if self._kws is not None and s.whisper:
            from .whisper import PhraseScorer, WhisperError
            try:
                # the search need only tell whether another command comes within the
                # margin: past it, the decision is the same whatever its score
                self._whisper = PhraseScorer(commands, shortlist=s.whisper_shortlist,
                                             max_expansions=s.whisper_max_expansions,
                                             margin_cap=s.min_whisper_margin + 1.0)
            except (WhisperError, ImportError, OSError) as e:
                log.warning("speech: no Whisper check (%s)", e)
            if self._whisper is not None:
                try:  # now, not on the first command's time
                    self._whisper.warm()
                except Exception as e:  # an extra check: never lose the stream
                    log.error("speech: Whisper check failed (%s); off from now on", e)
                    self._whisper = None
        # the single-word head on Whisper's encoder output (speech/whisper_head.py): votes
        # where Whisper checks (min_head_prob), refuses sure single words it hears otherwise
        # (min_head_veto), decides with the classifier (min_fused_prob, min_fused_veto); with
        # a whisper_head_file its answers are in the diagnostics even with all off (benchmarks)
        # With head_moonshine (the default file only) it reads Moonshine tiny's encoder too
        # (speech/moonshine.py); where that cannot load, the Whisper-only head is used.
        self._moon = None
        head_uses = (s.min_head_prob, s.min_head_veto, s.min_fused_prob, s.min_fused_veto)
        self._head = self._load_head(
            "single-word head", s.whisper_head_file or (
                HEAD_MOON_FILE if s.head_moonshine else HEAD_FILE),
            s.whisper_head_file, head_uses)
        if self._head is None and s.head_moonshine and not s.whisper_head_file:
            self._head = self._load_head("single-word head", HEAD_FILE, "", head_uses)
        # the command head on Whisper's encoder output (rules M, M3-M6, X): the same over
        # every command, for multi-word commands; with a whisper_cmd_head_file its answers are in
        # the diagnostics even with all off, and the sure commands are checked too (benchmarks)
        self._cmd_head = self._load_head(
            "command head", s.whisper_cmd_head_file or CMD_HEAD_FILE, s.whisper_cmd_head_file,
            (s.min_cmd_fused_prob, s.min_cmd_fused_veto, s.min_cmd_head_alone,
             s.min_cmd_fused_unconfirmed, s.min_cmd_fused_agreed, s.min_cmd_head_unheard,
             s.min_cmd_head_wake_alone, s.min_cmd_head_joined,
             s.min_cmd_head_joined_window, s.min_cmd_head_soft_window),
            need=commands.commands, retrain=" --kind commands")
        # whom the second opinion is asked about: as "say again", with its own wake floor
        self._second_th = replace(self.thresholds, min_unclear_wake=s.min_second_opinion_wake)
        self._t0: float | None = None  # media time of the first sample fed
        self._last_command_end: float | None = None  # a wake phrase must come after it
        self._last_command: str | None = None  # ... and what it was (rule D)
        self._flush_tail = 0.0
        self._recent: deque[tuple[float, float]] = deque(maxlen=16)  # speech spans (kws)
        if own_engine:
            self.engine.reset()  # a new stream: no channel estimate from another one
        self._in_utt = False
        self._frames: list[np.ndarray] = []
        self._out: list[Heard] = []
        # drained by take_unclear(); bounded for a caller that never asks
        self._unclear: deque[Unclear] = deque(maxlen=64)
        self._held: Utterance | None = None  # a wake phrase said alone
        # rule J2 (cmd_head_joined_wake): the last seconds of the stream, and the wake phrase
        # said alone that the utterance being decided follows
        self._ring = _Ring(_RING_SAMPLES)
        # ... which rules J3 (min_cmd_head_joined_window) and J4 (min_cmd_head_soft_window)
        # read too, after a wake phrase
        self._keeps_ring = s.cmd_head_joined_wake or s.activation == "wake" and (
            s.min_cmd_head_joined_window is not None or (
                s.min_cmd_head_soft_window is not None and s.min_soft_wake_head is not None))
        # rule J4: an utterance decided "not a command" that the command head took for the
        # wake phrase, for the utterance after it
        self._soft: Utterance | None = None
        self._joined_held: Utterance | None = None
        self._prev_end: float | None = None  # speech end of the utterance before (not_speech)
        self._mutes: deque[tuple[float, float]] = deque(maxlen=64)
        self._speaking_since: float | None = None
        self._ptt: deque[tuple[float, float]] = deque(maxlen=64)
        self._ptt_down: float | None = None
        self._reply_until = float("-inf")
        self._t = 0.0  # stream time fed so far
        #: the last ``log_size`` utterances and their decisions (None: all, for benchmarks)
        self.log: deque[UtteranceLog] = deque(maxlen=log_size)
        #: called with (utterance, pooled encoder output) whenever the command head is asked
        #: (the command head's trainer learns from what it saw: train_whisper_head.build_cuts)
        self.on_cmd_head: Callable[[Utterance, np.ndarray], None] | None = None

    # ------------------------------------------------------------------ control

    def _load_head(self, what: str, path, named: str, uses: tuple, need=(), retrain=""):
        """A head on Whisper's encoder (speech/whisper_head.py), or None: loaded when Whisper
        runs and a rule that reads it is on (``uses`` not all None) or its file is ``named``
        (diagnostics); one that is missing, broken or does not know every class in ``need``
        is logged and left out, never fatal."""
        if self._whisper is None or (all(v is None for v in uses) and not named):
            return None
        try:
            head = WhisperHead(path)
            missing = set(need) - set(head.classes)
            if missing:
                raise HeadError(f"the {what} does not know {sorted(missing)} (retrain: "
                                f"python -m speech.train_whisper_head{retrain})")
            if head.extra == "moonshine":
                from .moonshine import MoonshineError, shared_encoder
                try:
                    self._moon = shared_encoder()
                except MoonshineError as e:
                    raise HeadError(f"{path} reads Moonshine's encoder: {e}") from e
            return head
        except HeadError as e:
            log.warning("speech: no %s (%s)", what, e)
            return None

    @property
    def stream_time_s(self) -> float:
        """Stream (media) time of the end of the audio fed so far: the clock to use for
        set_speaking / set_muted_until / push_to_talk / expect_reply."""
        return self._t

    def set_muted_until(self, t_s: float) -> None:
        """Ignore speech from now (stream time) until ``t_s``."""
        self._mutes.append((self._t, float(t_s)))

    def set_speaking(self, speaking: bool, t_s: float) -> None:
        """The assistant started/stopped speaking at stream time ``t_s``; muted while it
        speaks and ``mute_tail_ms`` after (room echo, the tail of the word)."""
        if speaking:
            if self._speaking_since is None:
                self._speaking_since = float(t_s)
        else:
            start = self._speaking_since if self._speaking_since is not None else float(t_s)
            self._mutes.append((start, float(t_s) + self.settings.mute_tail_ms / 1000.0))
            self._speaking_since = None

    def push_to_talk(self, pressed: bool, t_s: float) -> None:
        """Pedal pressed or released at stream time ``t_s``."""
        if pressed:
            if self._ptt_down is None:
                self._ptt_down = float(t_s)
        elif self._ptt_down is not None:
            self._ptt.append((self._ptt_down, float(t_s) + self.settings.ptt_grace_ms / 1000.0))
            self._ptt_down = None

    def expect_reply(self, until_s: float | None = None) -> None:
        """The assistant asked a yes/no question: commands marked ``reply`` in the command
        file are accepted without the wake phrase until ``until_s`` (default: now plus
        ``reply_window_ms``)."""
        self._reply_until = (float(until_s) if until_s is not None
                             else self._t + self.settings.reply_window_ms / 1000.0)

    def take_unclear(self) -> list[Unclear]:
        """The commands asked for but not understood since the last call (see
        :func:`speech.decision.unclear_after_wake`); the caller asks for them again."""
        out = list(self._unclear)
        self._unclear.clear()
        return out

    # ------------------------------------------------------------------ stream

    @property
    def check_pending(self) -> bool:
        """Whisper's check, started at a pause (``on_pause``), is waiting for the close, or
        rule J3's reading for its utterance's decision."""
        return self._spec is not None or self._j3_wait is not None

    def feed(self, samples: np.ndarray, start_s: float) -> list[Heard]:
        """Feed 16 kHz mono int16 samples starting at media time ``start_s``; returns
        the commands whose utterance ended in this chunk."""
        a = np.asarray(samples)
        if a.dtype != np.int16:
            raise TypeError(f"feed() wants int16 samples at 16 kHz, got {a.dtype} "
                            f"(convert with speech.audio.to_internal)")
        self._t = float(start_s) + len(a) / 16000.0
        self._out = []
        if self._keeps_ring:
            self._ring.append(a)
        if self._kws is not None:
            if self._t0 is None:
                # a quiet lead-in, so that a command at the very start of a recording
                # has the classifier's full 2 s of context before it
                self._t0 = float(start_s) - _KWS_LEAD_S
                self._kws.feed(_floor_noise(_KWS_LEAD_S, 1))
            self._kws.feed(a)
        self._vad.feed(a, start_s)  # calls on_open/on_audio/on_close below, in order
        self._out += self._j3_done(wait=False)
        out, self._out = self._out, []
        return out

    def flush(self) -> list[Heard]:
        """End of stream: decide on an utterance still open."""
        self._out = []
        if self._kws is not None and self._t0 is not None:
            # a recording that stops right after the last word: a quiet tail gives the
            # classifier its windows after the end of speech
            self._kws.feed(_floor_noise(_KWS_TAIL_S, 2))
            self._flush_tail = _KWS_TAIL_S
        self._vad.flush()
        self._out += self._j3_done(wait=True)
        self._flush_tail = 0.0
        self._held = self._soft = None
        self._ring.clear()  # rules J2, J3 and J4's look back ends with the stream
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ endpointer sink

    def on_open(self, samples: np.ndarray) -> None:
        if self._streaming:
            self.engine.begin()
            self._in_utt = True
            self.engine.process(samples)
            self._frames = []

    def on_audio(self, frame: np.ndarray) -> None:
        # Blocks of a fixed size counted from the utterance start, whatever the chunk
        # sizes fed: live CMN updates per block, so this keeps replays bit-identical.
        if self._streaming and self._in_utt:
            self._frames.append(frame)
            if len(self._frames) >= _BLOCK_FRAMES:
                self._push()

    def on_pause(self, samples: np.ndarray, speech_start_s: float, pause_s: float) -> None:
        """The neural voice-activity model heard the speech stop; the endpointer waits
        for its hangover before closing. Whisper's check starts now, on what was said, in
        its own thread (onnxruntime lets go of the interpreter while it runs), so that
        its answer is ready at the close, or nearly, instead of adding its time after it."""
        if self._whisper is None or not self._command_length(pause_s - speech_start_s):
            return
        fam = self._whisper_families(speech_start_s, self._joined_at(speech_start_s))
        self._spec = (speech_start_s, pause_s, fam, self._submit_whisper(samples, fam))

    def on_abort(self) -> None:
        if self._streaming and self._in_utt:
            self.engine.abort()
            self._in_utt = False
            self._frames = []

    def on_close(self, u: Utterance) -> None:
        self._out += self._j3_done(wait=True)  # decisions come out in the order of speech
        self._out += self._handle(u)

    def _push(self) -> None:
        """Hand buffered frames to the engine."""
        if self._streaming and self._in_utt and self._frames:
            self.engine.process(np.concatenate(self._frames))
            self._frames = []

    # ------------------------------------------------------------------ internals

    def _overlaps(self, intervals, a: float, b: float) -> bool:
        return any(s <= b and a <= e for s, e in intervals)

    def _muted(self, u: Utterance) -> bool:
        if self._speaking_since is not None and u.speech_end_s >= self._speaking_since:
            return True
        return self._overlaps(self._mutes, u.speech_start_s, u.speech_end_s)

    def _record(self, u: Utterance, d: Decision, ms: float = 0.0, unclear: bool = False,
                whisper: dict | None = None) -> None:
        self.log.append(UtteranceLog(u.speech_start_s, u.speech_end_s, u.closed_at_s, d, ms,
                                     u.voice_prob, unclear, whisper))
        if d.kind != "accept":
            log.debug("utterance %.2f-%.2f s: %s (%s)", u.speech_start_s, u.speech_end_s,
                      d.kind, d.reason)

    def _finish_decode(self, u: Utterance):
        """The engine's result for the utterance that just closed."""
        if self._streaming:
            if not self._in_utt:
                return None
            self._push()
            self._in_utt = False
            return self.engine.end()
        return self.engine.decode(u.samples)

    def _handle(self, u: Utterance) -> list[Heard]:
        if self._kws is not None:
            return self._handle_kws(u)
        s = self.settings
        t0 = time.perf_counter()
        dec = None if u.too_long else self._finish_decode(u)
        ms = 1000.0 * (time.perf_counter() - t0)
        held, self._held = self._held, None
        if held is not None and u.speech_start_s - held.speech_end_s > s.wake_join_gap_ms / 1000:
            held = None
        if u.too_long or dec is None:
            self._prev_end = u.speech_end_s
            self._record(u, Decision("reject", reason="too long for a command"))
            return []
        if self._not_speech(u, held):
            return []
        if not self._gate(u, ms):
            return []
        # a wake phrase said alone just before counts as this utterance's wake phrase
        require_wake = s.activation == "wake" and held is None
        reply_open = self._reply_open(u.speech_start_s)
        span = [(u.speech_start_s - u.start_s, u.speech_end_s - u.start_s)]
        d = decide(dec, self.commands, require_wake=require_wake, reply_open=reply_open,
                   th=self.thresholds, speech_spans_s=span,
                   joined=held is not None and s.activation == "wake")
        self._record(u, d, ms)
        if d.kind == "wake_only":
            self._held = u
            return []
        if d.kind == "reject" and held is not None and d.command is not None:
            # "assistant, <pause> show fascia": the command alone has no wake phrase to
            # lift its scores; decode wake and command as one utterance and judge that.
            d2, ms2 = self._decide_joined(held, u, require_wake, reply_open)
            if d2.kind == "accept":
                joined = Utterance(u.samples, held.start_s, held.speech_start_s,
                                   u.speech_end_s, u.closed_at_s)
                return [self._heard(joined, d2)]
        if d.kind != "accept":
            return []
        if held is not None and not d.wake:
            joined = Utterance(u.samples, held.start_s, held.speech_start_s, u.speech_end_s,
                               u.closed_at_s)
            d = replace(d, heard=f"{self.commands.wake_phrases[0]} {d.heard}", wake=True)
            return [self._heard(joined, d)]
        return [self._heard(u, d)]

    def _may_act(self, d: Decision, joined: bool, reply_open: bool) -> bool:
        """Whether the head's word (or a refusal) may stand: with activation "wake", a
        bare word only after a wake phrase said alone or, while an answer is awaited, a
        reply command (yes/no): the head names any of the ten words."""
        return (d.kind != "accept" or self.settings.activation != "wake" or d.wake or joined
                or (reply_open and self.commands.commands[d.command].reply))

    def _not_speech(self, u: Utterance, held: Utterance | None) -> bool:
        """True (and logged) when the utterance is not decoded at all: the neural voice
        model heard no speech in it, or it is the tail of the utterance before (rule T,
        decision.not_speech). A wake phrase held for the command stays held."""
        gap = None if self._prev_end is None else u.speech_start_s - self._prev_end
        self._prev_end = u.speech_end_s
        why = not_speech(u.voice_prob, gap, self.thresholds)
        if why is None:
            return False
        self._held = held
        self._record(u, Decision("reject", reason=why))
        return True

    def _gate(self, u: Utterance, ms: float) -> bool:
        """Muting and the pedal: False (and logged) when the utterance must be dropped."""
        if self._muted(u):
            self._record(u, Decision("reject", reason="muted: the assistant was speaking"), ms)
            return False
        if self.settings.activation == "push_to_talk":
            down = list(self._ptt) + ([(self._ptt_down, float("inf"))]
                                      if self._ptt_down is not None else [])
            if not self._overlaps(down, u.speech_start_s, u.speech_end_s):
                self._record(u, Decision("reject", reason="pedal not pressed"), ms)
                return False
        return True

    def _handle_kws(self, u: Utterance) -> list[Heard]:
        """The neural classifier's path: classify the end of the utterance, look for the
        wake phrase before it, decide (speech/decision.py decide_kws)."""
        s = self.settings
        held, self._held = self._held, None
        if held is not None and u.speech_start_s - held.speech_end_s > s.wake_join_gap_ms / 1000:
            held = None
        soft, self._soft = self._soft, None
        if soft is not None and u.speech_start_s - soft.speech_end_s > s.wake_join_gap_ms / 1000:
            soft = None
        if u.too_long:
            self._prev_end = u.speech_end_s
            self._record(u, Decision("reject", reason="too long for a command"))
            return []
        if self._not_speech(u, held):
            self._soft = soft  # kept, as a wake phrase said alone is
            return []
        self._recent.append((u.speech_start_s, u.speech_end_s))
        t0 = time.perf_counter()
        r = self.engine.classify(self._kws, self._t0 or 0.0, u.speech_start_s, u.speech_end_s,
                                 u.closed_at_s + self._flush_tail,
                                 wake_after_s=max(self._last_command_end or -1e9,
                                                  u.speech_start_s - s.wake_join_gap_ms / 1000))
        ms = 1000.0 * (time.perf_counter() - t0)
        if not self._gate(u, ms):
            return []
        joined = held is not None and s.activation == "wake"
        self._joined_held = held if joined else None
        reply_open = self._reply_open(u.speech_start_s)
        d = decide_kws(r, self.commands, require_wake=s.activation == "wake",
                       reply_open=reply_open, th=self.thresholds, joined=joined)
        speech = u.speech_end_s - u.speech_start_s
        pedal = s.activation == "push_to_talk"
        asked = unclear_after_wake(d, speech, self.thresholds, pedal=pedal)
        addressed = pedal or (s.activation == "always" and s.second_opinion_always)
        # rule M's: the wake phrase heard, or said alone just before, or none needed
        spoken_to = (s.activation != "wake" or joined
                     or r.wake_prob >= self.thresholds.min_kws_wake)
        t1 = time.perf_counter()
        wdiag = None
        if (self._whisper is not None and self._command_length(speech)
                and not (d.kind == "accept" and (d.posterior or 0.0) >= s.whisper_skip_above
                         and self._wake_sure_enough(d, joined, reply_open))):
            d, asked, wdiag = self._whisper_check(u, d, asked, joined, r, spoken_to)
        elif (self._head is not None and d.kind == "accept" and d.command in SINGLE_WORDS
              and (s.min_head_veto is not None or s.min_fused_veto is not None
                   or s.whisper_head_file)):
            d, asked, wdiag = self._head_veto(u, d, asked, joined)
        elif (self._cmd_head is not None and d.kind == "accept" and d.command not in SINGLE_WORDS
              and (self._checks_sure(d.command) or s.whisper_cmd_head_file)):
            wdiag = self._cmd_head_sure(u, d)
        if wdiag is not None and r.all_probs:  # the classifier on the single words
            wdiag["clf_words"] = {c: r.all_probs.get(c, 0.0) for c in (*SINGLE_WORDS, NONE)}
        # PocketSphinx's second opinion only where Whisper, when it ran, had no command
        # (not after the head refused a sure answer: that refusal stands)
        second = (self._second if wdiag is None or wdiag["kind"] not in ("accept", "sure", "early")
                  else None)
        last = None  # rules F and M (the last word), when worked out before the second opinion
        second_named = False  # PocketSphinx named another command than the one accepted
        if second is not None and d.kind != "accept" and (
                asked or unclear_after_wake(d, speech, self._second_th, pedal=addressed)):
            pre = (self._last_word(d, asked, wdiag, r, speech, joined, reply_open, spoken_to)
                   if s.cmd_before_second_opinion else None)
            if pre is not None and pre[2]:  # rule S: rule M acts anyway, PocketSphinx not asked
                last = pre
            else:
                d2 = self._second_opinion(u, r, d, joined)
                if d2 is not None:
                    d, asked = d2, False
        elif (second is not None and d.kind == "accept"
              and (d.posterior or 0.0) < s.second_opinion_veto_below):
            other = self._decode_second(u, joined)
            d2 = vetoed(d, other) if other is not None else None
            if d2 is not None:  # a command was asked for: ask for it again
                d, asked, second_named = d2, True, True
        d, asked, _ = last or self._last_word(d, asked, wdiag, r, speech, joined, reply_open,
                                              spoken_to)
        if wdiag is not None and wdiag["kind"] not in ("sure", "early"):  # Whisper's check ran
            v = whisper_single_veto(d, wdiag.get("command"), wdiag.get("head"), self.thresholds)
            if v is not None:
                d, asked = v, True
        ms += 1000.0 * (time.perf_counter() - t1)
        # the last resort, where nothing was accepted: the command head reads the stream from
        # the wake phrase said alone (rule J3) or the soft one (rule J4) to this utterance's end
        start = None
        if (d.kind == "reject" and not second_named and self._cmd_head is not None
                and self._whisper is not None):
            if joined:
                if (self.thresholds.min_cmd_head_joined_window is not None
                        and speech * 1000 >= self.thresholds.min_joined_speech_ms):
                    start = held
            elif soft is not None:
                start = soft
        x = self._joined_audio(start, u) if start is not None else None
        if x is not None:  # decided when its reading is done, on a thread of its own
            self._j3_wait = (self._submit_j3(x), (u, d, asked, wdiag, ms, r, joined, held,
                                                  speech, None if joined else soft))
            return []
        return self._conclude(u, d, asked, wdiag, ms, r, joined, held)

    def _conclude(self, u: Utterance, d: Decision, asked: bool, wdiag: dict | None, ms: float,
                  r, joined: bool, held: Utterance | None, soft: Utterance | None = None
                  ) -> list[Heard]:
        """The decision ``d`` on utterance ``u`` recorded and acted on (the kws path);
        ``soft``: rule J4 acted on ``u`` with the soft wake phrase before it."""
        s = self.settings
        if s.activation == "wake" and self._last_command_end is not None:
            again = same_command_again(d, self._last_command,
                                       u.speech_start_s - self._last_command_end, self.commands,
                                       max_gap_ms=s.same_command_gap_ms)
            if again is not None:  # rule D: one phrase cut in two, not acted on twice
                d = again
        unclear = s.unclear_prompt and asked
        if (s.activation == "wake" and not joined and not asked and wdiag is not None
                and soft_wake(d, wdiag.get("cmd_probs"), r.all_probs,
                              speech_s=u.speech_end_s - u.speech_start_s, th=self.thresholds)):
            self._soft = u  # rule J4: for the next utterance
            wdiag["soft_wake"] = True
        self._record(u, d, ms, unclear, wdiag)
        if unclear:
            self._unclear.append(Unclear(
                self.commands.wake_phrases[0] if d.wake or joined else "", u.speech_start_s,
                u.speech_end_s, d.command, d.reason))
        if d.kind == "wake_only":
            self._held = u
            return []
        if d.kind != "accept":
            return []
        self._last_command_end, self._last_command = u.speech_end_s, d.command
        if soft is not None:  # the command starts with the soft wake phrase
            return [self._heard(Utterance(u.samples, soft.start_s, soft.speech_start_s,
                                          u.speech_end_s, u.closed_at_s), d)]
        if d.wake and r.wake_end_s is not None and r.wake_end_s < u.speech_start_s:
            # the wake phrase was in an earlier utterance: the command starts with it
            # the speech it ends in, or just after (its best window may end in the
            # pause); noise can cut the wake phrase in pieces: the first piece's start
            near = [a for a, b in self._recent if a <= r.wake_end_s <= b + 0.6]
            before = [a for a, b in self._recent if a <= r.wake_end_s and b < u.speech_start_s]
            start = min(near) if near else max(before, default=u.speech_start_s)
            u = Utterance(u.samples, min(u.start_s, start), start, u.speech_end_s,
                          u.closed_at_s)
        if joined and not d.wake:
            d = replace(d, heard=f"{self.commands.wake_phrases[0]} {d.heard}", wake=True)
            u = Utterance(u.samples, held.start_s, held.speech_start_s, u.speech_end_s,
                          u.closed_at_s)
        return [self._heard(u, d)]

    def _last_word(self, d: Decision, asked: bool, wdiag: dict | None, r, speech: float,
                   joined: bool, reply_open: bool, spoken_to: bool
                   ) -> tuple[Decision, bool, bool]:
        """Rules F (the single-word head fused with the classifier) and M (the command head
        on multi-word commands) on the decision ``d``: (decision, asked again, whether rule
        M acted on an utterance nothing was accepted on). Fills ``wdiag``'s "addressed"
        and "clf_all"."""
        s = self.settings
        if wdiag is not None and wdiag.get("head_probs"):  # the last word (rule F)
            f = head_fuse(d, r.all_probs,
                          HeadResult(wdiag["head"], wdiag["head_p"], wdiag["head_probs"]),
                          bare_ok=wdiag["bare_ok"], speech_s=speech, th=self.thresholds)
            if f is not None and self._may_act(f[0], joined, reply_open):
                d, asked = f
            else:  # rule B2: the same judgement on a word accepted with the wake phrase
                b2 = head_fuse_in_wake(  # (speech.fused_veto_in_wake, on by default)
                    d, r.all_probs, HeadResult(wdiag["head"], wdiag["head_p"],
                                               wdiag["head_probs"]),
                    self.commands, bare_ok=wdiag["bare_ok"], th=self.thresholds)
                if b2 is not None and self._may_act(b2, joined, reply_open):
                    d = b2
        acted = False
        if wdiag is not None and wdiag.get("cmd_probs") is not None:  # rule M
            wdiag["addressed"] = spoken_to
            wdiag["clf_all"] = r.all_probs
            m = (cmd_fuse(d, r.all_probs, wdiag["cmd_probs"], self.commands,
                          addressed=spoken_to, th=self.thresholds,
                          unconfirmed=wdiag["kind"] not in ("accept", "sure"),
                          whisper_says=wdiag["command"] if wdiag["kind"] == "accept" else None,
                          whisper_kind=wdiag["kind"],
                          needs_wake=self._needs_wake(joined, reply_open), joined=joined,
                          speech_s=speech)
                 if wdiag["kind"] != "early" and (wdiag["kind"] != "sure"
                                                  or self._checks_sure(wdiag["classifier_command"]))
                 else None)  # rule X acted already
            if m is not None:
                acted = d.kind != "accept" and m[0].kind == "accept"
                d, asked = m
        return d, asked, acted

    def _command_length(self, speech_s: float) -> bool:
        """Short enough for a command with its wake phrase (Whisper's check runs on no
        longer speech)."""
        return speech_s * 1000 <= self.thresholds.max_command_ms + self.thresholds.max_wake_ms

    def _joined_at(self, speech_start_s: float) -> bool:
        """A wake phrase said alone just before speech starting at ``speech_start_s``."""
        h = self._held
        return (h is not None and self.settings.activation == "wake"
                and speech_start_s - h.speech_end_s <= self.settings.wake_join_gap_ms / 1000)

    def _whisper_families(self, speech_start_s: float, joined: bool) -> tuple[bool, bool]:
        """Which phrases Whisper scores: (after the wake phrase, bare)."""
        reply_open = self._reply_open(speech_start_s)
        return True, self.settings.activation != "wake" or joined or reply_open

    def _submit_whisper(self, samples: np.ndarray, fam: tuple[bool, bool]) -> _WhisperJob:
        """Whisper's check of ``samples``, computed by the listener's one worker thread
        (calls run one at a time, in order): the encoder pass, then the search on it. Where
        no bare phrase is scored, the search ends once the wake phrase alone is settled
        (decide_whisper's "wake_only" cannot change, and nothing else reads its best
        command there: head_check needs bare phrases)."""
        from concurrent.futures import ThreadPoolExecutor
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="whisper-check")
        samples = samples.copy()
        whisper, cancel = self._whisper, threading.Event()
        settle = None if fam[1] else self.thresholds.min_whisper_regret
        enc = self._pool.submit(whisper.model.context_pooled, samples)
        search = self._pool.submit(lambda: whisper.score(samples, wake=fam[0], bare=fam[1],
                                                         context=enc.result(), cancel=cancel,
                                                         settle_wake=settle))
        extra = None
        if self._head is not None and self._head.extra and fam[1]:  # the same audio's,
            if self._moon_pool is None:  # on a thread of its own: beside the search, not after
                self._moon_pool = ThreadPoolExecutor(1, thread_name_prefix="moonshine")
            extra = self._moon_pool.submit(self._moon.pooled, samples)
        return _WhisperJob(enc, search, cancel, extra)

    def _head_on(self, pooled: np.ndarray, samples: np.ndarray | None = None,
                 extra=None) -> HeadResult:
        """The single-word head on Whisper's ``pooled`` output and, for a head that reads
        them too, Moonshine's pooled output of the same audio (the job's ``extra`` future,
        else computed from ``samples`` here)."""
        head = self._head
        if not head.extra:
            return head(pooled)
        m = extra.result() if extra is not None else self._moon.pooled(samples)
        return head(np.concatenate([pooled, m]))

    def _whisper_result(self, fut):
        """A job's result (its encoder pass or its search), or None when it failed: then
        Whisper's check is off from now on."""
        try:
            return fut.result()
        except Exception as e:  # an extra check: never lose the stream
            log.error("speech: Whisper check failed (%s); off from now on", e)
            self._whisper = None
            return None

    def _cmd_probs(self, u: Utterance, pooled: np.ndarray) -> dict:
        """The command head's probabilities on utterance ``u``'s pooled encoder output
        (rounded: they go into the diagnostics as they are)."""
        h = self._joined_held
        if self.settings.cmd_head_joined_wake and h is not None:
            x = self._joined_audio(h, u)
            if x is not None:  # rule J2: the wake phrase said alone and the follow-up
                pooled = self._whisper.model.context_pooled(x)[1]
        if self.on_cmd_head is not None:
            self.on_cmd_head(u, pooled)
        return {c: round(float(v), 5) for c, v in self._cmd_head(pooled).probs.items()}

    def _submit_j3(self, x: np.ndarray):
        """Rule J3's encoder pass over ``x`` (the wake phrase said alone and its follow-up)
        on a thread of its own, so that the stream is not held up while it runs."""
        from concurrent.futures import ThreadPoolExecutor
        if self._j3_pool is None:
            self._j3_pool = ThreadPoolExecutor(1, thread_name_prefix="joined-window")
        return self._j3_pool.submit(self._whisper.model.context_pooled, x)

    def _j3_done(self, wait: bool) -> list[Heard]:
        """The utterance waiting for rule J3's reading, decided once the reading is done
        (``wait``: now, waiting for it): the command head on the stream from the wake phrase
        said alone to the end of its follow-up, decided "not a command" so far, its
        probabilities in the diagnostics (``joined_window_probs``; rule J4's, from the soft
        wake phrase, ``soft_window_probs``); a reading that failed is logged and leaves the
        decision as it was."""
        if self._j3_wait is None or not (wait or self._j3_wait[0].done()):
            return []
        fut, (u, d, asked, wdiag, ms, r, joined, held, speech, soft) = self._j3_wait
        self._j3_wait = None
        try:
            pooled = fut.result()[1]
        except Exception as e:  # an extra reading: never lose the stream over it
            log.error("speech: the command head's joined reading failed (%s)", e)
            pooled = None
        acted = None
        if pooled is not None:
            probs = self._cmd_head(pooled).probs
            if wdiag is not None:
                wdiag["soft_window_probs" if soft is not None else "joined_window_probs"] = {
                    c: round(float(v), 5) for c, v in probs.items()}
            d3 = (soft_window_act(d, probs, self.commands, th=self.thresholds)
                  if soft is not None else
                  joined_window_act(d, probs, self.commands, speech_s=speech, th=self.thresholds))
            if d3 is not None:
                d, asked, acted = d3, False, soft
        return self._conclude(u, d, asked, wdiag, ms, r, joined, held, acted)

    def _joined_audio(self, held: Utterance, u: Utterance) -> np.ndarray | None:
        """Rules J2 and J3: the stream from the wake phrase said alone (``held``; rule J4: the
        soft wake phrase) to the end of its follow-up ``u``, or None where it is no longer
        all kept."""
        return self._stream_audio(held.start_s, u.start_s + len(u.samples) / 16000.0)

    def _stream_audio(self, a_s: float, b_s: float) -> np.ndarray | None:
        """The stream's samples from ``a_s`` to ``b_s`` (media time) out of the last seconds
        kept (rule J2), or None where they are no longer all kept."""
        t_ring = self._t - len(self._ring) / 16000.0
        i, j = round((a_s - t_ring) * 16000), round((b_s - t_ring) * 16000)
        if i < 0 or j > len(self._ring) or j <= i:
            return None
        return self._ring.span(i, j)

    def _whisper_check(self, u: Utterance, d: Decision, asked: bool, joined: bool,
                       r=None, addressed: bool = False) -> tuple[Decision, bool, dict | None]:
        """Whisper's decision on the utterance checks the classifier's (speech/decision.py
        whisper_check): (decision, asked again, diagnostics). The scores made at the pause
        (on_pause) are used when no speech came after it. With the classifier's result
        ``r``, the command head may act before the search ends (rule X, ``cmd_early``)."""
        s = self.settings
        reply_open = self._reply_open(u.speech_start_s)
        fam = self._whisper_families(u.speech_start_s, joined)
        spec, self._spec = self._spec, None
        early = (spec is not None and spec[0] == u.speech_start_s and spec[2] == fam
                 and u.speech_end_s <= spec[1] + _PAUSE_SLACK_S)
        job = spec[3] if early else self._submit_whisper(u.samples, fam)
        speech = u.speech_end_s - u.speech_start_s
        cp = None
        if s.cmd_early and self._cmd_head is not None and r is not None:
            # rule X: the classifier and the command head on the encoder's output act before
            # the search ends (decision.cmd_early), which is then cancelled
            ctx = self._whisper_result(job.enc)
            if ctx is None:  # the encoder pass failed (logged)
                return d, asked, None
            cp = self._cmd_probs(u, ctx[1])
            e = cmd_early(d, r.all_probs, cp, self.commands, addressed=addressed,
                          needs_wake=self._needs_wake(joined, reply_open),
                          th=self.thresholds, joined=joined, speech_s=speech)
            if e is not None:
                job.cancel.set()
                return e, False, {"kind": "early", "classifier": d.kind,
                                  "classifier_command": d.command,
                                  "classifier_post": d.posterior, "at_pause": early,
                                  "bare_ok": fam[1], "speech_s": round(speech, 3),
                                  "cmd_probs": cp}
        w = self._whisper_result(job.search)
        if w is None:
            return d, asked, None
        wd = decide_whisper(w, self.commands, require_wake=s.activation == "wake",
                            reply_open=reply_open, th=self.thresholds, joined=joined,
                            speech_s=speech)
        d2, again = whisper_check(d, wd, speech, self.thresholds,
                                  needs_wake=self._needs_wake(joined, reply_open))
        b, r2 = w.best, w.runner_up
        hr = None
        if self._head is not None and w.pooled is not None and (job.extra is not None
                                                              or not self._head.extra):
            try:
                hr = self._head_on(w.pooled, extra=job.extra)
            except Exception as e:  # an extra check: never lose the stream
                log.error("speech: single-word head failed (%s); off from now on", e)
                self._head = None
        d3 = head_check(d2, d.command, b.command if b else None, hr, bare_ok=fam[1],
                        speech_s=speech, whisper_regret=b.regret if b else None,
                        th=self.thresholds)
        if d3 is not None and self._may_act(d3, joined, reply_open):
            d2, again = replace(d3, joined=d.joined, wake_prob=d.wake_prob), False
        if cp is None and self._cmd_head is not None and w.pooled is not None:
            cp = self._cmd_probs(u, w.pooled)  # (rule X computed them already when it ran)
        if d2.kind == "accept" and d2.command == d.command:  # the classifier's, standing
            ww = wake_alone_heard(d, wd, cp, self.thresholds)  # rule WW
            if ww is not None:
                d2, again = ww, False
        diag = {"classifier": d.kind, "classifier_command": d.command,
                "classifier_post": d.posterior, "kind": wd.kind, "command": wd.command,
                "reason": wd.reason, "text": b.text if b else None,
                "logp": round(b.logp, 3) if b else None,
                "regret": round(b.regret, 3) if b else None,
                "end_regret": round(b.end_regret, 3) if b else None,
                "wake": b.wake if b else None,
                "runner": r2.command if r2 else None,
                "runner_logp": round(r2.logp, 3) if r2 else None,
                "wake_logp": None if w.wake_logp is None else round(w.wake_logp, 3),
                "expansions": w.expansions, "exhausted": w.exhausted,
                "ms": round(w.encode_ms + w.search_ms, 1), "at_pause": early,
                "bare_ok": fam[1], "speech_s": round(speech, 3),
                "head": hr.command if hr else None,
                "head_p": round(hr.prob, 4) if hr else None,
                "head_probs": hr.probs if hr else None, "cmd_probs": cp}
        if d2.kind == "accept":
            return d2, False, diag
        return d2, asked or again, diag

    def _head_veto(self, u: Utterance, d: Decision, asked: bool, joined: bool
                   ) -> tuple[Decision, bool, dict | None]:
        """The single-word head on a single word the classifier was sure of (Whisper not
        asked): one encoder pass, then speech/decision.py head_veto. Diagnostics as
        Whisper's check's, with kind "sure". (The scores started at the pause hold pooled
        features too, but of less audio, and whether they are ready at the close depends on
        the clock: using them would make the answer depend on timing.)"""
        bare_ok = self._whisper_families(u.speech_start_s, joined)[1]
        if not bare_ok:
            return d, asked, None
        try:
            hr = self._head_on(self._whisper.model.context_pooled(u.samples)[1], u.samples)
        except Exception as e:  # an extra check: never lose the stream
            log.error("speech: single-word head failed (%s); off from now on", e)
            self._head = None
            return d, asked, None
        diag = {"kind": "sure", "classifier_command": d.command, "classifier_post": d.posterior,
                "bare_ok": bare_ok, "speech_s": round(u.speech_end_s - u.speech_start_s, 3),
                "head": hr.command, "head_p": round(hr.prob, 4), "head_probs": hr.probs}
        v = head_veto(d, hr, bare_ok=bare_ok, th=self.thresholds)
        if v is None:
            return d, asked, diag
        return v[0], v[1], diag

    def _needs_wake(self, joined: bool, reply_open: bool) -> bool:
        """The utterance needs its own wake phrase: wake activation, no wake phrase said alone
        just before (``joined``), no reply awaited (``reply_open``)."""
        return self.settings.activation == "wake" and not joined and not reply_open

    def _reply_open(self, speech_start_s: float) -> bool:
        """A reply (yes/no) is awaited for speech starting at ``speech_start_s``."""
        return speech_start_s <= self._reply_until

    def _wake_sure_enough(self, d: Decision, joined: bool, reply_open: bool) -> bool:
        """Rule V: the classifier's sure answer ``d`` may skip Whisper's check: no wake phrase
        needed, or its probability at least ``min_wake_sure`` (or the rule off)."""
        return not (self._needs_wake(joined, reply_open)
                    and wake_below(d, self.thresholds.min_wake_sure))

    def _checks_sure(self, command: str | None) -> bool:
        """Rule M's check of a multi-word ``command`` the classifier was sure of: all of them
        with ``cmd_head_sure``, else those of ``cmd_head_sure_for`` (rule C)."""
        s = self.settings
        return s.cmd_head_sure or command in s.cmd_head_sure_for

    def _cmd_head_sure(self, u: Utterance, d: Decision) -> dict | None:
        """The command head on a multi-word command the classifier was sure of (Whisper not
        asked): one encoder pass; diagnostics with kind "sure" and the head's
        probabilities (rule M's refusal reads them), or None when it failed."""
        try:
            cp = self._cmd_probs(u, self._whisper.model.context_pooled(u.samples)[1])
        except Exception as e:  # an extra check: never lose the stream
            log.error("speech: command head failed (%s); off from now on", e)
            self._cmd_head = None
            return None
        return {"kind": "sure", "classifier_command": d.command, "classifier_post": d.posterior,
                "speech_s": round(u.speech_end_s - u.speech_start_s, 3), "cmd_probs": cp}

    def _second_opinion(self, u: Utterance, r, d: Decision, joined: bool) -> Decision | None:
        """PocketSphinx's decision on the same audio, when it agrees with one of the
        classifier's top candidates (speech/decision.py second_opinion)."""
        other = self._decode_second(u, joined)
        if other is None:
            return None
        return second_opinion(d, r.probs, other, self.commands,
                              self.settings.min_second_opinion_prob)

    def _decode_second(self, u: Utterance, joined: bool) -> Decision | None:
        """PocketSphinx's own decision on the utterance (the wake phrase not required:
        the classifier judged that), or None if it failed."""
        try:
            dec = self._second.decode(u.samples)
        except Exception as e:  # the second opinion is an extra: never lose the stream
            log.error("speech: second opinion failed (%s); off from now on", e)
            self._second = None
            return None
        span = [(u.speech_start_s - u.start_s, u.speech_end_s - u.start_s)]
        return decide(dec, self.commands, require_wake=False, th=self.thresholds,
                      speech_spans_s=span, joined=joined)

    def _decide_joined(self, held: Utterance, u: Utterance, require_wake: bool,
                       reply_open: bool) -> tuple[Decision, float]:
        t0 = time.perf_counter()
        samples = np.concatenate([held.samples, u.samples])
        dec = self.engine.decode(samples)
        off = len(held.samples) / 16000.0
        spans = [(held.speech_start_s - held.start_s, held.speech_end_s - held.start_s),
                 (off + u.speech_start_s - u.start_s, off + u.speech_end_s - u.start_s)]
        d = decide(dec, self.commands, require_wake=require_wake, reply_open=reply_open,
                   th=self.thresholds, speech_spans_s=spans)
        ms = 1000.0 * (time.perf_counter() - t0)
        joined = Utterance(samples, held.start_s, held.speech_start_s, u.speech_end_s,
                           u.closed_at_s)
        self._record(joined, replace(d, reason=f"wake + command decoded together: {d.reason}"),
                     ms)
        return d, ms

    def _heard(self, u: Utterance, d: Decision) -> Heard:
        cmd = self.commands.commands[d.command]
        via = ("second opinion" if d.reason.startswith("second opinion")
               else "whisper" if d.reason.startswith("whisper")
               else "head" if d.reason.startswith("head")
               else "fused" if d.reason.startswith("fused")
               else "command head" if d.reason.startswith(("cmdfused", "cmdjoined", "cmdsoftwake"))
               else "")
        h = Heard(d.heard, d.command, round(u.speech_start_s, 3), round(u.speech_end_s, 3),
                  d.confidence, cmd.confirm, via)
        log.info("heard %r -> %s (%.2f-%.2f s, confidence %.2f)", h.heard, h.command,
                 h.start_s, h.end_s, h.confidence)
        return h


def feed_live(listener: "CommandListener", stream: np.ndarray, chunk_ms: int,
              pace_pauses: bool = False, stats: dict | None = None) -> list[tuple]:
    """Feed ``stream`` (16 kHz int16) to ``listener`` as a live one; [(Heard, emitted_s)]:
    when each command came out on the stream's clock. Each chunk arrives when its last sample
    has been spoken and is processed once the chunks before it are done, so work that takes
    longer than the audio it covers (a decode at a pause) delays what follows, and that
    delay counts. What the final flush gives comes out at the end of the stream or when
    the work before it is done. The clock of the latency benchmark and of listen-eval.

    The chunks are fed as fast as they are processed, so work the listener runs in its
    own thread meanwhile (Whisper's check, started at a pause: ``on_pause``) gets no
    wall time from the audio still to come, and its wait at the close is all counted.
    ``pace_pauses``: while such a check is running, each chunk is handed over no sooner
    than it would be spoken (the wall clock kept in step with the stream's from the pause
    on), as a microphone hands them over, so the check runs while the hangover is heard;
    ``stats["slept_s"]`` (when given) adds up the time spent waiting for the audio."""
    from .audio import SAMPLE_RATE_HZ, chunks
    out, busy_until = [], 0.0  # the listener's clock: when it finishes the chunks fed so far
    anchor = None  # (wall time, stream time) when a check started at a pause
    for c, t in chunks(stream, chunk_ms):
        arrival = t + len(c) / SAMPLE_RATE_HZ
        if anchor is not None:
            wait = anchor[0] + (arrival - anchor[1]) - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
                if stats is not None:
                    stats["slept_s"] = stats.get("slept_s", 0.0) + wait
        t0 = time.perf_counter()
        got = listener.feed(c, t)
        t1 = time.perf_counter()
        busy_until = max(arrival, busy_until) + (t1 - t0)
        out += [(h, busy_until) for h in got]
        if not pace_pauses or not listener.check_pending:
            anchor = None
        elif anchor is None:
            anchor = (t1, busy_until)
    done = max(len(stream) / SAMPLE_RATE_HZ, busy_until)
    return out + [(h, done) for h in listener.flush()]
