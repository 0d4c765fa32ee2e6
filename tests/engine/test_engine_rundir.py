"""engine/rundir.py: a run directory belongs to one run and one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import DataWarning, UserError
from engine.rundir import LOCK, claim_eval_dir, claim_run_dir


def _claim(out: Path, resume: bool = False, restart: bool = False) -> None:
    with claim_run_dir(out, resume, restart):
        pass


def _earlier_run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint_6.pth", "model_final.pth"):
        (out / name).write_text(name)


def test_a_folder_with_a_run_needs_resume_or_restart(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    with pytest.raises(UserError, match=r"holds a run \(checkpoint_6.pth, config.yaml, metrics"):
        _claim(out)
    with claim_run_dir(out, resume=True, restart=False):
        assert (out / LOCK).is_file()
    assert not (out / LOCK).exists()  # released
    assert (out / "model_final.pth").read_text() == "model_final.pth"  # resume touches nothing


def test_restart_moves_the_old_run_aside(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    (out / ".checkpoint_7.pth.abc.tmp").write_text("torn")
    with pytest.warns(DataWarning, match="moved to"), claim_run_dir(out, False, True):
        pass
    (previous,) = (out / "previous").iterdir()
    assert sorted(p.name for p in previous.iterdir()) == [
        "checkpoint_6.pth", "config.yaml", "metrics.jsonl", "model_final.pth"
    ]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["previous"]  # temp file cleaned


def test_a_live_lock_keeps_a_second_process_out(tmp_path: Path) -> None:
    with (
        claim_run_dir(tmp_path, False, False),
        pytest.raises(UserError, match=rf"process {os.getpid()}"),
    ):
        _claim(tmp_path, resume=True)


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / LOCK).write_text(f"{dead} {socket.gethostname()} 2026-01-01T00:00:00\n")
    with (
        pytest.warns(DataWarning, match=f"stale lock of process {dead}"),
        claim_run_dir(tmp_path, False, False),
    ):
        assert (tmp_path / LOCK).read_text().split()[0] == str(os.getpid())


def test_bad_output_dirs_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file; expected a folder"):
        _claim(tmp_path / "file")
    with pytest.raises(UserError, match="pick one"):
        _claim(tmp_path / "new", resume=True, restart=True)
    if os.geteuid() != 0:  # root writes anywhere
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o500)
        with pytest.raises(UserError, match="is not writable"):
            _claim(read_only)


def test_an_evaluation_keeps_the_results_in_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with claim_eval_dir(out) as first:  # a new folder: results go straight in
        assert first == out and (out / LOCK).is_file()
        (out / "eval_results.json").write_text("trained")
    with claim_eval_dir(out) as second, claim_eval_dir(out, main=False) as other_rank:
        assert second.parent == out / "eval" and second.is_dir()
        assert other_rank == out  # other ranks write nothing
    with claim_eval_dir(out) as third:  # the same second: a folder of its own
        assert third.parent == out / "eval" and third != second
    assert (out / "eval_results.json").read_text() == "trained"
    assert not (out / LOCK).exists()


def test_an_evaluation_respects_the_lock_of_a_training_run(tmp_path: Path) -> None:
    with claim_run_dir(tmp_path, False, False):  # a run is training there
        with (
            pytest.raises(UserError, match=rf"in use by process {os.getpid()}"),
            claim_eval_dir(tmp_path),
        ):
            pass
        assert (tmp_path / LOCK).is_file()  # the run's lock is left alone


def test_restart_also_moves_the_curves_and_later_evaluations_aside(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    for name in ("pr_curves.json", "pr_curves.png", "coco_ground_truth.json"):
        (out / name).write_text(name)
    (out / "eval" / "20240101T000000Z").mkdir(parents=True)
    with pytest.warns(DataWarning, match="moved to"), claim_run_dir(out, False, True):
        pass
    (previous,) = (out / "previous").iterdir()
    assert {"pr_curves.json", "pr_curves.png", "coco_ground_truth.json", "eval"} <= {
        p.name for p in previous.iterdir()
    }
    assert (previous / "pr_curves.png").read_text() == "pr_curves.png"  # not replaced later
    assert sorted(p.name for p in out.iterdir()) == ["previous"]
