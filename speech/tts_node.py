"""Speech output node: speaks ``Say`` messages (reliable, acknowledged by the node
shell) through ``speech.tts.SpeechOutput`` and publishes ``SpeakingState`` so the
recognizer mutes itself while the assistant speaks. Synthesis and playback run on
SpeechOutput's own threads: the node loop (and its heartbeat) never blocks on them."""

from __future__ import annotations

import logging
import queue

from assistant import messages as m
from assistant.node import Node

log = logging.getLogger(__name__)


class TTSNode(Node):
    NAME = "tts"
    TOPICS = ("say",)

    def setup(self) -> None:
        from speech.tts import SpeechOutput

        # SpeechOutput calls back from its worker thread; the PUB socket belongs to the
        # loop, so changes are handed over through a queue.
        self.changes: queue.Queue = queue.Queue()
        self.out = SpeechOutput(self.settings.tts,
                                on_speaking=lambda speaking, text: self.changes.put((speaking, text)))
        self.said = 0

    def handle(self, header: m.Header, msg: m.Message) -> None:
        if isinstance(msg, m.Say):
            try:
                self.out.say(msg.text, msg.priority)
                self.said += 1
            except ValueError as exc:
                log.error("cannot say %r: %s", msg.text, exc)

    def tick(self, now: float) -> None:
        while True:
            try:
                speaking, text = self.changes.get_nowait()
            except queue.Empty:
                return
            self.publish(m.SpeakingState(speaking=bool(speaking), text=text))

    def stats(self) -> dict:
        return {"said": self.said}

    def teardown(self) -> None:
        self.out.close()
