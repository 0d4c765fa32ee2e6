"""The `resdet` console script: dispatch, --help for every command, --version."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("resdet ")


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: resdet " + command)


def test_designs_command_list():
    assert set(COMMANDS) == {
        "pretrain", "train", "eval", "infer", "score", "submit", "make-dataset", "convert",
        "flops", "benchmark", "demo", "compare", "plot", "split-dataset", "browse",
        "dataset-stats", "report", "export",
    }  # fmt: skip
