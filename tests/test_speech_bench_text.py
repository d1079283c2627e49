"""The read-speech text of benchmarks/speech_bench.py --part talk: the licence texts, or any
folder of .txt files, such as the Python language reference it writes itself (a text no
rule was tuned on; docs/SPEECH.md, "Rule W")."""
from __future__ import annotations

import numpy as np
import pytest

import benchmarks.speech_bench as sb


def test_the_reference_text_is_read_speech_without_the_wake_phrase(tmp_path):
    p = sb.write_reference_text(tmp_path)
    assert p == tmp_path / "python-reference.txt"
    sents = sb.talk_sentences(tmp_path)
    assert len(sents) > 1000 and all(0 < len(s.split()) <= 25 for s in sents)
    assert not any("assistant" in s.lower() for s in sents)
    assert sum(len(s.split()) for s in sents) > 30000  # over 4 h at 140-190 words a minute
    # a folder holding the licence names reads those, not its .txt files
    (tmp_path / "GPL-3").write_text("Show me the source. Stop here now")
    assert sb.talk_sentences(tmp_path) == ["Show me the source", "Stop here now"]


def test_the_docstring_text_is_written_by_the_command_line(tmp_path):
    """--write-docstring-text in its own process (it imports every standard module)."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(sb.__file__)
    out = subprocess.run([sys.executable, str(script), "--write-docstring-text", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=script.parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("stdlib-docstrings.txt")
    sents = sb.talk_sentences(tmp_path)
    assert sum(len(s.split()) for s in sents) > 30000
    assert not any("assistant" in s.lower() for s in sents)


def test_the_synthetic_cache_is_written_whole_and_a_broken_file_is_made_again(tmp_path):
    x = sb.synth("show fascia", "en-us", 160, 50, tmp_path)
    assert len(x) > 0.3 * sb.SAMPLE_RATE_HZ
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".")  # no half-written file left
    # what a reader saw while another run was still writing it: the header, part of the data
    data = files[0].read_bytes()
    files[0].write_bytes(data[:len(data) // 2])
    assert (sb.synth("show fascia", "en-us", 160, 50, tmp_path) == x).all()
    assert files[0].read_bytes() == data


def test_the_man_page_text_reads_pages_without_their_markup(tmp_path):
    """--write-man-text (rule H3's unseen read-speech text): rendered pages as plain words,
    bold and underline gone, no header or footer line, one long page cut short."""
    import shutil
    import pytest
    if shutil.which("man") is None or shutil.which("groff") is None:
        pytest.skip("man and groff are not installed here")
    pages = tmp_path / "man1"
    pages.mkdir()
    (pages / "alpha.1").write_text(
        '.TH ALPHA 1 "2026" "alpha 1.0" "User Commands"\n.SH NAME\nalpha \\- show the '
        'first letter\n.SH DESCRIPTION\n.B Alpha\nprints\n.I one\nletter. ' + "word " * 400
        + "\n")
    (pages / "beta.1").write_text(
        '.TH BETA 1 "2026" "beta 1.0" "User Commands"\n.SH NAME\nbeta \\- stop nothing\n'
        '.SH DESCRIPTION\nBeta stops at the end.\n')
    (pages / "gcloud_x.1").write_text('.TH GX 1\n.SH NAME\ngcloud x \\- skipped\n')
    p = sb.write_man_text(tmp_path / "out", words=1000, per_page=50, man_dir=pages)
    text = p.read_text()
    assert p.name == "man-pages.txt"
    assert "NAME alpha - show the first letter DESCRIPTION Alpha prints one letter." in text
    assert "\b" not in text and "AAllpphhaa" not in text  # overstrike gone
    assert "User Commands" not in text and "gcloud" not in text
    first, second = text.split("\n\n")
    assert len(first.split()) == 50 and second.startswith("NAME beta - stop nothing")
    sents = sb.talk_sentences(tmp_path / "out")
    assert sents[0] == "NAME alpha - show the first letter DESCRIPTION Alpha prints one letter"
    # another section (rule W2's unseen text: section 8) reads its own pages only
    (pages / "gamma.8").write_text('.TH GAMMA 8\n.SH NAME\ngamma \\- mount nothing\n')
    p8 = sb.write_man_text(tmp_path / "out8", man_dir=pages, section="8")
    assert p8.read_text() == "NAME gamma - mount nothing"
    with pytest.raises(SystemExit, match="no section-5 pages"):
        sb.write_man_text(tmp_path / "out5", man_dir=pages, section="5")


def test_set_overrides_are_typed_as_the_setting():
    over = sb.parse_sets(["cmd_head_sure_for=freeze,record_stop", "min_wake_unheard=0.9",
                          "min_cmd_head_unheard=none", "cmd_head_sure=true"])
    assert over == {"cmd_head_sure_for": ("freeze", "record_stop"), "min_wake_unheard": 0.9,
                    "min_cmd_head_unheard": None, "cmd_head_sure": True}
    assert sb.parse_sets(["cmd_head_sure_for="]) == {"cmd_head_sure_for": ()}


def test_a_command_head_set_by_hand_is_flagged_in_the_latency():
    """--set whisper_cmd_head_file adds a diagnostic encoder pass per sure command (the trap
    rule H3 found): the output says so; installed (no override) or with cmd_head_sure it
    does not."""
    from dataclasses import replace
    from speech.settings import SpeechSettings
    assert sb.latency_note_for(replace(SpeechSettings(), whisper_cmd_head_file="/x.npz"))
    assert sb.latency_note_for(SpeechSettings()) is None
    assert sb.latency_note_for(replace(SpeechSettings(), whisper_cmd_head_file="/x.npz",
                                       cmd_head_sure=True)) is None


def test_a_data_folder_without_noise_is_a_clear_error(tmp_path, capsys):
    """--data pointing where the shared speech data is not: the folder is named, instead
    of a crash deep in the noise mixing."""
    with pytest.raises(SystemExit):
        sb.main(["--part", "multi", "--data", str(tmp_path), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert f"--data {tmp_path}: no noise recordings in {tmp_path / 'noise'}" in err


def test_real_words_can_be_scored_after_a_wake_phrase(tmp_path):
    """--words-wake / kws_speaker_folds.py --wake-prefix: each clip after eSpeak's
    "assistant", in wake activation (the default); the same clips bare are not acted on
    there, and are in always listening (the figures so far)."""
    from speech.audio import write_wav
    from speech.settings import SpeechSettings
    from speech.synth import espeak, with_silence
    data = tmp_path / "speech"
    for word, text in (("yes", "yes"), ("_unknown_", "banana")):
        (data / "speech_commands" / word).mkdir(parents=True)
        write_wav(data / "speech_commands" / word / "a.wav", with_silence(espeak(text)))
    r = sb.Runner(SpeechSettings(), 20)
    got = sb.bench_words(r, data, "all", [], None, wake_voices=["en-gb"], cache=tmp_path)
    assert got["clean"]["commands_right"].endswith("(1/1)")
    assert got["clean"]["unknown_accepted"].endswith("(0/1)")
    assert [d["word"] for d in r.dump if d["kind"] == "accept"] == ["yes"]
    for w in ("yes", "_unknown_"):  # the wake phrase was heard before each
        assert any(d["kind"] == "wake_only" or d["wake"] for d in r.dump if d["word"] == w)
    # timed from the end of the word, not of the wake phrase
    assert 0 < got["latency_ms_end_of_speech_to_command"]["clean"]["p95"] < 1000
    assert sb.bench_words(r, data, "all", [], None)["clean"]["commands_right"].endswith("(1/1)")
    # the wake phrase without eSpeak's digital silence around it (it would lengthen the pause)
    w = sb.wake_prefix_for(1, sb.VOICES_TEST, tmp_path)
    assert np.any(w[:160]) and np.any(w[-160:]) and len(w) > 0.3 * sb.SAMPLE_RATE_HZ
