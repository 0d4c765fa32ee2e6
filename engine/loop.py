"""The training loop as a plain function, shared by pretraining and detection training.

A stage plugs in a ``step_fn(model, batch) -> dict[str, Tensor]``: keys starting with
``loss`` are summed and back-propagated; keys starting with ``num_`` are counts (summed over
processes and over the run: ``num_skipped_images``); any other key is a scalar to log
(``train_error``). Everything else (AMP, clipping, the non-finite policy, checkpoints,
evaluation, logging, SIGTERM/SIGINT) is here, once.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

from engine import distributed as dist
from engine.amp import autocast
from engine.checkpoint import Checkpointer, list_checkpoints
from engine.errors import RunStopped
from engine.metrics import MetricsLogger
from engine.solver import WarmupMultiStepLR

StepFn = Callable[[nn.Module, Any], dict[str, Tensor]]
EvalFn = Callable[[], dict[str, Any]]


class NonFiniteLossError(RunStopped):
    """A loss became NaN or inf and the policy is ``stop``; the message is one line."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; a checkpoint was saved before this was raised."""


@dataclass
class LoopOptions:
    """How the loop runs (explicit values; the tools fill them from their config)."""

    max_iter: int  # stop after this many finished iterations
    checkpoint_period: int = 0  # save every this many iterations (and always at the end)
    eval_period: int = 0  # evaluate every this many iterations (and always at the end)
    log_period: int = 20  # iterations between metrics.jsonl lines
    amp_dtype: str | None = None  # "bf16" / "fp16" autocast (engine.amp.resolve_amp); None: off
    clip_grad_norm: float = 0.0  # clip the global gradient norm to this; 0 = off
    on_nonfinite: str = "stop"  # a NaN/inf loss raises NonFiniteLossError, or "skip"s the batch


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device``; channels_last memory format if asked for."""
    if channels_last:
        return model.to(device).to(memory_format=torch.channels_last)
    return model.to(device)


def train_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: WarmupMultiStepLR,
    batches: Iterable[Any],
    step_fn: StepFn,
    options: LoopOptions,
    *,
    start_iter: int = 0,
    scaler: torch.amp.GradScaler | None = None,
    checkpointer: Checkpointer | None = None,
    checkpoint_extra: Callable[[int], dict[str, Any]] | None = None,
    eval_fn: EvalFn | None = None,
    logger: MetricsLogger | None = None,
) -> dict[str, Any]:
    """Train from ``start_iter`` to ``options.max_iter`` (iterations count finished updates).

    Args:
        model: DDP-wrapped or not, already on its device.
        optimizer, scheduler: the scheduler steps once per iteration.
        batches: yields the batch of iteration ``start_iter + 1`` first (the caller resumes
            its sampler); iterated inside the loop so DataLoader workers start after the
            signal handlers are in place.
        step_fn: ``(model, batch) -> {name: 0-dim tensor}``, see the module docstring.
        options: periods, AMP, clipping and the non-finite policy.
        start_iter: finished iterations (from a checkpoint).
        scaler: GradScaler for fp16 (see :func:`engine.amp.make_grad_scaler`).
        checkpointer: saves every ``checkpoint_period``, at the end and on SIGTERM/SIGINT.
        checkpoint_extra: iteration -> extra checkpoint state (e.g. the sampler position).
        eval_fn: called on every rank every ``eval_period`` and at the end; its result
            (rank 0's is what counts) is logged and returned under "eval".
        logger: metrics.jsonl / TensorBoard / progress bar (None: no logging).

    Returns:
        The last logged window (losses, lr, time, ...), the run's counts and "eval".

    Raises:
        NonFiniteLossError: a non-finite loss under the ``stop`` policy (nothing is saved,
            so the last good checkpoint stays the newest).
        TrainingInterrupted: after SIGTERM/SIGINT and a checkpoint.
    """
    counts = {"num_skipped_batches": 0.0}
    last: dict[str, Any] = {}
    update = _Update(model, optimizer, scheduler, scaler, step_fn, options, checkpointer)

    def checkpoint(iteration: int) -> str:
        extra = checkpoint_extra(iteration) if checkpoint_extra else None
        return str(checkpointer.save(iteration, extra)) if checkpointer is not None else "none"

    model.train()
    with _StopOnSignal() as stop:
        data = iter(batches)
        for iteration in range(start_iter + 1, options.max_iter + 1):
            start = time.perf_counter()
            batch = next(data)
            data_time = time.perf_counter() - start
            scalars, stop_now = update(iteration, batch, stop, counts)
            timing = {"time": time.perf_counter() - start, "data_time": data_time}
            line = _log(logger, iteration, {**scalars, **timing}, counts, options)
            last = line if line is not None else last
            if stop_now:
                raise TrainingInterrupted(
                    f"stopped by {stop.signal or 'a signal'} at iteration {iteration}; "
                    f"checkpoint: {checkpoint(iteration)} (continue with --resume)"
                )
            if _due(iteration, options.checkpoint_period, options.max_iter):
                checkpoint(iteration)
            if eval_fn is not None and _due(iteration, options.eval_period, options.max_iter):
                last["eval"] = _evaluate(model, eval_fn, logger, iteration)
        if stop.signal is not None:  # it came during the last evaluation: say so, exit 130
            raise TrainingInterrupted(
                f"stopped by {stop.signal} during the evaluation after iteration "
                f"{options.max_iter}; the trained weights are in its checkpoint"
            )
    if eval_fn is not None and start_iter >= options.max_iter:  # nothing left to train
        last["eval"] = _evaluate(model, eval_fn, logger, options.max_iter)
    return {**last, **{k: int(v) for k, v in counts.items()}}


@dataclass
class _Update:
    """One optimisation step: forward under autocast, reduce, backward (or the non-finite
    policy), lr schedule, run counts."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupMultiStepLR
    scaler: torch.amp.GradScaler | None
    step_fn: StepFn
    options: LoopOptions
    checkpointer: Checkpointer | None

    def __post_init__(self) -> None:
        self.device_type = next(self.model.parameters()).device.type

    def __call__(
        self, iteration: int, batch: Any, stop: _StopOnSignal, counts: dict[str, float]
    ) -> tuple[dict[str, float], bool]:
        """Returns the iteration's scalars (with ``lr``) and whether any rank was signalled;
        ``counts`` gains the step's ``num_*`` values."""
        with autocast(self.device_type, self.options.amp_dtype):
            outputs = self.step_fn(self.model, batch)
        scalars = _reduce(outputs, stop.signal is not None)  # a signal during the forward too
        if math.isfinite(scalars["total_loss"]):
            _backward_and_step(
                self.model, self.optimizer, self.scaler, outputs, self.options.clip_grad_norm
            )
        else:
            _on_nonfinite(self.options.on_nonfinite, iteration, scalars, self.checkpointer)
            counts["num_skipped_batches"] += 1
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step(scalars)
        for name in [k for k in scalars if k.startswith("num_")]:
            counts[name] = counts.get(name, 0.0) + scalars.pop(name)
        stop_now = scalars.pop("_stop") > 0
        return {**scalars, "lr": lr}, stop_now


def _log(
    logger: MetricsLogger | None,
    iteration: int,
    scalars: dict[str, float],
    counts: dict[str, float],
    options: LoopOptions,
) -> dict[str, Any] | None:
    """Record one iteration; returns the metrics line when one is written (always, without
    a logger)."""
    if logger is None:
        return {"iter": iteration, **scalars}
    logger.put(scalars)
    logger.progress(iteration, {k: scalars[k] for k in ("total_loss", "lr", "time")})
    if iteration % options.log_period == 0 or iteration == options.max_iter:
        return logger.write(iteration, {k: int(v) for k, v in counts.items()})
    return None


def _due(iteration: int, period: int, max_iter: int) -> bool:
    return iteration == max_iter or (period > 0 and iteration % period == 0)


def _reduce(outputs: dict[str, Tensor], stop: bool) -> dict[str, float]:
    """Detached scalars averaged over ranks (counts summed), plus ``total_loss`` and ``_stop``.

    One all-reduce per iteration carries the loss terms, so a NaN on any rank and a signal
    received by any rank are seen by all of them and they all take the same branch.
    """
    losses = [v for k, v in outputs.items() if k.startswith("loss")]
    if not losses:
        raise ValueError(f"step_fn returned no loss term (keys: {sorted(outputs)})")
    values: dict[str, Tensor | float] = {k: v.detach().float() for k, v in outputs.items()}
    values["total_loss"] = sum(v.detach().float() for v in losses)
    values["_stop"] = float(stop)
    reduced = dist.reduce_scalars(values)
    world = dist.get_world_size()
    return {k: v * world if k.startswith("num_") or k == "_stop" else v for k, v in reduced.items()}


def _backward_and_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    outputs: dict[str, Tensor],
    clip_grad_norm: float,
) -> None:
    total = sum(v for k, v in outputs.items() if k.startswith("loss"))
    assert isinstance(total, Tensor)
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(total) if scaler is not None else total).backward()
    if clip_grad_norm > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        params = [p for p in model.parameters() if p.grad is not None]
        nn.utils.clip_grad_norm_(params, clip_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skips the update if the fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()


def _on_nonfinite(
    policy: str, iteration: int, scalars: dict[str, float], checkpointer: Checkpointer | None
) -> None:
    if policy == "skip":
        return
    terms = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k.startswith("loss"))
    saved = list_checkpoints(checkpointer.output_dir) if checkpointer is not None else []
    where = f"; the last good checkpoint, {saved[0]}, is kept" if saved else ""
    if checkpointer is not None and not saved:
        where = "; no checkpoint was written yet (lower solver.base_lr or add warm-up)"
    raise NonFiniteLossError(f"non-finite loss at iteration {iteration}: {terms}{where}")


def _evaluate(
    model: nn.Module, eval_fn: EvalFn, logger: MetricsLogger | None, iteration: int
) -> dict[str, Any]:
    results = eval_fn()
    model.train()
    if logger is not None:
        logger.write(iteration, {"eval": results})
    return results


class _StopOnSignal:
    """Within the block, SIGTERM and SIGINT set ``signal`` instead of killing the process."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # handlers need it
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
