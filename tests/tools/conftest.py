"""Fixtures for the detection tools: a tiny generated VOC set and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
from tool_helpers import QUICKSTART, tiny_overrides

from detection.data.synthetic import write_voc_dataset
from tools.cli import main


@pytest.fixture(scope="session")
def shapes_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-image generated VOC2007 tree at 96 px (train 14 / val 5 / test 5)."""
    out = tmp_path_factory.mktemp("shapes")
    write_voc_dataset(str(out), num_images=24, seed=1, size=96)
    return out / "VOC2007"


@pytest.fixture(scope="session")
def trained(shapes_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output_dir of one 30-iteration run on ``shapes_voc``; checkpoints every 10.

    Shared by the tests that read a run's files (train/eval/infer, report): do not write
    into it.
    """
    out = tmp_path_factory.mktemp("run")
    changes = {"solver.max_iter": 30, "solver.checkpoint_period": 10}
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out, **changes)]
    assert main(argv) == 0
    return out
