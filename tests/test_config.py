"""config.yaml is read strictly: unknown keys and bad values name the key and line."""
import pytest

from assistant.config import ConfigError, load_settings, parse_settings, default_config_path


def test_shipped_config_loads():
    s = load_settings(default_config_path())
    assert s.bus.pub_endpoint == "auto" and s.source.kind in ("simulated", "video", "images", "camera")


def test_empty_config_gives_defaults():
    s = parse_settings("", "x.yaml")
    assert s.render.width_px == 1280


@pytest.mark.parametrize("text,line,key,expect", [
    ("bus:\n  heartbeat_ms: 500\n  hartbeat: 3\n", 3, "bus.hartbeat", "unknown key"),
    ("sauce:\n  kind: video\n", 1, "sauce", "unknown key"),
    ("bus:\n  heartbeat_ms: fast\n", 2, "bus.heartbeat_ms", "expected an integer, got 'fast'"),
    ("source:\n  kind: dvd\n", 2, "source.kind", "expected one of simulated, video, images, camera"),
    ("segmentation:\n  needle_filter: kalman\n", 2, "segmentation.needle_filter",
     "expected one of alpha_beta, one_euro"),
    ("source:\n  fps: [1, 2]\n", 2, "source.fps", "expected a float, got a list"),
    ("render:\n  window: maybe\n", 2, "render.window", "expected true or false"),
    ("launcher:\n  nodes: source\n", 2, "launcher.nodes", "expected a list"),
    ("bus: 3\n", 1, "bus", "expected a mapping"),
])
def test_errors_name_key_line_and_expectation(text, line, key, expect):
    with pytest.raises(ConfigError) as ei:
        parse_settings(text, "cfg.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"cfg.yaml:{line}: {key}: "), msg
    assert expect in msg


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="launcher.nodes: unknown node 'camera'"):
        parse_settings("launcher:\n  nodes: [source, camera]\n", "c.yaml")
    with pytest.raises(ConfigError, match="source.path: required"):
        parse_settings("source:\n  kind: video\n", "c.yaml")
    with pytest.raises(ConfigError, match="binds beyond this machine"):
        parse_settings("bus:\n  pub_endpoint: tcp://0.0.0.0:5555\n", "c.yaml")
    s = parse_settings("bus:\n  pub_endpoint: tcp://127.0.0.1:5555\n", "c.yaml")
    assert s.bus.pub_endpoint == "tcp://127.0.0.1:5555"
    with pytest.raises(ConfigError, match="source.fps: expected a positive"):
        parse_settings("source:\n  fps: -1\n", "c.yaml")
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(ConfigError, match=r"speech.kws_none_scale: expected a number in \(0, 1\]"):
            parse_settings(f"speech:\n  kws_none_scale: {bad}\n", "c.yaml")
    assert parse_settings("speech:\n  kws_none_scale: 0.5\n", "c.yaml").speech.kws_none_scale == 0.5
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.min_fused_veto is a probability"):
        parse_settings("speech:\n  min_fused_veto: 7\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.tail_gap_ms must be >= 0"):
        parse_settings("speech:\n  tail_gap_ms: -1\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.same_command_gap_ms must be >= 0"):
        parse_settings("speech:\n  same_command_gap_ms: -300\n", "c.yaml")
    assert parse_settings("speech:\n  same_command_gap_ms: 0\n",
                          "c.yaml").speech.same_command_gap_ms == 0
    for bad in ("0", "400"):
        with pytest.raises(ConfigError, match=r"c.yaml:2: speech.block_ms must be .* 5 to 200"):
            parse_settings(f"speech:\n  block_ms: {bad}\n", "c.yaml")
    assert parse_settings("speech:\n  block_ms: 50\n", "c.yaml").speech.block_ms == 50
    assert parse_settings("speech:\n  min_fused_veto: null\n", "c.yaml").speech.min_fused_veto is None
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.cmd_fuse_weight is a probability"):
        parse_settings("speech:\n  cmd_fuse_weight: -0.5\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.vad_neural_off_prob is a probability"):
        parse_settings("speech:\n  vad_neural_off_prob: 30\n", "c.yaml")
    s = parse_settings("speech:\n  min_cmd_fused_prob: null\n  cmd_head_sure: true\n", "c.yaml")
    assert s.speech.min_cmd_fused_prob is None and s.speech.cmd_head_sure is True
    s = parse_settings("speech:\n  cmd_head_sure_for: [freeze, record_stop]\n", "c.yaml")
    assert s.speech.cmd_head_sure_for == ("freeze", "record_stop")
    with pytest.raises(ConfigError, match=r"c.yaml:2: speech.cmd_head_sure_for"):
        parse_settings("speech:\n  cmd_head_sure_for: freeze\n", "c.yaml")
    for key, bad in (("min_cmd_fused_unconfirmed", "3"), ("min_cmd_fused_agreed", "-1"),
                     ("min_cmd_head_unheard", "1.5"), ("min_wake_head_unheard", "1.01"),
                     ("min_cmd_head_joined_window", "2"), ("min_soft_wake_head", "1.2"),
                     ("min_soft_wake_classifier", "-0.1"), ("min_cmd_head_soft_window", "5")):
        with pytest.raises(ConfigError, match=rf"speech.{key} is a probability"):
            parse_settings(f"speech:\n  {key}: {bad}\n", "c.yaml")
    for key, good in (("min_cmd_head_unheard", 0.7), ("min_cmd_head_joined_window", 0.8),
                      ("min_soft_wake_head", 0.99), ("min_cmd_head_soft_window", 0.9)):
        assert getattr(parse_settings(f"speech:\n  {key}: {good}\n", "c.yaml").speech,
                       key) == good
    s = parse_settings("speech:\n  min_cmd_fused_unconfirmed: null\n  cmd_early: false\n",
                       "c.yaml")
    assert s.speech.min_cmd_fused_unconfirmed is None and s.speech.cmd_early is False
    with pytest.raises(ConfigError, match=r"speech.cmd_early"):
        parse_settings("speech:\n  cmd_early: sometimes\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"speech.min_wake_cmd_head is a probability"):
        parse_settings("speech:\n  min_wake_cmd_head: 9\n", "c.yaml")
    assert parse_settings("speech:\n  min_wake_cmd_head: 0.9\n",
                          "c.yaml").speech.min_wake_cmd_head == 0.9
    with pytest.raises(ConfigError, match=r"speech.min_wake_sure is a probability"):
        parse_settings("speech:\n  min_wake_sure: -0.1\n", "c.yaml")


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml:3: not valid YAML"):
        parse_settings("bus:\n  - a: [\n", "c.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_overrides_are_checked_too():
    s = parse_settings("", "c.yaml", overrides={"source": {"kind": "video", "path": "a.mp4"}})
    assert s.source.path == "a.mp4"
    with pytest.raises(ConfigError, match="source.colour: unknown key"):
        parse_settings("", "c.yaml", overrides={"source": {"colour": 1}})


def test_a_sites_command_file_is_checked_when_the_config_is_read(tmp_path):
    bad = tmp_path / "commands.yaml"
    bad.write_text("version: 1\ncommands: [\n")
    for path, words in ((tmp_path / "none.yaml", "cannot read"), (bad, "not valid YAML")):
        with pytest.raises(ConfigError, match=f"speech.commands_file: command file .*{words}"):
            parse_settings(f"speech:\n  commands_file: {path}\n", "site.yaml")
    from speech.commands import DEFAULT_COMMANDS_FILE
    good = parse_settings(f"speech:\n  commands_file: {DEFAULT_COMMANDS_FILE}\n", "site.yaml")
    assert good.speech.commands_file == str(DEFAULT_COMMANDS_FILE)


def test_check_config_warns_of_what_will_not_work_but_does_not_stop(tmp_path, capsys):
    from assistant.cli import main
    from assistant.config import config_warnings
    assert config_warnings(parse_settings("", "x.yaml")) == []  # the defaults work
    site = tmp_path / "site.yaml"
    site.write_text("speech:\n  engine: vosk\n  input: /nonexist/a.wav\n"
                    "  kws_model: /nonexist/kws.npz\n  whisper_head_file: /nonexist/h.npz\n"
                    "source:\n  kind: video\n  path: /nonexist/v.mp4\n")
    assert main(["--config", str(site), "check-config"]) == 0
    got = capsys.readouterr()
    assert got.out.strip() == "config OK"
    assert "speech.engine is vosk but speech.vosk_model_dir (not set) is not a folder" in got.err
    assert "speech.input '/nonexist/a.wav' is not a file" in got.err
    assert "source.path '/nonexist/v.mp4' does not exist" in got.err
    assert "speech.kws_model '/nonexist/kws.npz' is not a file" in got.err  # a site's model
    assert "speech.whisper_head_file '/nonexist/h.npz' is not a file" in got.err


def test_check_config_warns_of_saturating_int8_weights_where_they_saturate(monkeypatch):
    from assistant.config import config_warnings
    import models.segmenter as segmenter
    s8 = parse_settings("segmentation:\n  int8_weights: s8\n", "x.yaml")
    monkeypatch.setattr(segmenter, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert any("int8_weights is s8 on an x86 CPU without VNNI" in w for w in config_warnings(s8))
    assert config_warnings(parse_settings("", "x.yaml")) == []  # auto: nothing to say
    s7 = parse_settings("segmentation:\n  int8_weights: s7\n", "x.yaml")
    assert config_warnings(s7) == []  # 7 bits: no saturation, faster than u8 here
    monkeypatch.setattr(segmenter, "cpu_flags", lambda: None)  # flags unknown: auto is u8
    assert any("int8_weights is s8 on an x86 CPU without VNNI" in w for w in config_warnings(s8))
    monkeypatch.setattr(segmenter, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert config_warnings(s8) == []
    assert any("int8_weights is s7 on a CPU whose int8 sums do not saturate" in w
               for w in config_warnings(s7))


def test_check_config_warns_of_a_moonshine_head_without_its_wheel(monkeypatch):
    from assistant.config import config_warnings
    import importlib.util
    on = parse_settings("speech:\n  head_moonshine: true\n", "x.yaml")
    assert config_warnings(on) == []  # the wheel is installed here (scripts/setup.sh)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    (w,) = config_warnings(on)
    assert w.startswith("speech.head_moonshine is true but Moonshine's encoder is not "
                        "installed: pip install --no-deps moonshine-voice==0.1.0")
    assert config_warnings(parse_settings("", "x.yaml")) == []  # off: nothing to say


def test_cross_field_errors_give_the_line_of_the_key(tmp_path):
    text = "assistant:\n  block: pecs2\nbus:\n  heartbeat_ms: -500\n"
    with pytest.raises(ConfigError, match=r"^site.yaml:4: bus.heartbeat_ms: expected a positive"):
        parse_settings(text, "site.yaml")
    with pytest.raises(ConfigError, match=r"^site.yaml:3: speech.min_kws_prob is a probability"):
        parse_settings("speech:\n  activation: wake\n  min_kws_prob: 1.5\n", "site.yaml")
    # a key the file does not give (a default, or a check across keys) keeps the file alone
    with pytest.raises(ConfigError, match=r"^site.yaml: source.path: required"):
        parse_settings("source:\n  kind: video\n", "site.yaml")
