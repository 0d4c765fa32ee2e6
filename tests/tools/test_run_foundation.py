"""What the shared foundation adds to a run: preflight, checked list choices, recorded input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from tool_helpers import QUICKSTART, tiny_overrides

from detection.config import load_config
from engine.errors import UserError
from tools.cli import main


def test_a_bad_test_split_fails_before_training(shapes_voc: Path, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    start = time.perf_counter()
    code = main(["train", "--config", str(QUICKSTART),
                 *tiny_overrides(shapes_voc, out, **{"data.test.splits": "[tset]"})])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().endswith(
        "tset.txt: split file not found (found: test, train, trainval, val)"
    )
    assert time.perf_counter() - start < 30  # seconds, not a training run
    assert not (out / "metrics.jsonl").exists() and not list(out.glob("checkpoint_*.pth"))
    assert not (out / "config.yaml").exists()


def test_a_bad_training_path_leaves_the_folder_free_for_the_corrected_run(
    shapes_voc: Path, tmp_path, capsys
) -> None:
    out, absent = tmp_path / "run", tmp_path / "absent"
    argv = ["train", "--config", str(QUICKSTART)]
    bad = tiny_overrides(shapes_voc, out, **{"data.train.root": absent, "solver.max_iter": 2})
    assert main([*argv, *bad]) == 2
    assert capsys.readouterr().err == (
        f"resdet train: error: data.train.root: folder {absent} not found\n"
    )
    assert list(out.iterdir()) == []  # no config.yaml: the rerun is not "a folder with a run"
    assert main([*argv, *tiny_overrides(shapes_voc, out, **{"solver.max_iter": 2})]) == 0
    assert (out / "model_final.pth").is_file()


def test_list_valued_choices_are_checked_at_load() -> None:
    with pytest.raises(UserError, match=r"key 'test.metrics' must be one of voc07, voc, coco, "
                                        r"got 'cooc'"):  # fmt: skip
        load_config(QUICKSTART, ["test.metrics=voc07,cooc"])


def test_checkpoints_record_input_and_classes(shapes_voc: Path, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out)]) == 0
    for name in ("checkpoint_6.pth", "model_final.pth"):
        meta = torch.load(out / name, weights_only=True)["meta"]
        assert meta["class_names"] == ["circle", "square", "triangle", "star", "ring"]
        assert meta["input"]["channel_order"] == "RGB"
        assert meta["input"]["pixel_mean"] == [123.675, 116.28, 103.53]
        assert "shorter side [96]" in meta["input"]["size"]


def test_backbone_input_that_differs_is_a_one_line_warning(shapes_voc: Path, tmp_path) -> None:
    pretrained = tmp_path / "backbone.pth"
    from backbones import build_backbone

    net = build_backbone("resnet18", num_classes=5, base_width=8, norm="bn")
    spec = {"channel_order": "BGR", "pixel_mean": [102.98, 115.95, 122.77],
            "pixel_std": [1.0, 1.0, 1.0], "size": "64x64 crops"}  # fmt: skip
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    torch.save({"model": state, "meta": {"input": spec}}, pretrained)
    overrides = tiny_overrides(shapes_voc, tmp_path / "run", **{
        "model.backbone.weights": pretrained, "solver.max_iter": 1})  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        assert main(["train", "--config", str(QUICKSTART), *overrides]) == 0
    messages = [str(w.message) for w in caught if "was trained on" in str(w.message)]
    assert messages == [
        f"{pretrained} was trained on BGR mean (103, 116, 122.8) std (1, 1, 1) input, but this "
        "config feeds RGB mean (123.7, 116.3, 103.5) std (1, 1, 1) (input.format / pixel_mean "
        "/ pixel_std)"
    ]


def test_resume_with_a_changed_schedule_says_so(shapes_voc: Path, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out)]) == 0
    longer = tiny_overrides(shapes_voc, out, **{"solver.max_iter": 8, "solver.steps": "[7]"})
    with pytest.warns(UserWarning, match=r"changed schedule: solver.max_iter 6 -> 8, solver.steps"):
        assert main(["train", "--config", str(QUICKSTART), "--resume", *longer]) == 0


def test_voc_runs_write_coco_ground_truth_that_score_reads(shapes_voc: Path, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out)]) == 0
    capsys.readouterr()
    args = ["score", "--coco-annotations", str(out / "coco_ground_truth.json"),
            "--results", str(out / "coco_results.json"), "--json"]  # fmt: skip
    assert main(args) == 0
    scored = json.loads(capsys.readouterr().out)
    evaluated = json.loads((out / "eval_results.json").read_text())["metrics"]["coco"]
    assert scored["AP"] == pytest.approx(evaluated["AP"], abs=1e-12)
    assert scored["AP50"] == pytest.approx(evaluated["AP50"], abs=1e-12)
