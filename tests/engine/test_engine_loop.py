"""The plain training loop: logging, checkpoints, resume, non-finite policy, signals, clipping."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from engine.amp import cpu_has_native_bf16
from engine.checkpoint import Checkpointer
from engine.loop import LoopOptions, NonFiniteLossError, TrainingInterrupted, train_loop
from engine.metrics import MetricsLogger
from engine.solver import WarmupMultiStepLR, build_optimizer


def _batches(start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Batch i is a pure function of i, so a resumed run sees the same data."""
    i = start
    while True:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(8, 4, generator=g)
        yield i + 1, x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        i += 1


def _mse_step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
    _, x, y = batch
    return {"loss_mse": (model(x) - y).pow(2).mean(), "num_images": torch.tensor(8.0)}


def _setup(tmp_path: Path, dropout: float = 0.0) -> tuple[nn.Module, Any, Any, Checkpointer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(dropout), nn.Linear(16, 1))
    opt = build_optimizer(model, 0.01, 0.9, 1e-4, 0.0, 0.0)
    sched = WarmupMultiStepLR(opt, steps=[6], warmup_iters=2, warmup_factor=0.5)
    return model, opt, sched, Checkpointer(tmp_path, model, opt, sched, keep=None)


def _run(tmp_path: Path, max_iter: int, step_fn: Any = _mse_step, **kw: Any) -> dict[str, Any]:
    model, opt, sched, ckpt = _setup(tmp_path, kw.pop("dropout", 0.0))
    start = ckpt.resume().get("iteration", 0) if kw.pop("resume", False) else 0
    logger = MetricsLogger(tmp_path, max_iter, start, progress=False)
    options = LoopOptions(max_iter=max_iter, log_period=2, checkpoint_period=3, **kw)
    out = train_loop(
        model,
        opt,
        sched,
        _batches(start),
        step_fn,
        options,
        start_iter=start,
        checkpointer=ckpt,
        logger=logger,
    )
    logger.close()
    return {"out": out, "model": model}


def test_loop_trains_logs_and_checkpoints(tmp_path: Path) -> None:
    res = _run(tmp_path, 8)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["iter"] for line in lines] == [2, 4, 6, 8]
    assert {"loss_mse", "total_loss", "lr", "time", "data_time", "eta_seconds"} <= set(lines[0])
    assert lines[0]["lr"] == pytest.approx(0.01 * (0.5 + 0.75) / 2)  # warm-up factor 0.5, 0.75
    assert lines[-1]["lr"] == pytest.approx(0.001)  # after the step at 6
    assert lines[-1]["num_images"] == 64 and lines[-1]["num_skipped_batches"] == 0
    assert lines[-1]["loss_mse"] < lines[0]["loss_mse"]
    assert res["out"]["iter"] == 8 and res["out"]["num_images"] == 64
    names = sorted(p.name for p in tmp_path.glob("checkpoint_*.pth"))
    assert names == ["checkpoint_3.pth", "checkpoint_6.pth", "checkpoint_8.pth"]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    # dropout draws from torch's global RNG: equality needs the RNG state restored too
    full = _run(tmp_path / "full", 8, dropout=0.5)["model"]
    _run(tmp_path / "cut", 3, dropout=0.5)  # "killed" right after checkpoint 3
    resumed = _run(tmp_path / "cut", 8, dropout=0.5, resume=True)
    for a, b in zip(full.parameters(), resumed["model"].parameters()):
        assert torch.equal(a, b)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    # lines after the checkpoint were dropped on resume; the cut run's last line (3) stays
    assert [json.loads(s)["iter"] for s in lines] == [2, 3, 4, 6, 8]


def _nan_at(iteration: int) -> Any:
    def step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
        out = _mse_step(model, batch)
        if batch[0] == iteration:
            out["loss_mse"] = out["loss_mse"] * float("nan")
        out["loss_other"] = torch.tensor(0.5)
        return out

    return step


def test_nonfinite_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError) as info:
        _run(tmp_path, 8, _nan_at(5))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("non-finite loss at iteration 5: loss_mse=nan, loss_other=0.5")
    assert (tmp_path / "last_checkpoint").read_text() == "checkpoint_3.pth\n"


def test_nonfinite_loss_skip_leaves_weights_and_counts(tmp_path: Path) -> None:
    res = _run(tmp_path / "skip", 5, _nan_at(5), on_nonfinite="skip")
    ref = _run(tmp_path / "ref", 4)
    for a, b in zip(res["model"].parameters(), ref["model"].parameters()):
        assert torch.equal(a, b)  # iteration 5 changed nothing
    assert res["out"]["num_skipped_batches"] == 1


def test_sigterm_saves_a_checkpoint_then_stops(tmp_path: Path) -> None:
    def step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
        if batch[0] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends
        return _mse_step(model, batch)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at iteration 2.*checkpoint_2\.pth"):
        _run(tmp_path, 8, step)
    assert (tmp_path / "last_checkpoint").read_text() == "checkpoint_2.pth\n"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_eval_fn_runs_at_period_and_end(tmp_path: Path) -> None:
    model, opt, sched, _ = _setup(tmp_path)
    calls: list[bool] = []

    def evaluate() -> dict[str, Any]:
        calls.append(model.training)
        model.eval()
        return {"acc": len(calls)}

    out = train_loop(
        model, opt, sched, _batches(), _mse_step, LoopOptions(7, eval_period=3), eval_fn=evaluate
    )
    assert calls == [True, True, True]  # at 3, 6 and 7 (the end)
    assert out["eval"] == {"acc": 3} and model.training


def test_grad_clipping_bounds_the_update(tmp_path: Path) -> None:
    model = nn.Linear(4, 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # no momentum, no decay
    sched = WarmupMultiStepLR(opt, steps=[])

    def step(model: nn.Module, batch: Any) -> dict[str, Tensor]:
        return {"loss": 1000.0 * model(torch.ones(1, 4)).sum()}  # gradient (1000, ..., 1000)

    train_loop(model, opt, sched, iter([None]), step, LoopOptions(1, clip_grad_norm=2.0))
    torch.testing.assert_close(model.weight, torch.full((1, 4), -1.0))  # clipped to norm 2: 1 each


def test_sigterm_during_the_final_evaluation_is_reported(tmp_path: Path) -> None:
    model, opt, sched, ckpt = _setup(tmp_path)

    def evaluate() -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. the scheduler's time limit
        return {"acc": 1.0}

    with pytest.raises(TrainingInterrupted, match="SIGTERM during the final evaluation after iter"):
        train_loop(model, opt, sched, _batches(), _mse_step, LoopOptions(4), checkpointer=ckpt,
                   eval_fn=evaluate)  # fmt: skip
    assert (tmp_path / "checkpoint_4.pth").is_file()  # saved before the evaluation


def test_resume_from_another_models_checkpoint_is_one_line(tmp_path: Path) -> None:
    from engine.errors import UserError

    _run(tmp_path, max_iter=3)
    other = nn.Sequential(nn.Linear(4, 7))
    ckpt = Checkpointer(tmp_path, other)
    with pytest.raises(UserError, match=r"checkpoint_3.pth was saved by a different model"):
        ckpt.resume()


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="needs a CPU with native bf16")
def test_bf16_autocast_on_cpu_lowers_the_loss_as_fp32_does(tmp_path: Path) -> None:
    dtypes: list[torch.dtype] = []

    def step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
        _, x, y = batch
        prediction = model(x)
        dtypes.append(prediction.dtype)
        return {"loss_mse": (prediction.float() - y).pow(2).mean(), "num_images": torch.tensor(8.0)}

    def losses(folder: Path, amp_dtype: str | None) -> list[float]:
        _run(folder, 8, step, amp_dtype=amp_dtype)
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss_mse"] for line in lines]

    fp32, bf16 = losses(tmp_path / "fp32", None), losses(tmp_path / "bf16", "bf16")
    assert dtypes == [torch.float32] * 8 + [torch.bfloat16] * 8
    assert fp32[-1] < 0.5 * fp32[0] and bf16[-1] < 0.5 * bf16[0]
    assert bf16 == pytest.approx(fp32, rel=0.02)  # measured: within 0.4 %
