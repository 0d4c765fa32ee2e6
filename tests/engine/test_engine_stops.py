"""SIGTERM / SIGINT: the training process decides (engine.stops and the loop's use of it),
DataLoader workers ignore stops that are not their parent's."""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from engine.checkpoint import Checkpointer
from engine.loop import EvaluationInterrupted, LoopOptions, TrainingInterrupted, train_loop
from engine.metrics import MetricsLogger
from engine.solver import WarmupMultiStepLR, build_optimizer
from engine.stops import StopOnSignal, StopRequested, StopSafeLoader, _stop_signals_held

ROOT = Path(__file__).resolve().parents[2]


def _batches(start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Batch i is a pure function of i (numbered from 1), so a resumed run sees the same."""
    for i in range(start, 10_000):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(i))
        yield i + 1, x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def _step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
    _, x, y = batch
    return {"loss_mse": (model(x) - y).pow(2).mean()}


def _train(out: Path, options: LoopOptions, step: Any = _step, **kw: Any) -> nn.Module:
    """A dropout MLP (dropout draws from torch's global RNG) trained by the loop in ``out``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    opt = build_optimizer(model, 0.01, 0.9, 1e-4, 0.0, 0.0)
    sched = WarmupMultiStepLR(opt, steps=[6])
    ckpt = Checkpointer(out, model, opt, sched, keep=None)
    start = ckpt.resume().get("iteration", 0) if kw.pop("resume", False) else 0
    batches = kw.pop("batches", _batches(start))
    logger = MetricsLogger(out, options.max_iter, start, progress=False)
    try:
        train_loop(model, opt, sched, batches, step, options, start_iter=start, checkpointer=ckpt,
                   logger=logger, **kw)  # fmt: skip
    finally:
        logger.close()
    return model


def _signal_self(sig: signal.Signals = signal.SIGTERM) -> None:
    """What a scheduler does, and wait for the handler (it runs between bytecodes)."""
    os.kill(os.getpid(), sig)
    time.sleep(0.05)


def test_interrupting_raises_at_once_once_and_for_a_pending_stop() -> None:
    with StopOnSignal() as stop:
        with pytest.raises(StopRequested), stop.interrupting():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # cut short by the handler
            pytest.fail("the stop did not interrupt")
        _signal_self(signal.SIGINT)  # outside: only recorded, the first one is kept
        assert stop.signal == "SIGTERM"
        with stop.interrupting(enabled=False):  # e.g. under torchrun: left to the loop
            pass
        with pytest.raises(StopRequested), stop.interrupting():  # one already received
            pytest.fail("a pending stop did not raise on entry")


def test_a_stop_during_an_evaluation_of_checkpointed_weights_abandons_it(tmp_path: Path) -> None:
    calls: list[int] = []

    def evaluate() -> dict[str, Any]:
        calls.append(1)
        _signal_self()
        pytest.fail("the evaluation was not abandoned")

    options = LoopOptions(8, checkpoint_period=3, eval_period=3)
    pattern = r"SIGTERM during the evaluation after iteration 3, not finished; .*checkpoint_3\.pth"
    with pytest.raises(TrainingInterrupted, match=pattern):
        _train(tmp_path, options, eval_fn=evaluate)
    assert calls == [1] and not (tmp_path / "checkpoint_4.pth").exists()


def test_a_stop_during_an_evaluation_between_checkpoints_waits_for_it(tmp_path: Path) -> None:
    def evaluate() -> dict[str, Any]:
        _signal_self()
        return {"acc": 0.5}  # no checkpoint holds these weights: the evaluation finishes

    options = LoopOptions(8, checkpoint_period=5, eval_period=3, log_period=1)
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at iteration 4; .*checkpoint_4\.pth"):
        _train(tmp_path, options, eval_fn=evaluate)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("eval") for line in lines if line["iter"] == 3] == [None, {"acc": 0.5}]


def test_a_stop_at_the_last_iteration_skips_the_final_evaluation(tmp_path: Path) -> None:
    def step(model: nn.Module, batch: tuple[int, Tensor, Tensor]) -> dict[str, Tensor]:
        if batch[0] == 4:
            _signal_self(signal.SIGINT)
        return _step(model, batch)

    def evaluate() -> dict[str, Any]:
        pytest.fail("the final evaluation ran after the stop")

    pattern = r"SIGINT at iteration 4, the last, before the final evaluation; .*checkpoint_4\.pth"
    with pytest.raises(EvaluationInterrupted, match=pattern):
        _train(tmp_path, LoopOptions(4, checkpoint_period=3), step, eval_fn=evaluate)


def test_an_error_after_a_stop_is_the_stop_naming_the_last_checkpoint(tmp_path: Path) -> None:
    def dying_worker(after_signal: bool) -> Iterator[Any]:
        for i, batch in enumerate(_batches()):
            if i == 4:  # iteration 5's batch
                if after_signal:
                    _signal_self()
                raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Terminated.")
            yield batch

    options = LoopOptions(8, checkpoint_period=3)
    with pytest.raises(RuntimeError, match="pid 123"):  # no stop: the error is the error
        _train(tmp_path / "error", options, batches=dying_worker(False))
    with pytest.raises(TrainingInterrupted) as info:
        _train(tmp_path / "stop", options, batches=dying_worker(True))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("stopped by SIGTERM at iteration 5 (then: RuntimeError: DataLoader")
    assert message.endswith("the last checkpoint is " + str(tmp_path / "stop" / "checkpoint_3.pth")
                            + " (continue with --resume)")  # fmt: skip


def test_an_evaluation_does_not_move_the_random_streams(tmp_path: Path) -> None:
    def evaluate() -> dict[str, Any]:  # as an evaluation DataLoader's seed draw does
        return {"r": torch.rand(1).item() + np.random.rand() + random.random()}

    options = LoopOptions(8, checkpoint_period=3, eval_period=3)
    full = _train(tmp_path / "full", options, eval_fn=evaluate)
    _train(tmp_path / "cut", LoopOptions(3, checkpoint_period=3), eval_fn=evaluate)
    resumed = _train(tmp_path / "cut", options, eval_fn=evaluate, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), resumed.parameters()))


class _Pids(Dataset):
    """Item i: (i, the pid of the process that loaded it, what the worker init left)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[int, int, str]:
        time.sleep(0.05)
        return i, os.getpid(), os.environ.get("STOPS_TEST_INIT", "")


def _mark_worker(worker_id: int) -> None:
    os.environ["STOPS_TEST_INIT"] = f"worker {worker_id}"


def _alive(pid: int) -> bool:
    """Running (not a zombie, not gone): a dead child stays a zombie until it is reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_ignore_stops_from_others_and_run_their_init() -> None:
    loader = StopSafeLoader(_Pids(), batch_size=None, num_workers=2, worker_init_fn=_mark_worker)
    items = iter(loader)
    first = [next(items) for _ in range(2)]
    workers = sorted({pid for _, pid, _ in first})
    assert len(workers) == 2 and os.getpid() not in workers
    for sig in ("-TERM", "-INT"):  # sent by another process, as a scheduler's kill is
        subprocess.run(["kill", sig, *map(str, workers)], check=True)
    rest = list(items)  # a killed worker would raise here
    assert [i for i, _, _ in first + rest] == list(range(12))
    assert {init for _, _, init in first + rest} == {"worker 0", "worker 1"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_parent_can_still_terminate_a_worker() -> None:
    items = iter(StopSafeLoader(_Pids(), batch_size=None, num_workers=1))
    _, worker, _ = next(items)
    os.kill(worker, signal.SIGTERM)  # what the DataLoader's shutdown does to a late worker
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(worker)
    del items


def test_a_stop_while_workers_start_is_held_then_delivered() -> None:
    with StopOnSignal() as stop:
        with _stop_signals_held():
            signal.raise_signal(signal.SIGTERM)
            time.sleep(0.05)
            assert stop.signal is None  # not while the workers fork
        time.sleep(0.05)
        assert stop.signal == "SIGTERM"


class _SignallingProcess(multiprocessing.context.ForkProcess):
    """A DataLoader worker whose start is followed by a SIGTERM to the training process."""

    def start(self) -> None:
        super().start()
        os.kill(os.getpid(), signal.SIGTERM)


class _SignallingContext(multiprocessing.context.ForkContext):
    Process = _SignallingProcess


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_stop_while_workers_start_is_raised_once_they_are_up(
    capfd: pytest.CaptureFixture[str],
) -> None:
    loader = StopSafeLoader(
        _Pids(), batch_size=None, num_workers=2, multiprocessing_context=_SignallingContext()
    )
    with StopOnSignal() as stop, pytest.raises(StopRequested), stop.interrupting():
        for _ in loader:
            pytest.fail("a batch came after the stop")
    deadline = time.monotonic() + 15
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()  # both workers were shut down
    assert capfd.readouterr().err == ""  # no "Exception ignored in ... __del__"


def test_every_dataloader_the_project_builds_is_stop_safe() -> None:
    """Their workers must leave stops to the training process (see engine.stops)."""
    plain = []
    for package in ("engine", "backbones", "detection", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DataLoader":
                    plain.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "DataLoader":
                    plain.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert plain == [], "build these with engine.stops.StopSafeLoader"
