"""`resdet eval` of an ensemble: repeated --weights (and --member CONFIG=WEIGHTS) write the
files a single-model evaluation writes; members fed differently are refused in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tool_helpers import ROOT

from tools.cli import main

OUTPUTS = {"eval_results.json", "coco_results.json", "coco_ground_truth.json", "voc_results",
           "pr_curves.json", "pr_curves.png"}  # fmt: skip


def _eval(trained: Path, out: Path, *members: str) -> dict:
    argv = ["eval", "--config", str(trained / "config.yaml"), *members,
            "--set", f"output_dir={out}"]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "eval_results.json").read_text())


def test_two_weights_write_the_usual_files_and_name_both(trained: Path, tmp_path: Path):
    final, earlier = str(trained / "model_final.pth"), str(trained / "checkpoint_20.pth")
    results = _eval(trained, tmp_path, "--weights", final, "--weights", earlier)
    assert {p.name for p in tmp_path.iterdir()} >= OUTPUTS
    single = json.loads((trained / "eval_results.json").read_text())
    assert results.keys() == single.keys() and results["metrics"].keys() == single["metrics"].keys()
    assert results["weights"] == [final, earlier] and results["iteration"] == 30
    assert results["num_images"] == 5 and set(results["headline"]) == {"mAP@.5", "mAP@[.5,.95]"}
    voc_files = sorted(p.name for p in (tmp_path / "voc_results").iterdir())
    assert voc_files == sorted(p.name for p in (trained / "voc_results").iterdir())


def test_the_same_weights_twice_score_as_one(trained: Path, tmp_path: Path):
    final = str(trained / "model_final.pth")
    results = _eval(trained, tmp_path, "--weights", final, "--weights", final)
    single = json.loads((trained / "eval_results.json").read_text())
    for key, value in single["headline"].items():
        assert results["headline"][key] == pytest.approx(value, abs=1e-6)


def test_a_member_with_its_own_config(trained: Path, tmp_path: Path):
    final = str(trained / "model_final.pth")
    member = f"{trained / 'config.yaml'}={final}"
    results = _eval(trained, tmp_path, "--weights", final, "--member", member)
    assert results["weights"] == [final, final]
    single = json.loads((trained / "eval_results.json").read_text())
    assert results["headline"]["mAP@.5"] == pytest.approx(single["headline"]["mAP@.5"], abs=1e-6)


def test_a_member_fed_differently_is_refused_in_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = yaml.safe_load((trained / "config.yaml").read_text())
    config["input"]["min_size_test"] = 64
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(config))
    final = str(trained / "model_final.pth")
    argv = ["eval", "--config", str(trained / "config.yaml"), "--weights", final,
            "--member", f"{other}={final}", "--set", f"output_dir={tmp_path / 'out'}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"ensemble member {other}: input.min_size_test is 64 but the main config's is" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "eval_results.json").exists()


def test_eval_needs_weights(trained: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["eval", "--config", str(trained / "config.yaml")]) == 2
    assert "resdet eval needs --weights FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_evaluate_an_ensemble(trained: Path, tmp_path: Path):
    final = str(trained / "model_final.pth")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", port, "-m", "tools.cli", "eval",
               "--config", str(trained / "config.yaml"), "--weights", final, "--weights", final,
               "--set", f"output_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("results written to") == 1  # rank 0 alone
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["num_images"] == 5 and results["weights"] == [final, final]
    single = json.loads((trained / "eval_results.json").read_text())
    assert results["headline"]["mAP@.5"] == pytest.approx(single["headline"]["mAP@.5"], abs=1e-6)
