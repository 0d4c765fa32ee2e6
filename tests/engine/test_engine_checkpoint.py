"""Atomic checkpoints, keep-last-N, exact state restore, and the fallback from a torn file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.checkpoint import Checkpointer, list_checkpoints, load_latest
from engine.errors import UserError
from engine.io import atomic_torch_save
from engine.solver import WarmupMultiStepLR, build_optimizer


def _parts(seed: int) -> tuple[nn.Sequential, torch.optim.SGD, WarmupMultiStepLR]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = build_optimizer(model, 0.1, 0.9, 1e-4, 0.0, 1e-4)
    return model, opt, WarmupMultiStepLR(opt, steps=[2], warmup_iters=0)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: WarmupMultiStepLR) -> None:
    opt.zero_grad()
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    sched.step()


def test_save_keeps_last_n_and_points_at_newest(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    ckpt = Checkpointer(tmp_path, model, opt, sched, keep=2)
    for it in (1, 2, 3):
        _train_step(model, opt, sched)
        ckpt.save(it)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_3.pth", "checkpoint_2.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "checkpoint_3.pth\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_restores_model_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    for _ in range(3):
        _train_step(model, opt, sched)
    Checkpointer(tmp_path, model, opt, sched).save(3, extra={"sampler": {"epoch": 1}})
    _train_step(model, opt, sched)  # the uninterrupted run goes on
    expected_params = [p.detach().clone() for p in model.parameters()]
    expected_draws = (torch.rand(3), np.random.rand(), random.random())

    model2, opt2, sched2 = _parts(1)  # other init, other RNG position
    state = Checkpointer(tmp_path, model2, opt2, sched2).resume()
    assert state["iteration"] == 3 and state["extra"] == {"sampler": {"epoch": 1}}
    assert sched2.iteration == 3 and sched2.get_lr() == [pytest.approx(0.01)] * 3
    _train_step(model2, opt2, sched2)
    for got, want in zip(model2.parameters(), expected_params):
        assert torch.equal(got, want)  # bit-exact: momentum buffers, BN stats, RNG restored
    draws = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(draws[0], expected_draws[0])
    assert draws[1:] == expected_draws[1:]


def test_torn_checkpoint_falls_back_to_previous_with_warning(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    ckpt = Checkpointer(tmp_path, model, opt, sched, keep=None)
    ckpt.save(1)
    weights_at_1 = model[0].weight.detach().clone()
    _train_step(model, opt, sched)
    newest = ckpt.save(2)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # torn: e.g. a copy cut short

    model2, opt2, sched2 = _parts(1)
    with pytest.warns(UserWarning, match=r"checkpoint_2\.pth cannot be read.*using checkpoint_1"):
        state = Checkpointer(tmp_path, model2, opt2, sched2).resume()
    assert state["iteration"] == 1
    assert torch.equal(model2[0].weight, weights_at_1)


def test_missing_marker_target_uses_newest_file(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    ckpt = Checkpointer(tmp_path, model, opt, sched)
    ckpt.save(4)
    (tmp_path / "last_checkpoint").write_text("checkpoint_9.pth\n")
    with pytest.warns(UserWarning, match="checkpoint_9.pth cannot be read"):
        assert ckpt.resume()["iteration"] == 4


def test_resume_without_checkpoint_returns_empty(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    assert Checkpointer(tmp_path / "none", model, opt, sched).resume() == {}


def test_failed_write_leaves_previous_file_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoint_1.pth"
    atomic_torch_save({"x": torch.ones(2)}, path)

    def torn_save(obj: object, f) -> None:  # writes half, then the disk "fills up"
        f.write(b"PK\x03\x04 partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(UserError, match=r"checkpoint_1.pth: cannot write .*previous file is kept"):
        atomic_torch_save({"x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_1.pth"]


def test_a_flipped_bit_is_named_and_the_previous_checkpoint_used(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    ckpt = Checkpointer(tmp_path, model, opt, sched, keep=3)
    for it in (1, 2):
        _train_step(model, opt, sched)
        ckpt.save(it)
    assert (tmp_path / "checkpoint_2.pth.sha256").is_file()
    newest = tmp_path / "checkpoint_2.pth"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit, inside the tensor data: torch.load alone accepts it
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"checkpoint_2.pth cannot be read .*SHA-256 differs"):
        loaded = load_latest(tmp_path)
    assert loaded is not None and loaded[1].name == "checkpoint_1.pth"


def test_pruning_removes_the_checksums_too(tmp_path: Path) -> None:
    model, opt, sched = _parts(0)
    ckpt = Checkpointer(tmp_path, model, opt, sched, keep=1)
    for it in (1, 2):
        ckpt.save(it)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == [
        "checkpoint_2.pth", "checkpoint_2.pth.sha256"
    ]  # fmt: skip


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    path = tmp_path / "checkpoint_1.pth"
    atomic_torch_save({"x": torch.ones(2)}, path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"checkpoint_1.pth: cannot write \(No space left on de"):
        atomic_torch_save({"x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert not list(tmp_path.glob(".*.tmp"))


def test_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        atomic_torch_save({"x": torch.ones(1)}, tmp_path / "a.pth")
    finally:
        os.umask(old)
    assert (tmp_path / "a.pth").stat().st_mode & 0o777 == 0o644
