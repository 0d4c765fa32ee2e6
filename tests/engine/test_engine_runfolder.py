"""engine.runfolder: the reader takes back what the run's writers wrote, under the same names;
a missing or malformed file is one line naming it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.config import save_config
from engine.errors import UserError
from engine.metrics import MetricsLogger
from engine.runfolder import (
    CONFIG_FILE,
    EVAL_RESULTS,
    METRICS_FILE,
    RunFolder,
    write_eval_results,
)


@dataclass
class _Backbone:
    name: str = "resnet20"


@dataclass
class _Model:
    backbone: _Backbone = field(default_factory=_Backbone)


@dataclass
class _Config:
    seed: int = 3
    model: _Model = field(default_factory=_Model)


def test_what_the_writers_write_reads_back(tmp_path: Path) -> None:
    save_config(_Config(), tmp_path / CONFIG_FILE)
    logger = MetricsLogger(tmp_path, max_iter=4, progress=False)
    logger.put({"loss": 1.5})
    logger.write(2)
    logger.write(4, {"eval": {"center": {"top1_error": 0.25}}})
    logger.close()
    write_eval_results(tmp_path, {"center": {"top1_error": float("nan")}, "num_images": 8},
                       {"top1_error": float("nan")}, 4, "model_final.pth")  # fmt: skip
    run = RunFolder(tmp_path)
    assert run.config_tree() == {"seed": 3, "model": {"backbone": {"name": "resnet20"}}}
    assert run.metrics() == [
        {"iter": 2, "loss": 1.5},
        {"iter": 4, "eval": {"center": {"top1_error": 0.25}}},
    ]
    assert run.eval_results() == {
        "iteration": 4, "weights": "model_final.pth", "headline": {"top1_error": None},
        "metrics": {"center": {"top1_error": None}}, "num_images": 8,
    }  # fmt: skip


def test_a_missing_folder_or_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope: run directory not found$"):
        RunFolder(tmp_path / "nope")
    run = RunFolder(tmp_path)
    assert run.config_tree() is None  # optional: a label falls back to the folder name
    with pytest.raises(UserError) as info:
        run.eval_results()
    assert str(info.value) == (
        f"{tmp_path / EVAL_RESULTS}: not found (written by resdet train or resdet pretrain, "
        "or later by resdet eval)"
    )
    with pytest.raises(UserError, match=r"metrics\.jsonl: not found \(run it first\)$"):
        run.metrics("run it first")
    with pytest.raises(UserError, match=r"config\.yaml: not found \(written by resdet train"):
        run.file(CONFIG_FILE)


def test_metrics_lines_torn_malformed_and_empty(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text('{"iter": 2, "loss": 1.0}\n\n{"iter": 4, "lo')  # torn by a killed run
    assert RunFolder(tmp_path).metrics() == [{"iter": 2, "loss": 1.0}]
    path.write_text('{"iter": 2}\n{not json\n{"iter": 4}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: malformed line"):
        RunFolder(tmp_path).metrics()
    path.write_text('{"iter": true}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:1: expected a JSON object with an int"):
        RunFolder(tmp_path).metrics()
    path.write_text("\n")
    with pytest.raises(UserError, match="no metric lines"):
        RunFolder(tmp_path).metrics()


@pytest.mark.parametrize(
    ("text", "why"),
    [("[]", "expected an object, got list"),
     ('{"metrics": {"voc07": 1}}', '"metrics" must be an object of objects'),
     ('{"metrics": {}, "headline": {"a": "x"}}', '"headline" must map names to numbers')],
)  # fmt: skip
def test_eval_results_of_another_layout_and_legacy_nan(tmp_path: Path, text: str, why: str):
    (tmp_path / EVAL_RESULTS).write_text(text)
    with pytest.raises(UserError) as info:
        RunFolder(tmp_path).eval_results()
    assert str(info.value) == (
        f"{tmp_path / EVAL_RESULTS}: not an eval_results.json written by resdet ({why})"
    )
    (tmp_path / EVAL_RESULTS).write_text('{"metrics": {"voc07": {"mAP": NaN}}}')  # older files
    mAP = RunFolder(tmp_path).eval_results()["metrics"]["voc07"]["mAP"]
    assert mAP != mAP and json.dumps(mAP) == "NaN"


def test_a_malformed_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("model: [1, 2\n")
    with pytest.raises(UserError, match=r"config\.yaml: malformed YAML \(line"):
        RunFolder(tmp_path).config_tree()
