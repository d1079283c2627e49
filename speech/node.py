"""Speech recognition node: audio in (microphone, a WAV file played in real time, or
the replay's AudioChunks), SpeechCommand and SpeechUnclear out (reliable, acknowledged).

Live audio arrives on another thread (PortAudio's callback or the WAV pacer) and is
handed to the node loop through a bounded queue; the recognizer runs in the loop.
No microphone: a clear message, voice disabled, the node keeps running (heartbeats),
so everything else goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)


class SpeechNode(Node):
    NAME = "speech"
    TOPICS = ("audio", "speaking", "state")
    STREAM_TYPES = ("state",)  # only its open question matters, and the newest says it

    def setup(self) -> None:
        from speech.listener import CommandListener

        self.listener = CommandListener(self.settings.speech)
        # about 10 s of audio blocks
        self.audio_q: queue.Queue = queue.Queue(
            maxsize=max(1, 10_000 // self.settings.speech.block_ms))
        self.mic = None
        self.pacer: threading.Thread | None = None
        self.heard_count = 0
        self.unclear_count = 0  # commands asked for but not understood ("say again")
        self.voice_enabled = True
        self._question: str | None = None  # the assistant's open yes/no question, if any
        self.t0 = time.monotonic()
        if not self.replay:
            self._open_input(self.settings.speech.input)

    def _open_input(self, spec: str) -> None:
        from speech.audio import AudioFileError, NoMicrophoneError, open_microphone, read_audio

        if spec in ("", "none"):
            log.info("speech input is 'none': voice control off")
            self.voice_enabled = False
            return
        if spec == "mic" or spec.startswith("mic:"):
            device = spec.split(":", 1)[1] if ":" in spec else None
            if device is not None and device.isdigit():
                device = int(device)
            try:
                self.mic = open_microphone(device, self._push,
                                           block_ms=self.settings.speech.block_ms)
                log.info("listening on microphone %s", device if device is not None else "(default)")
            except NoMicrophoneError as exc:
                log.error("%s", exc)
                self.voice_enabled = False
                self.publish(m.Event(kind="alert", text=str(exc)))
            return
        try:
            samples, _ = read_audio(spec)
        except (AudioFileError, OSError) as exc:
            log.error("speech input %s: %s; voice control disabled", spec, exc)
            self.voice_enabled = False
            self.publish(m.Event(kind="alert", text=f"speech input failed: {exc}"))
            return
        self.pacer = threading.Thread(target=self._pace_wav, args=(samples,), daemon=True)
        self.pacer.start()

    def _pace_wav(self, samples: np.ndarray) -> None:
        """Play a WAV into the recognizer at real-time speed (a stand-in microphone): each
        block is handed over once its last sample has been played, as a microphone's is
        (until 2026-12-06 it went at its first, a block early)."""
        from speech.audio import SAMPLE_RATE_HZ, chunks
        start = time.monotonic()
        for piece, t in chunks(samples, self.settings.speech.block_ms):
            delay = start + t + len(piece) / SAMPLE_RATE_HZ - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self._push(piece, t)

    def _push(self, samples: np.ndarray, t: float) -> None:
        """A live audio block (the microphone's or the WAV pacer's thread): queued for the
        node loop, which is woken from its bus wait at once. Waiting out the wait (up to
        POLL_MS, 20 ms) added that much to every command's latency before
        (benchmarks/speech_node_wait.py)."""
        try:
            self.audio_q.put_nowait((samples, t))
        except queue.Full:
            log.warning("speech: audio queue full; a block was dropped")
            return
        self.bus.wake()

    def handle(self, header: m.Header, msg: m.Message) -> None:
        if isinstance(msg, m.AudioChunk) and self.replay:
            self._feed(msg.samples, msg.start_s)
            if msg.final:
                self._emit(self.listener.flush())
            self.publish(m.SpeechProgress(upto_s=msg.start_s + len(msg.samples) / msg.sample_rate))
        elif isinstance(msg, m.SpeakingState) and not self.replay:
            # Replay audio holds none of the assistant's own speech: no muting there.
            self.listener.set_speaking(msg.speaking, self._stream_time())
        elif isinstance(msg, m.AssistantState):
            # A question the assistant asked, whichever command led to it (a command that
            # the command file marks ``confirm`` opens the window at once, below; an offer
            # of the opposite, assistant.logic.opposite_offer, only shows up here): a bare
            # "yes" or "no" is heard as the answer for the next reply_window_ms.
            q = msg.pending_confirmation
            if q and q != self._question:
                self.listener.expect_reply()
            self._question = q

    def _stream_time(self) -> float:
        return self.listener.stream_time_s

    def _feed(self, samples: np.ndarray, start_s: float) -> None:
        self._emit(self.listener.feed(np.asarray(samples, dtype=np.int16), start_s))

    def _emit(self, heard_list) -> None:
        for u in self.listener.take_unclear():  # utterances that ended before the commands'
            self.unclear_count += 1
            self.send_reliable(m.SpeechUnclear(heard=u.heard, start_s=u.start_s, end_s=u.end_s,
                                               guess=u.guess, reason=u.reason))
        for h in heard_list:
            self.heard_count += 1
            role = getattr(h, "role", "operator")
            self.send_reliable(m.SpeechCommand(command=h.command, heard=h.heard,
                                               confidence=float(h.confidence), start_s=h.start_s,
                                               end_s=h.end_s, role=role, via=h.via))
            if h.needs_confirmation:
                self.listener.expect_reply()

    def poll_timeout_ms(self, now: float) -> int:
        # blocks still queued (more than tick takes at once): no wait on the bus
        return 0 if not self.audio_q.empty() else self.POLL_MS

    def tick(self, now: float) -> None:
        for _ in range(50):
            try:
                samples, t = self.audio_q.get_nowait()
            except queue.Empty:
                break
            self._feed(samples, t)
            self._heartbeat(time.monotonic())  # a backlog is work, not a hang

    def stats(self) -> dict:
        return {"commands": self.heard_count, "unclear": self.unclear_count,
                "voice": self.voice_enabled}

    def teardown(self) -> None:
        if self.mic is not None:
            try:
                self.mic.stop()
                self.mic.close()
            except Exception:  # PortAudio on its way out
                pass
