"""`assistant listen-eval`: a lab's folders of recordings, scored through the real recognizer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from assistant import cli
from speech import listen_eval
from speech.audio import write_wav
from speech.commands import load_commands
from speech.synth import espeak, with_silence


def _folders(tmp_path):
    root = tmp_path / "rec"
    for folder, name, text in (("freeze", "a.wav", "assistant, freeze"),
                               # filed under the wrong command: must count as wrong
                               ("freeze", "b.wav", "assistant, next block"),
                               ("_talk_", "c.wav", "the coffee machine is broken again")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        write_wav(root / folder / name, with_silence(espeak(text)))
    return root


def test_recordings_are_scored_against_the_command_their_folder_names(tmp_path, capsys):
    root = _folders(tmp_path)
    out = tmp_path / "r.json"
    assert listen_eval.main([str(root), "--activation", "wake", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["commands"] == {"files": 2, "right": 1, "wrong": 1, "missed": 0}
    assert r["without_command"] == {"files": 1, "acted_on": 0}
    verdicts = {row["file"]: (row["verdict"], row["heard"]) for row in r["files"]}
    assert verdicts == {"freeze/a.wav": ("right", ["freeze"]),
                        "freeze/b.wav": ("wrong", ["block_next"]),
                        "_talk_/c.wav": ("ignored", [])}
    # the one right command: how long after the end of its speech it came out
    right = next(row for row in r["files"] if row["verdict"] == "right")
    assert 0 < right["latency_ms"] < 2000
    assert r["latency_ms_end_of_speech_to_command"]["n"] == 1
    assert r["latency_paced_as_live"] is True  # timed as the live node gives it, by default
    assert r["commands_cut_at_edge"] == {"files": 0, "right": 0}  # silence around each
    assert r["speech_settings_changed"] == {}  # the shipped defaults (wake is one)
    text = capsys.readouterr().out
    assert "speech settings other than the defaults: none" in text
    assert "right 1 (50.0 %), wrong 1 (50.0 %)" in text
    assert "end of speech to command" in text
    assert "wrong: freeze/b.wav: expected freeze, acted on block_next" in text


def test_the_settings_a_run_changed_are_recorded_to_compare_two_runs():
    """A lab scores its recordings with and without an option that is off (docs/SPEECH.md,
    "Trying an option that is off"): each run's JSON says what it changed."""
    from dataclasses import replace
    from speech.settings import SpeechSettings
    s = replace(SpeechSettings(), head_moonshine=True, activation="always",
                cmd_head_sure_for=("record_stop", "freeze"))
    got = listen_eval.settings_changed(s)
    assert got == {"activation": "always", "head_moonshine": True,
                   "cmd_head_sure_for": ["record_stop", "freeze"]}
    assert json.loads(json.dumps(got)) == got
    assert listen_eval.settings_changed(SpeechSettings()) == {}


def test_a_folder_naming_no_command_and_an_unreadable_file_are_said(tmp_path, capsys):
    root = _folders(tmp_path)
    (root / "purple elephant").mkdir()
    assert listen_eval.main([str(root)]) == 2
    assert "folder 'purple elephant' names no command" in capsys.readouterr().err
    (root / "purple elephant").rmdir()
    bad = root / "freeze" / "cut.wav"
    write_wav(bad, np.zeros(16000, np.int16))
    bad.write_bytes(bad.read_bytes()[:1000])
    assert listen_eval.main([str(root), "--activation", "wake"]) == 2
    cap = capsys.readouterr()
    assert "unreadable, not scored:" in cap.err and "cut.wav" in cap.err
    assert "commands: 2 files, right 1" in cap.out  # the others still scored
    with pytest.raises(SystemExit):
        listen_eval.main([str(root), "--snr", "10"])  # --snr without --noise
    assert listen_eval.main([str(root), "--noise", str(tmp_path / "none"), "--snr", "10"]) == 2
    assert "--noise" in capsys.readouterr().err


def test_bare_words_heard_with_wake_activation_get_a_hint(tmp_path, capsys):
    root = tmp_path / "rec"
    (root / "freeze").mkdir(parents=True)
    write_wav(root / "freeze" / "a.wav", with_silence(espeak("freeze")))
    assert listen_eval.main([str(root), "--activation", "wake"]) == 0
    out = capsys.readouterr().out
    assert "missed 1" in out and "--activation always for bare commands" in out
    assert listen_eval.main([str(root), "--activation", "always"]) == 0
    out = capsys.readouterr().out
    assert "right 1 (100.0 %)" in out and "--activation always for" not in out


def test_bare_words_after_a_recorded_wake_phrase_are_scored_in_wake_activation(tmp_path,
                                                                              capsys):
    """--wake-prefix: a lab's recordings of bare words (Speech Commands') scored in the
    default activation: each after the wake-phrase recording, which alone acts on nothing."""
    root = tmp_path / "rec"
    for folder, text in (("freeze", "freeze"), ("_unknown_", "banana")):
        (root / folder).mkdir(parents=True)
        write_wav(root / folder / "a.wav", with_silence(espeak(text)))
    wake = tmp_path / "wake.wav"
    write_wav(wake, with_silence(espeak("assistant", voice="en-gb")))
    out = tmp_path / "r.json"
    assert listen_eval.main([str(root), "--wake-prefix", str(wake), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["activation"] == "wake"  # implied
    assert r["commands"] == {"files": 1, "right": 1, "wrong": 0, "missed": 0}
    assert r["without_command"] == {"files": 1, "acted_on": 0}
    assert r["wake_prefix"] == str(wake) and r["wake_gap_ms"] == 300
    # timed from the end of the word, not of the wake phrase before it
    right = next(row for row in r["files"] if row["verdict"] == "right")
    assert 0 < right["latency_ms"] < 1000
    assert "after the wake phrase of" in capsys.readouterr().out
    # the same files without it: nothing is acted on in wake activation
    assert listen_eval.main([str(root), "--activation", "wake", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["commands"]["missed"] == 1
    # a recording that holds no wake phrase is refused, by name
    write_wav(tmp_path / "empty.wav", np.zeros(16000, np.int16))
    assert listen_eval.main([str(root), "--wake-prefix", str(tmp_path / "empty.wav")]) == 2
    err = capsys.readouterr().err
    assert "--wake-prefix" in err and "empty.wav" in err and "no wake phrase" in err


def test_the_wake_phrase_is_put_before_the_word_at_its_speech_power():
    rng = np.random.default_rng(0)
    word = np.concatenate([(rng.standard_normal(1600) * 30).astype(np.int16),  # room tone
                           (rng.standard_normal(8000) * 3000).astype(np.int16)])
    wake = (rng.standard_normal(12000) * 300).astype(np.int16)
    y, start_s = listen_eval.with_wake(word, "yes", wake, gap_s=0.25)
    n_gap = int(0.25 * 16000)
    assert start_s == (len(wake) + n_gap) / 16000
    assert np.array_equal(y[len(wake) + n_gap:], word)  # the word untouched, where it says
    said = y[:len(wake)]
    ratio = 10 * np.log10(listen_eval.active_power(said) / listen_eval.active_power(word))
    assert abs(ratio) < 0.5
    gap = y[len(wake):len(wake) + n_gap].astype(np.float64)
    assert np.sqrt((gap ** 2).mean()) < 60  # the word's room tone, not its speech
    # a silent clip: the wake phrase at a typical clip's speech power, as the noise is mixed
    quiet = (rng.standard_normal(16000) * 5).astype(np.int16)
    y, _ = listen_eval.with_wake(quiet, "_silence_", wake)
    p = listen_eval.active_power(y[:len(wake)])
    assert abs(10 * np.log10(p / listen_eval.SILENCE_REF_POWER)) < 0.5
    with pytest.raises(listen_eval.EvalInputError, match="0.1 s"):
        listen_eval.with_wake(word, "yes", wake[:800])
    with pytest.raises(listen_eval.EvalInputError, match=">= 0 s"):
        listen_eval.with_wake(word, "yes", wake, gap_s=-0.1)


def test_folder_names_are_command_ids_phrases_or_no_command():
    cs = load_commands()
    assert listen_eval.label_of("yes", cs) == "yes"
    assert listen_eval.label_of("show_fascia", cs) == listen_eval.label_of("show fascia", cs)
    assert listen_eval.label_of("show_fascia", cs) in cs.commands
    for folder in ("_unknown_", "_silence_", "_none_"):
        assert listen_eval.label_of(folder, cs) is None


def test_noise_is_mixed_at_the_snr_asked_against_the_files_speech_power():
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(16000) * 3000).astype(np.int16)
    noise = [(rng.standard_normal(48000) * 500).astype(np.int16)]
    y = listen_eval.padded(speech, "yes", noise, 10.0, seed=1).astype(np.float64)
    lead = int(listen_eval.LEAD_S * 16000)
    added = y[lead:lead + 16000] - speech
    ratio = 10 * np.log10(listen_eval.active_power(speech) / (added ** 2).mean())
    assert abs(ratio - 10.0) < 0.5
    clean = listen_eval.padded(speech, "yes", None, None, seed=1)
    assert len(clean) == len(y) and np.array_equal(clean[lead:lead + 16000], speech)


def test_the_assistant_command_offers_it(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["listen-eval", "--help"])
    assert exc.value.code == 0
    assert "folder" in capsys.readouterr().out


def test_the_end_of_speech_is_found_above_the_recordings_own_noise_floor():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(24000) * 30).astype(np.int16)  # 1.5 s of room noise
    t = np.arange(8000) / 16000
    x[4000:12000] += (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)  # speech 0.25-0.75 s
    assert abs(listen_eval.speech_end_s(x) - 0.75) <= 0.01


def test_latency_can_be_timed_as_the_live_node_gives_it(tmp_path, capsys):
    """Paced (the default): the same verdicts as --no-pace-pauses, the latency timed with the
    hangover in real time while Whisper's check runs, and the figures say so."""
    root = _folders(tmp_path)
    plain, paced = tmp_path / "a.json", tmp_path / "b.json"
    assert listen_eval.main([str(root), "--json", str(plain), "--no-pace-pauses"]) == 0
    assert listen_eval.main([str(root), "--json", str(paced)]) == 0
    a, b = json.loads(plain.read_text()), json.loads(paced.read_text())
    assert [(r["file"], r["verdict"], r["heard"]) for r in a["files"]] == \
        [(r["file"], r["verdict"], r["heard"]) for r in b["files"]]
    assert a["latency_paced_as_live"] is False
    assert b["latency_paced_as_live"] is True and b["latency_ms_end_of_speech_to_command"]["n"] == 1
    assert "paced as live" in capsys.readouterr().out


def test_a_recording_that_cuts_its_word_is_said_apart(tmp_path, capsys):
    """A file that ends in the middle of its loudest sound (the recording cut the word, as
    16 of the shared Speech Commands words) is marked, and the figures on the other files
    are given beside the whole count."""
    root = _folders(tmp_path)
    x = espeak("assistant, freeze")
    loud = np.flatnonzero(np.abs(x) > 0.5 * np.abs(x).max())
    write_wav(root / "freeze" / "d.wav", x[: int(loud[-1]) - 800])  # ends 50 ms early
    out = tmp_path / "r.json"
    assert listen_eval.main([str(root), "--activation", "wake", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    cut = {row["file"]: row["cut_at_edge"] for row in r["files"] if "cut_at_edge" in row}
    assert cut == {"freeze/a.wav": False, "freeze/b.wav": False, "freeze/d.wav": True}
    assert r["commands_cut_at_edge"]["files"] == 1
    assert "the recording may have cut the word): 1," in capsys.readouterr().out
