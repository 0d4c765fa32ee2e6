"""The `resdet` console script: dispatch, --help for every command, --version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools.cli import COMMANDS, READER_GONE, main


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


def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``resdet ARGS | head -0``: stdout is a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tools.cli", *args], stdout=write_end, stderr=subprocess.PIPE,
            text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    ("args", "code"),
    [(("flops", "resnet18"), READER_GONE), (("--help",), 0), (("score", "--help"), 0)],
)
def test_a_closed_stdout_ends_quietly(args, code):
    # a command's output cut short: 141 (128 + SIGPIPE); argparse's --help ignores the
    # error itself and ends 0; either way nothing on stderr
    result = run_into_a_closed_pipe(*args)
    assert READER_GONE == 141
    assert (result.returncode, result.stderr) == (code, "")  # no "Exception ignored" at exit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "run", "--images", "-1"),
         "resdet report: error: argument --images: expected a whole number >= 0, got '-1'"),
        (("report", "run", "--score-thresh", "nan"),
         "resdet report: error: argument --score-thresh: expected a number from 0 to 1, got 'nan'"),
        (("infer", "--config", "c", "--weights", "w", "--input", "i", "--output", "o",
          "--score-thresh", "1.5"),
         "resdet infer: error: argument --score-thresh: expected a number from 0 to 1"),
        (("browse", "--config", "c", "--out", "o", "--max-images", "-3"),
         "resdet browse: error: argument --max-images: expected a whole number >= 0, got '-3'"),
        (("nope",), "resdet: error: argument COMMAND: invalid choice: 'nope'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_with_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "usage:" not in result.stderr


def test_a_warning_is_one_line_naming_the_command(tmp_path):
    """A DataWarning (here: a stale run lock taken over) reads ``resdet <command>: warning:
    ...`` on one line, without Python's file:line header and source line."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid names no running process
    (tmp_path / ".lock").write_text(f"{finished.pid} {os.uname().nodename}\n")
    result = run_cli("eval", "--config", "configs/detection/quickstart.yaml", "--weights",
                     str(tmp_path / "none.pth"), "--set", f"output_dir={tmp_path}",
                     "data.test.root=/nonexistent")  # fmt: skip
    lines = result.stderr.splitlines()
    warning = [line for line in lines if "stale lock" in line]
    assert warning == [
        f"resdet eval: warning: {tmp_path / '.lock'}: stale lock of process {finished.pid} "
        "(not running); taking it over (DataWarning)"
    ]
    assert not any(".py:" in line for line in lines), lines
    assert result.returncode == 2
