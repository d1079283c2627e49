"""The `assistant` command: --help everywhere, config checks."""
import subprocess
import sys

import pytest

from conftest import ROOT

SUBCOMMANDS = ["run", "replay", "demo", "simulate", "check-config", "models", "listen",
               "seg-eval", "report"]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_top_level_help_lists_every_subcommand():
    r = cli("--help")
    assert r.returncode == 0
    for name in SUBCOMMANDS:
        assert name in r.stdout
    assert "NOT FOR CLINICAL USE" in r.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name):
    r = cli(name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"assistant {name}" in r.stdout and len(r.stdout.splitlines()) > 2


def test_check_config_reports_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  kind: video\n  path: x.mp4\n  fps: twenty\n")
    r = cli("--config", str(cfg), "check-config")
    assert r.returncode == 2
    assert f"{cfg}:4: source.fps: expected a number, got 'twenty'" in r.stderr
    assert cli("check-config").returncode == 0


@pytest.mark.parametrize("args,words", [
    (["simulate", "--out", "OUT", "--seconds", "0"], "--seconds must be a positive number"),
    (["simulate", "--out", "OUT", "--seconds", "nan"], "--seconds must be a positive number"),
    (["simulate", "--out", "OUT", "--fps", "0"], "--fps must be 1..240"),
    (["simulate", "--out", "OUT", "--seconds", "0.01", "--fps", "10"], "less than one frame"),
    (["simulate", "--out", "FILE", "--seconds", "0.2"], "is a file, not a folder"),
    (["simulate", "--out", "FILE/x.mp4", "--seconds", "0.2"], "is a file, not a folder"),
    (["replay", "NOPE.mp4", "--out", "FILE"], "is a file, not a folder"),
    (["demo", "--out", "FILE/sub"], "is a file, not a folder"),
    (["models", "fetch"], "name the model to fetch"),
    (["--config", "NOPE.yaml", "simulate", "--out", "OUT"], "config file not found"),
])
def test_bad_command_line_values_are_named_without_a_traceback(tmp_path, capsys, args, words):
    from assistant.cli import main
    (tmp_path / "afile").write_text("x")
    args = [a.replace("OUT", str(tmp_path / "o")).replace("FILE", str(tmp_path / "afile"))
            .replace("NOPE", str(tmp_path / "nope")) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing made for a refused command
