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
