"""Fault injection: a training killed (SIGKILL) at seeded random moments resumes to
bit-identical weights, and a two-"node" torchrun on loopback trains as one process would."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tool_helpers import QUICKSTART, ROOT, tiny_overrides

from engine.launch import free_port
from tools.cli import main


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model_final.pth", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(shapes_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    changes = {"solver.max_iter": 12, "solver.checkpoint_period": 2}
    assert (
        main(["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out, **changes)])
        == 0
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_a_random_moment_then_resumed_is_bit_identical(
    reference: Path, tmp_path: Path, seed: int
) -> None:
    cfg = str(reference / "config.yaml")
    argv = [
        sys.executable,
        "-m",
        "tools.cli",
        "train",
        "--config",
        cfg,
        "--set",
        f"output_dir={tmp_path}",
    ]
    process = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:  # wait for the first checkpoint, then kill somewhere in the next seconds
        while not (tmp_path / "checkpoint_2.pth").exists() and process.poll() is None:
            time.sleep(0.01)
        time.sleep(random.Random(seed).uniform(0.0, 3.0))
        process.kill()
    finally:
        process.wait(timeout=60)
    assert main(["train", "--config", cfg, "--resume", "--set", f"output_dir={tmp_path}"]) == 0
    mine, theirs = _weights(tmp_path), _weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.slow
def test_two_nodes_on_loopback(shapes_voc: Path, tmp_path: Path) -> None:
    """Two torchrun agents (one process each) meet at a c10d rendezvous on 127.0.0.1."""
    port = free_port()
    overrides = tiny_overrides(shapes_voc, tmp_path / "run", **{"solver.max_iter": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "loopback",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "tools.cli", "train",
               "--config", str(QUICKSTART), *overrides]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    nodes = [subprocess.Popen(command, cwd=ROOT, env=env, **pipes) for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-1500:] for _, err in outputs]
    assert sum(out.count('"output_dir"') for out, _ in outputs) == 1  # rank 0 reports once
    assert (tmp_path / "run" / "model_final.pth").is_file()
