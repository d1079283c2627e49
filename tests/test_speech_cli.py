"""`assistant listen` and `assistant models fetch vosk-en` entry points."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from speech import fetch, listen_cli
from speech.audio import write_wav
from speech.synth import espeak, with_silence


def test_listen_json_lines(tmp_path, capsys):
    x = with_silence(np.concatenate([espeak("assistant, freeze"), np.zeros(12000, np.int16),
                                     espeak("the coffee machine is broken again"),
                                     np.zeros(12000, np.int16), espeak("assistant, next block")]))
    p = tmp_path / "s.wav"
    write_wav(p, x)
    assert listen_cli.main([str(p), "--json"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [d["command"] for d in lines] == ["freeze", "block_next"]
    for d in lines:
        assert {"heard", "command", "start_s", "end_s", "confidence"} <= set(d)
        assert d["start_s"] < d["end_s"]
    assert lines[1]["needs_confirmation"] is True
    assert lines[0]["end_s"] < lines[1]["start_s"]


def test_listen_unclear_prints_commands_asked_for_but_not_understood(tmp_path, capsys):
    x = np.concatenate([with_silence(espeak("assistant, purple elephant", "en-us+f3"), seed=1),
                        with_silence(espeak("assistant, freeze", "en-us+f3"), seed=2)])
    p = tmp_path / "s.wav"
    write_wav(p, x)
    assert listen_cli.main([str(p), "--json"]) == 0  # by default, commands only
    assert [json.loads(ln)["command"] for ln in capsys.readouterr().out.splitlines()] == ["freeze"]
    assert listen_cli.main([str(p), "--json", "--unclear"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [d.get("command") for d in lines] == [None, "freeze"]  # in time order
    assert lines[0]["unclear"] is True and lines[0]["heard"] == "assistant"
    assert lines[0]["end_s"] < lines[1]["start_s"]
    assert listen_cli.main([str(p), "--unclear"]) == 0
    assert '(not understood)  "assistant ..."' in capsys.readouterr().out


def test_listen_activation_always_skips_wake_phrase(tmp_path, capsys):
    p = tmp_path / "s.wav"
    write_wav(p, with_silence(espeak("quality score")))
    assert listen_cli.main([str(p)]) == 0
    assert capsys.readouterr().out == ""
    assert listen_cli.main([str(p), "--activation", "always"]) == 0
    out = capsys.readouterr().out
    assert "quality_score" in out and "confidence" in out


def test_listen_reads_the_audio_track_of_a_video(tmp_path, capsys):
    from conftest import write_media
    x = with_silence(espeak("assistant, freeze"))
    p = tmp_path / "rec.mp4"
    write_media(p, [np.zeros((64, 80, 3), np.uint8)] * int(10 * len(x) / 16000), 10, x)
    assert listen_cli.main([str(p), "--json"]) == 0
    assert [json.loads(ln)["command"] for ln in capsys.readouterr().out.splitlines()] == ["freeze"]
    silent = tmp_path / "silent.mp4"
    write_media(silent, [np.zeros((64, 80, 3), np.uint8)] * 5, 10)
    assert listen_cli.main([str(silent)]) == 2
    assert "silent.mp4 has no audio track" in capsys.readouterr().err


def test_listen_says_which_commands_came_through_the_second_opinion(tmp_path, capsys):
    from dataclasses import replace

    from speech.settings import SpeechSettings
    p = tmp_path / "s.wav"
    write_wav(p, with_silence(espeak("assistant, show fascia", "en-us+f3"), seed=1))
    assert listen_cli.main([str(p), "--json"]) == 0
    (d,) = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert d["command"] == "show.fascia" and "via" not in d  # the classifier alone: as before
    # a classifier too strict to act: PocketSphinx's agreeing decode acts, and says so
    strict = replace(SpeechSettings(), min_kws_prob=1.0, min_cmd_fused_prob=None,
                     min_cmd_head_alone=None, min_cmd_head_joined=None,
                     min_cmd_head_unheard=None)  # nor the command head (rules M, X, M8, M7w)
    assert listen_cli.main([str(p), "--json"], settings=strict) == 0
    (d,) = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert d["command"] == "show.fascia" and d["via"] == "second opinion"
    assert listen_cli.main([str(p)], settings=strict) == 0
    assert "(via second opinion)" in capsys.readouterr().out


def test_listen_bad_input(tmp_path, capsys):
    assert listen_cli.main([str(tmp_path / "missing.wav")]) == 2
    assert "does not exist" in capsys.readouterr().err
    p = tmp_path / "t.wav"
    write_wav(p, np.zeros(16000, np.int16))
    p.write_bytes(p.read_bytes()[:1000])
    assert listen_cli.main([str(p)]) == 2
    assert "truncated" in capsys.readouterr().err
    empty = tmp_path / "zero.wav"
    write_wav(empty, np.zeros(0, np.int16))
    assert listen_cli.main([str(empty)]) == 2
    assert "zero.wav holds no audio (0 samples)" in capsys.readouterr().err
    write_wav(p, np.zeros(1600, np.int16))
    for engine_args, words in ((["--engine", "vosk"], "no model folder is set"),
                               (["--engine", "vosk", "--vosk-model-dir", str(p)],
                                "t.wav is not a folder")):
        assert listen_cli.main([str(p), *engine_args]) == 2  # not a silent fallback
        assert words in capsys.readouterr().err
    for bad in ("0", "-20"):
        with pytest.raises(SystemExit) as exc:
            listen_cli.main([str(p), "--chunk-ms", bad])
        assert exc.value.code == 2 and "must be >= 1 ms" in capsys.readouterr().err


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_fetch_without_network_says_so(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/vosk-model-small-en-us-0.15.zip"
    spec = fetch.MODELS["vosk-en"]
    monkeypatch.setitem(fetch.MODELS, "vosk-en", fetch.ModelSpec(
        spec.name, url, spec.sha256, spec.size_bytes, spec.folder))
    assert fetch.main(["fetch", "vosk-en", "--dest", str(tmp_path), "--timeout-s", "5"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and url in err and "no internet" in err
    assert not (tmp_path / spec.folder).exists()


def test_fetch_names_a_destination_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert fetch.main(["fetch", "vosk-en", "--dest", str(tmp_path / "afile" / "models")]) == 1
    assert "afile is a file, not a folder" in capsys.readouterr().err


def test_fetch_refuses_a_checksum_mismatch(tmp_path, monkeypatch):
    # a local "server": urlopen of a file:// URL gives bytes whose hash is not the pin
    bogus = tmp_path / "model.zip"
    bogus.write_bytes(b"PK not really a zip")
    with pytest.raises(fetch.FetchError, match="does not match the pinned"):
        fetch.fetch("vosk-en", tmp_path / "dest", url=bogus.as_uri())
    assert not (tmp_path / "dest" / fetch.MODELS["vosk-en"].folder).exists()


def test_assistant_listen_uses_the_sites_speech_settings(tmp_path, capsys):
    # a lab measures what its own config would act on: `assistant --config F listen`
    from assistant.cli import main as assistant
    p = tmp_path / "s.wav"
    write_wav(p, with_silence(espeak("quality score")))
    site = tmp_path / "site.yaml"
    site.write_text("speech:\n  activation: always\n")
    assert assistant(["--config", str(site), "listen", str(p), "--json"]) == 0
    assert [json.loads(ln)["command"] for ln in capsys.readouterr().out.splitlines()] == ["quality_score"]
    assert assistant(["listen", str(p), "--json"]) == 0  # the repo's config.yaml: wake phrase
    assert capsys.readouterr().out == ""
    # the tool's own option still wins over the config
    assert assistant(["--config", str(site), "listen", str(p), "--activation", "wake"]) == 0
    assert capsys.readouterr().out == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("speech:\n  activaton: always\n")
    with pytest.raises(SystemExit) as exc:
        assistant(["--config", str(bad), "listen", str(p)])
    assert exc.value.code == 2 and "speech.activaton: unknown key" in capsys.readouterr().err
