"""`resdet train` / `resdet eval` / `resdet infer` end to end on generated data (CPU); the
30-iteration run is conftest's ``trained``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tool_helpers import QUICKSTART, ROOT, tiny_overrides

from engine.launch import free_port
from tools.cli import main


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model_final.pth", weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_lowers_the_loss(trained: Path):
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [x["total_loss"] for x in lines if "total_loss" in x]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_training_writes_every_output(trained: Path):
    names = {p.name for p in trained.iterdir()}
    expected = {"config.yaml", "metrics.jsonl", "last_checkpoint", "model_final.pth",
                "eval_results.json", "coco_results.json", "voc_results", "pr_curves.json",
                "pr_curves.png", "coco_ground_truth.json"}  # fmt: skip
    assert expected <= names
    assert {"checkpoint_10.pth", "checkpoint_20.pth", "checkpoint_30.pth"} <= names
    assert (trained / "last_checkpoint").read_text().strip() == "checkpoint_30.pth"
    voc_files = sorted(p.name for p in (trained / "voc_results").iterdir())
    assert voc_files == [f"comp4_det_test_{c}.txt" for c in sorted(
        ["circle", "square", "triangle", "star", "ring"])]  # fmt: skip
    results = json.loads((trained / "eval_results.json").read_text())
    assert set(results["headline"]) == {"mAP@.5", "mAP@[.5,.95]"}
    assert results["iteration"] == 30 and results["num_images"] == 5
    curves = json.loads((trained / "pr_curves.json").read_text())["classes"]
    voc07 = results["metrics"]["voc07"]["per_class"]
    # the AP of the same curves (null in pr_curves.json, NaN here: a class without objects)
    assert {name: c["ap"] for name, c in curves.items()} == {
        name: None if ap != ap else ap for name, ap in voc07.items()
    }


def test_eval_reproduces_the_periodic_evaluation(trained: Path, tmp_path: Path, capsys):
    code = main(["eval", "--config", str(trained / "config.yaml"),
                 "--weights", str(trained / "model_final.pth"),
                 "--set", f"output_dir={tmp_path}"])  # fmt: skip
    assert code == 0
    during = json.loads((trained / "eval_results.json").read_text())["metrics"]
    after = json.loads((tmp_path / "eval_results.json").read_text())["metrics"]
    assert after == during
    captured = capsys.readouterr()
    assert "| class | AP50 % (VOC07) | AP % (COCO) |" in captured.out
    assert "mAP@.5: " in captured.out and "mAP@[.5,.95]: " in captured.out
    assert "eval 5/5 images  " in captured.err  # progress off a terminal (5 test images)


def test_infer_draws_and_lists_detections(trained: Path, shapes_voc: Path, tmp_path: Path, capsys):
    image = shapes_voc / "JPEGImages" / "000001.jpg"
    code = main(["infer", "--config", str(trained / "config.yaml"),
                 "--weights", str(trained / "model_final.pth"), "--input", str(image),
                 "--output", str(tmp_path), "--score-thresh", "0.0"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "000001.jpg").stat().st_size > 0
    assert "infer 1/1 images  " in capsys.readouterr().err
    listed = json.loads((tmp_path / "000001.json").read_text())
    assert listed["width"] == 96 or listed["height"] == 96
    for det in listed["detections"]:
        assert det["class"] in {"circle", "square", "triangle", "star", "ring"}
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= listed["width"] and 0 <= y1 <= y2 <= listed["height"]


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(trained: Path, tmp_path: Path):
    # the state of a run killed right after its checkpoint at iteration 10 ...
    shutil.copy(trained / "checkpoint_10.pth", tmp_path)
    (tmp_path / "last_checkpoint").write_text("checkpoint_10.pth\n")
    cfg = str(trained / "config.yaml")
    assert main(["train", "--config", cfg, "--resume", "--set", f"output_dir={tmp_path}"]) == 0
    # ... continues to exactly the weights of the run that was never stopped
    assert_same_weights(final_weights(tmp_path), final_weights(trained))


def test_torn_checkpoint_falls_back_to_the_previous_one(trained: Path, tmp_path: Path):
    for name in ("checkpoint_10.pth", "checkpoint_20.pth"):
        shutil.copy(trained / name, tmp_path)
    torn = tmp_path / "checkpoint_20.pth"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    (tmp_path / "last_checkpoint").write_text("checkpoint_20.pth\n")
    cfg = str(trained / "config.yaml")
    with pytest.warns(UserWarning, match=r"checkpoint_20\.pth cannot be read.*using checkpoint_10"):
        assert main(["train", "--config", cfg, "--resume", "--set", f"output_dir={tmp_path}"]) == 0
    assert_same_weights(final_weights(tmp_path), final_weights(trained))


def test_kill_9_then_resume_finishes_with_the_same_weights(
    trained: Path, shapes_voc: Path, tmp_path: Path
):
    cfg = str(trained / "config.yaml")
    command = [sys.executable, "-m", "tools.cli", "train", "--config", cfg,
               "--set", f"output_dir={tmp_path}"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        while not (tmp_path / "checkpoint_10.pth").exists() and process.poll() is None:
            pass
        process.kill()  # SIGKILL: no handler runs, whatever was being written stays torn
    finally:
        process.wait(timeout=60)
    assert main(["train", "--config", cfg, "--resume", "--set", f"output_dir={tmp_path}"]) == 0
    assert_same_weights(final_weights(tmp_path), final_weights(trained))


def test_a_diverging_run_stops_with_one_line(shapes_voc: Path, tmp_path: Path):
    command = [sys.executable, "-m", "tools.cli", "train", "--config", str(QUICKSTART),
               *tiny_overrides(shapes_voc, tmp_path, **{"solver.base_lr": 1e12,
                                                         "solver.warmup_iters": 0,
                                                         "solver.max_iter": 12})]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("resdet train: error: ")
    assert "iteration" in last and "loss" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "model_final.pth").exists()


@pytest.fixture(scope="module")
def torchrun_two_ranks(shapes_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("torchrun")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), "-m", "tools.cli", "train",
               "--config", str(QUICKSTART),
               *tiny_overrides(shapes_voc, out, **{"solver.max_iter": 4})]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    # one copy of the summary (rank 0 prints)
    assert result.stdout.count('"output_dir"') == 1
    return out


def test_torchrun_two_processes_train_and_evaluate(torchrun_two_ranks: Path):
    tmp_path = torchrun_two_ranks
    # one line per logged iteration (rank 0 writes)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines if "total_loss" in x] == [1, 2, 3, 4]
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["num_images"] == 5  # the gathered evaluation saw the whole test split
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pth")) == [
        "checkpoint_3.pth", "checkpoint_4.pth"]  # fmt: skip


def test_nproc_2_trains_as_torchrun_does(
    torchrun_two_ranks: Path, shapes_voc: Path, tmp_path: Path, capfd, monkeypatch
):
    # engine.launch starts the ranks itself: the same weights, files and one summary
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as torchrun's ranks had (the sums' order)
    argv = ["train", "--config", str(QUICKSTART), "--nproc", "2",
            *tiny_overrides(shapes_voc, tmp_path, **{"solver.max_iter": 4})]  # fmt: skip
    env_before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "RANK", "WORLD_SIZE")}
    assert main(argv) == 0
    assert capfd.readouterr().out.count('"output_dir"') == 1
    assert_same_weights(final_weights(tmp_path), final_weights(torchrun_two_ranks))
    ours, theirs = (json.loads((d / "eval_results.json").read_text())
                    for d in (tmp_path, torchrun_two_ranks))  # fmt: skip
    assert ours["num_images"] == theirs["num_images"] == 5
    assert {k: os.environ.get(k) for k in env_before} == env_before  # nothing leaks back


def test_training_starts_from_a_detector_checkpoint(
    trained: Path, shapes_voc: Path, tmp_path: Path
):
    # model.weights: the whole detector is loaded (frozen BN is then allowed with no backbone
    # weights); with lr 0 one step leaves every weight as loaded
    out = tmp_path / "finetuned"
    changes = {"solver.max_iter": 1, "solver.base_lr": 0.0, "solver.checkpoint_period": 1}
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out, **changes),
            f"model.weights={trained / 'model_final.pth'}", "model.backbone.norm=frozen_bn",
            "test.metrics=[voc07]"]  # fmt: skip
    assert main(argv) == 0
    start, after = final_weights(trained), final_weights(out)
    for key in ("backbone.stem.conv1.weight", "roi_heads.predictor.cls_score.weight"):
        assert torch.equal(after[key], start[key]), key


@pytest.mark.slow
def test_a_tiny_run_with_every_addition_of_appendix_b(shapes_voc: Path, tmp_path: Path):
    # global context trained end to end; the final evaluation refines boxes, votes, and
    # scores every RoI on a 3-scale pyramid and on the mirrored images
    out = tmp_path / "plus"
    changes = {"solver.max_iter": 4, "solver.checkpoint_period": 4}
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out, **changes),
            "model.roi_heads.global_context=true", "test.box_refinement=true",
            "test.box_voting=true", "test.pyramid_sizes=[64,96,128]", "test.flip=true"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_images"] == 5
    assert 0.0 <= results["headline"]["mAP@.5"] <= 1.0
    # the predictor sees each region's res5 feature and the global one: 2 x 64 (width 8)
    assert final_weights(out)["roi_heads.predictor.cls_score.weight"].shape[1] == 2 * 64
