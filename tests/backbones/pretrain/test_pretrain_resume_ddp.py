"""Exact resume after kill -9, and torchrun (2 processes, gloo) against one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pretrain_helpers import make_imagefolder

from backbones import build_backbone
from tools.cli import main

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _data(root: Path) -> dict:
    return {
        "train": {"format": "imagefolder", "root": str(root), "splits": ["train"]},
        "test": {"format": "imagefolder", "root": str(root), "splits": ["val"]},
    }


def _final(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model_final.pth", weights_only=True)["model"]


def test_kill_9_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 10, "val": 2})  # 40 images
    # 2.5 epochs of batch 16 (the sampler position crosses epochs), lr step at 25
    solver = {"max_iter": 50, "steps": [25], "checkpoint_period": 3}
    full = write_config(
        _data(root), {"solver": solver, "output_dir": str(tmp_path / "full")}, "full.yaml"
    )
    cut = write_config(
        _data(root), {"solver": solver, "output_dir": str(tmp_path / "cut")}, "cut.yaml"
    )
    assert main(["pretrain", "--config", str(full)]) == 0

    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "pretrain", "--config", str(cut)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = tmp_path / "cut" / "last_checkpoint"
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # no handler can run: like a crash or an OOM kill
    proc.wait()
    assert not (tmp_path / "cut" / "model_final.pth").exists(), "the run was not interrupted"
    killed_at = marker.read_text().strip()

    assert main(["pretrain", "--config", str(cut), "--resume"]) == 0
    expected, got = _final(tmp_path / "full"), _final(tmp_path / "cut")
    assert killed_at != "checkpoint_50.pth"
    for key, value in expected.items():
        assert torch.equal(got[key], value), key  # bit-exact (deterministic CPU mode)


def test_torchrun_two_processes_match_one_process(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """Two steps of global batch 16: 2 processes x 8 images vs 1 process x 16.

    The ranks' shares of each batch together are the one-process batch (DistributedSampler
    deals one permutation out) and augmentation is seeded per sample, so the data match.
    BatchNorm would not: each process normalises with its own 8 images' statistics, and
    SyncBatchNorm, which would fix that, has no CPU/gloo kernel in torch ("SyncBatchNorm
    expected input tensor to be on GPU"). With frozen_bn (a fixed affine) a sample's output
    does not depend on the rest of its batch, so DDP's averaged gradient equals the
    one-process gradient up to float summation order. (A small lr: without normalisation
    the from-scratch net's activations are large, and so are its gradients.)
    """
    root = make_imagefolder(tmp_path / "shapes", {"train": 8, "val": 2})
    run = {
        "model": {"backbone": {"norm": "frozen_bn"}},
        "solver": {"max_iter": 2, "base_lr": 0.001, "checkpoint_period": 2},
    }
    one = write_config(_data(root), {**run, "output_dir": str(tmp_path / "one")}, "one.yaml")
    two = write_config(_data(root), {**run, "output_dir": str(tmp_path / "two")}, "two.yaml")
    assert main(["pretrain", "--config", str(one)]) == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    resdet = Path(sys.executable).parent / "resdet"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node",
        "2",
        "--no-python",
        str(resdet),
        "pretrain",
        "--config",
        str(two),
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single, ddp = _final(tmp_path / "one"), _final(tmp_path / "two")
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-5, msg=key)
    torch.manual_seed(0)  # the run's initialisation: seed 0, then the model is built
    init = build_backbone("resnet20", num_classes=4, norm="frozen_bn", shortcut="A", base_width=4)
    moved = max((single[k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-4  # the two steps did change the weights
    log = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 2  # iteration 2 and its evaluation, once: only rank 0 writes
