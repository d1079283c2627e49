"""Command file validation (speech/commands.py): the shipped file and clear errors."""
from __future__ import annotations

import pytest
import yaml

from speech.commands import (CANONICAL_IDS, DEFAULT_COMMANDS_FILE, CommandFileError,
                             load_commands, parse_commands)
from speech.engines import cmudict_words


def _doc(**commands):
    return {"version": 1, "language": "en", "wake_phrases": ["assistant"],
            "commands": commands or {"freeze": {"phrases": ["freeze"]}}}


def test_shipped_file_covers_every_canonical_id_and_has_pronunciations():
    cs = load_commands(DEFAULT_COMMANDS_FILE, cmudict_words())
    assert set(cs.commands) == set(CANONICAL_IDS)
    assert cs.lookup("show the fascia") == "show.fascia"
    assert cs.lookup("show artery") == "show.vessel"
    assert cs.lookup("pecs two") == "block.pecs2"
    assert cs.lookup("mark injection start") == "injection_start"
    assert cs.lookup("what can i say") == "help"
    assert cs.lookup("hide overlay") == "hide.all"
    assert cs.commands["record_stop"].confirm and cs.commands["block.femoral"].confirm
    assert not cs.commands["show.nerve"].confirm
    assert cs.strip_wake("assistant show nerve") == (True, "show nerve")


@pytest.mark.parametrize("doc, fragment", [
    ({**_doc(), "colour": "red"}, "unknown top-level key"),
    ({**_doc(), "version": 2}, "'version' must be 1"),
    (_doc(**{"show.spleen": {"phrases": ["show spleen"]}}), "unknown command id 'show.spleen'"),
    (_doc(freeze={"phrases": []}), "'phrases' must be a non-empty list"),
    (_doc(freeze={"phrases": ["freeze"], "confirm": "maybe"}), "'confirm' must be true or false"),
    (_doc(freeze={"phrases": ["freeze"], "colour": 1}), "unknown key(s) ['colour']"),
    (_doc(freeze={"phrases": ["stop it"]}, stop={"phrases": ["stop it"]}),
     "used by both 'freeze' and 'stop'"),
    (_doc(**{"block.pecs2": {"phrases": ["pecs 2"]}}), "no digits"),
    ({**_doc(), "wake_phrases": []}, "'wake_phrases' must be a non-empty list"),
])
def test_invalid_documents_name_the_problem(doc, fragment):
    with pytest.raises(CommandFileError) as e:
        parse_commands(doc, "site.yaml")
    assert fragment in str(e.value)
    assert "site.yaml" in str(e.value)


def test_unquoted_yes_key_is_reported_as_yaml_boolean(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("version: 1\nlanguage: en\nwake_phrases: [assistant]\n"
                 "commands:\n  yes: {phrases: [\"yes\"]}\n")
    with pytest.raises(CommandFileError, match="YAML boolean"):
        load_commands(p)


def test_word_without_pronunciation_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    yaml.safe_dump(_doc(freeze={"phrases": ["freeze zorblax"]}), p.open("w"))
    with pytest.raises(CommandFileError, match=r"\['zorblax'\] have no pronunciation"):
        load_commands(p, cmudict_words())


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(CommandFileError, match="cannot read"):
        load_commands(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("commands: [unclosed\n")
    with pytest.raises(CommandFileError, match="not valid YAML"):
        load_commands(bad)
    d = tmp_path / "c.yaml"
    yaml.safe_dump({**_doc(), "dictionary": "extra.dict"}, d.open("w"))
    (tmp_path / "extra.dict").write_text("freeze f r iy z\n")
    with pytest.raises(CommandFileError, match="CMU phones, upper case"):
        load_commands(d)
