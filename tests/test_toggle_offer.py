"""benchmarks/toggle_offer.py: a wrong command replayed through the assistant's logic in
the state in which what was said makes sense."""
from __future__ import annotations

import json

from assistant.logic_settings import AssistantSettings
from benchmarks.toggle_offer import main, outcome

ON, OFF = AssistantSettings(offer_opposite=True), AssistantSettings(offer_opposite=False)


def test_swapped_toggles_are_offered_back_only_with_the_offer_on():
    assert outcome("record_stop", "record_start", ON) == "offered_said"
    assert outcome("unfreeze", "freeze", ON) == "offered_said"
    assert outcome("unfreeze", "freeze", OFF) == "acknowledged"


def test_other_wrong_commands_are_sorted_by_what_they_do():
    assert outcome("show.nerve", "hide.fascia", ON) == "changed"  # fascia was shown
    assert outcome("show.nerve", "hide.nerve", ON) == "acknowledged"  # hidden already
    assert outcome("needle_depth", "quality_score", ON) == "answered"
    assert outcome("block_next", "record_stop", ON) == "asked"  # offers "start recording"
    assert outcome("block_next", "record_start", ON) == "changed"


def test_main_reads_a_dump(tmp_path, capsys):
    rows = [{"part": "multi", "snr": None, "cmd": "record_stop", "kind": "accept",
             "command": "record_start"},
            {"part": "multi", "snr": 10.0, "cmd": "freeze", "kind": "accept",
             "command": "freeze"}]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wrong_commands"] == 1
    assert out["offer_opposite=true"] == {"offered_said": 1}
    assert out["offer_opposite=false"] == {"acknowledged": 1}
