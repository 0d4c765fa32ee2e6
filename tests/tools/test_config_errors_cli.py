"""Config errors through the real console script: exit 2, one line naming the file/key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tool_helpers import ROOT

CASES = [
    ("model:\n  backbone:\n    nmae: resnet18\n",
     "unknown key 'model.backbone.nmae' (did you mean 'model.backbone.name'?)"),
    ("solver:\n  max_iter: ten\n", "key 'solver.max_iter' expects int, got 'ten'"),
    ("seed: [1\n", "malformed YAML"),
]  # fmt: skip


def resdet(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tools.cli", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["train", "pretrain"])
@pytest.mark.parametrize(("text", "message"), CASES)
def test_bad_config_file(tmp_path: Path, command: str, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = resdet(command, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr and message in result.stderr


def test_missing_file_and_bad_override(tmp_path: Path):
    result = resdet("train", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr == f"resdet train: error: {tmp_path / 'nope.yaml'}: config file not found\n"
    )
    config = str(ROOT / "configs" / "detection" / "quickstart.yaml")
    result = resdet("eval", "--config", config, "--weights", "w.pth", "--set", "solver.base_lrr=1")
    assert result.returncode == 2
    assert "unknown key 'solver.base_lrr' (did you mean 'solver.base_lr'?)" in result.stderr
    assert result.stderr.count("\n") == 1


def test_frozen_bn_from_scratch_is_refused_before_training(tmp_path: Path):
    config = str(ROOT / "configs" / "detection" / "quickstart.yaml")
    out = tmp_path / "run"
    result = resdet("train", "--config", config,
                    "--set", "model.backbone.weights=", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("resdet train: error: model.backbone.norm is frozen_bn but ")
    assert "--set model.backbone.norm=bn" in result.stderr
    assert not out.exists()  # refused before the run claimed its folder


def test_a_class_name_that_cannot_name_a_file_is_refused_before_training(tmp_path: Path):
    # it would have trained to the end, then failed writing voc_results/comp4_det_test_a/b.txt
    config = str(ROOT / "configs" / "detection" / "quickstart.yaml")
    out = tmp_path / "run"
    result = resdet("train", "--config", config, "--set", f"output_dir={out}",
                    "data.class_names=[circle, square, triangle, star, a/b]")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "resdet train: error: key 'data.class_names': 'a/b' holds a '/'; expected a class name "
        "that can name a file of its own (test.metrics voc07 writes "
        "voc_results/comp4_det_<split>_<name>.txt)\n"
    )
    assert not out.exists()
