"""Settings of speech recognition and speech output (sections ``speech`` and ``tts``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SpeechSettings:
    engine: Literal["pocketsphinx", "vosk"] = "pocketsphinx"
    vosk_model_dir: str = ""
    commands_file: str = ""  # empty: speech/commands_en.yaml
    activation: Literal["wake", "push_to_talk", "always"] = "wake"
    wake_phrase: str = "assistant"
    input: str = "none"  # "mic", "mic:<index>", a WAV path, or "none"
    mute_tail_ms: int = 300


@dataclass(frozen=True)
class TTSSettings:
    enabled: bool = True
    output: Literal["speaker", "wav_dir", "none"] = "speaker"
    wav_dir: str = ""
    rate_wpm: int = 170
    voice: str = ""
