"""`resdet demo` runs every stage and reports where everything is (tiny settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tool_helpers import ROOT


def test_demo_runs_every_stage(tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "out"
    command = [
        sys.executable, "-m", "tools.cli", "demo", "--data", str(data), "--output", str(out),
        "--num-images", "12",
        "--set-pretrain", "solver.max_iter=3", "solver.steps=[2]", "solver.ims_per_batch=8",
        "--set", "solver.max_iter=2", "solver.ims_per_batch=2", "data.num_workers=0",
        "input.min_size_train=128", "input.max_size_train=160", "input.min_size_test=128",
        "input.max_size_test=160",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "=== resdet demo: done" in result.stdout
    for stage in ("make-dataset", "pretrain", "train", "infer"):
        assert f"=== resdet {stage} " in result.stdout
    assert (out / "pretrain" / "backbone.pth").is_file()
    results = json.loads((out / "detector" / "eval_results.json").read_text())
    assert set(results["headline"]) == {"mAP@.5", "mAP@[.5,.95]"}
    assert (out / "detector" / "coco_results.json").is_file()
    drawn = sorted((out / "drawn").glob("*.jpg"))
    assert drawn and len(drawn) == len(list((out / "drawn").glob("*.json")))
    config = (out / "detector" / "config.yaml").read_text()
    assert f"weights: {out}/pretrain/backbone.pth" in config  # the pretrained backbone was used
