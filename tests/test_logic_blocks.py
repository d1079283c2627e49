"""Block presets: the shipped six, and strict reading of a config ``blocks:`` section
(through the config loader, as a site's config.yaml is read)."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from assistant.blocks import BlockPreset, default_presets, find_preset
from assistant.config import ConfigError, parse_settings
from assistant.logic import BLOCK_IDS, initial_state, reduce
from assistant.logic_settings import AssistantSettings
from assistant.messages import SpeechCommand


def test_shipped_presets_cover_the_canonical_blocks():
    presets = default_presets()
    assert tuple(p.id for p in presets) == BLOCK_IDS
    pecs2 = find_preset(presets, "pecs2")
    assert pecs2.target_plane == ("pec_minor", "serratus") and "pleura" in pecs2.avoid
    assert find_preset(presets, "pecs1").target_plane == ("pec_major", "pec_minor")
    for bid in ("interscalene", "supraclavicular", "axillary", "femoral"):
        p = find_preset(presets, bid)
        assert p.target_class == "nerve" and "vessel" in p.avoid
        assert set(p.key_structures) == {"nerve", "vessel"}
    assert "pleura" in find_preset(presets, "supraclavicular").avoid


def blocks_from_config(items, block="pecs2"):
    return parse_settings(yaml.safe_dump({"assistant": {"block": block}, "blocks": items}),
                          "site.yaml").blocks


def test_config_round_trip_and_a_site_specific_block():
    items = [dataclasses.asdict(p) for p in default_presets()]
    items.append({"id": "pecs2_deep", "name": "deep PECS", "key_structures": ["pec_minor",
                                                                              "serratus"],
                  "avoid": ["pleura"], "target_plane": ["pec_minor", "serratus"],
                  "target_depth_mm": [25, 45], "image_depth_mm": [40, 60]})
    presets = blocks_from_config(items)
    assert presets[:6] == default_presets()
    state = initial_state(AssistantSettings(block="pecs2"), presets)
    cmd = SpeechCommand(command="block.pecs2_deep", heard="deep pecs", confidence=1.0,
                        start_s=0, end_s=1)
    state, _ = reduce(state, cmd, None, 0.0)
    assert state.block == "pecs2_deep"


@pytest.mark.parametrize("change,message", [
    ({"colour": "red"}, "colour: unknown key"),
    ({"key_structures": ["spleen"]}, "unknown class 'spleen'"),
    ({"target_class": "nerve"}, "exactly one of target_plane and target_class"),
    ({"target_depth_mm": [30, 10]}, "target_depth_mm must be"),
    ({"expected_depth_frac": [0.1, 1.5]}, "fraction of image height"),
    ({"key_structures": []}, "key_structures is empty"),
])
def test_bad_presets_are_clear_errors(change, message):
    base = {"id": "x", "name": "X", "key_structures": ["nerve"], "avoid": ["vessel"],
            "target_plane": ["pec_minor", "serratus"]}
    with pytest.raises(ConfigError, match="site.yaml:[0-9]+: blocks\\[0\\].*" + message):
        blocks_from_config([{**base, **change}], block="x")


def test_missing_keys_and_duplicates():
    with pytest.raises(ConfigError, match="site.yaml:[0-9]+: blocks\\[0\\]: missing keys \\['avoid'\\]"):
        blocks_from_config([{"id": "x", "name": "X", "key_structures": ["nerve"]}], block="x")
    p = dataclasses.asdict(default_presets()[0])
    with pytest.raises(ConfigError, match="duplicate block ids \\['pecs1'\\]"):
        blocks_from_config([p, p], block="pecs1")
    with pytest.raises(ConfigError, match="at least one"):
        blocks_from_config([])
    with pytest.raises(ConfigError, match="expected a mapping"):
        blocks_from_config(["pecs1"], block="pecs1")
    with pytest.raises(ValueError, match="unknown block 'knee'"):
        find_preset(default_presets(), "knee")
    assert isinstance(default_presets()[0], BlockPreset)
