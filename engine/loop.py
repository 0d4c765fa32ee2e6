"""The training loop as a plain function, shared by pretraining and detection training.

A stage plugs in a ``step_fn(model, batch) -> dict[str, Tensor]``: keys starting with
``loss`` are summed and back-propagated; keys starting with ``num_`` are counts (summed over
processes and over the run: ``num_skipped_images``); any other key is a scalar to log
(``train_error``). Everything else (AMP, clipping, the non-finite policy, checkpoints,
evaluation, logging, what SIGTERM/SIGINT do: see ``engine.stops``) is here, once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from engine import distributed as dist
from engine import threads
from engine.amp import autocast
from engine.checkpoint import Checkpointer, list_checkpoints
from engine.errors import RunStopped, UserError
from engine.metrics import MetricsLogger
from engine.seeding import capture_rng_state, restore_rng_state
from engine.solver import WarmupMultiStepLR
from engine.stops import StopOnSignal, StopRequested

StepFn = Callable[[nn.Module, Any], dict[str, Tensor]]
EvalFn = Callable[[], dict[str, Any]]


class NonFiniteLossError(RunStopped):
    """A loss became NaN or inf and the policy is ``stop``; the message is one line."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; a checkpoint was saved before this was raised."""


class EvaluationInterrupted(TrainingInterrupted):
    """A stop came at the last iteration or during the final evaluation: the training is
    complete and checkpointed, the final evaluation did not run to its end."""


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
    eval_fn: EvalFn | None = None,
    logger: MetricsLogger | None = None,
    stop: StopOnSignal | None = None,
) -> dict[str, Any]:
    """Train from ``start_iter`` to ``options.max_iter`` (iterations count finished updates).

    A SIGTERM or SIGINT (to this process or its whole group, DataLoader workers included)
    ends the run at the next iteration boundary with a checkpoint. An evaluation of weights
    that are already in a checkpoint (the final one; a periodic one at a checkpoint
    iteration) is abandoned at once in a single process; under torchrun it runs to its end.

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
        eval_fn: called on every rank every ``eval_period`` and at the end (also when
            ``start_iter`` is already ``max_iter``); its result (rank 0's is what counts) is
            logged and returned under "eval". It does not move the training's random streams.
        logger: metrics.jsonl / TensorBoard / progress bar (None: no logging).
        stop: the caller's signal handling, already entered (None: the loop installs its own
            for its duration).

    Returns:
        The last logged window (losses, lr, time, ...), the run's counts and "eval".

    Raises:
        NonFiniteLossError: a non-finite loss under the ``stop`` policy (nothing is saved,
            so the last good checkpoint stays the newest).
        TrainingInterrupted: after SIGTERM/SIGINT and a checkpoint (or, if an error such as
            a dead DataLoader worker followed the signal, naming the last checkpoint).
        EvaluationInterrupted: the stop came at the last iteration or during the final
            evaluation; the last checkpoint holds the trained weights.
    """
    update = _Update(model, optimizer, scheduler, scaler, step_fn, options, checkpointer)
    run = _Run(model, update, options, checkpointer, eval_fn, logger)
    model.train()
    with nullcontext(stop) if stop is not None else StopOnSignal() as signals:
        last = run.iterations(batches, start_iter, signals)
        if eval_fn is not None:
            last["eval"] = run.final_evaluation(signals)
    return {**last, **{k: int(v) for k, v in run.counts.items()}}


@dataclass
class _Run:
    """The parts of one ``train_loop`` call and what it has done so far."""

    model: nn.Module
    update: _Update
    options: LoopOptions
    checkpointer: Checkpointer | None
    eval_fn: EvalFn | None
    logger: MetricsLogger | None
    counts: dict[str, float] = field(default_factory=lambda: {"num_skipped_batches": 0.0})
    stop_agreed: bool = False  # every rank saw a stop at the last iteration

    def iterations(
        self, batches: Iterable[Any], start_iter: int, signals: StopOnSignal
    ) -> dict[str, Any]:
        """Iterations ``start_iter + 1 .. max_iter`` with their checkpoints and periodic
        evaluations; returns the last logged window."""
        last: dict[str, Any] = {}
        opts = self.options
        iteration = start_iter
        try:
            data = iter(batches)
            for iteration in range(start_iter + 1, opts.max_iter + 1):
                line, stop_now = self.iteration(iteration, data, signals)
                last = line if line is not None else last
                if stop_now and (iteration < opts.max_iter or self.eval_fn is None):
                    raise TrainingInterrupted(
                        f"stopped by {signals.signal or 'a signal'} at iteration {iteration}; "
                        f"checkpoint: {self.checkpoint(iteration)} (continue with --resume)"
                    )
                self.stop_agreed = stop_now
                saved = _due(iteration, opts.checkpoint_period, opts.max_iter)
                if saved:
                    self.checkpoint(iteration)
                if self.evaluates_after(iteration):
                    last["eval"] = self.periodic_evaluation(iteration, saved, signals)
        except (RunStopped, UserError):
            raise
        except Exception as exc:  # after a stop: e.g. a worker or a peer that died of it too
            if signals.signal is None:
                raise
            raise TrainingInterrupted(self.stopped_by_an_error(signals, iteration, exc)) from exc
        return last

    def iteration(
        self, iteration: int, data: Iterator[Any], signals: StopOnSignal
    ) -> tuple[dict[str, Any] | None, bool]:
        """Fetch, step and log one iteration; returns the metrics line (if one was written)
        and whether every rank agrees to stop."""
        threads.adjust()
        start = time.perf_counter()
        batch = next(data)
        data_time = time.perf_counter() - start
        scalars, stop_now = self.update(iteration, batch, signals, self.counts)
        timing = {"time": time.perf_counter() - start, "data_time": data_time}
        line = _log(self.logger, iteration, {**scalars, **timing}, self.counts, self.options)
        return line, stop_now

    def evaluates_after(self, iteration: int) -> bool:
        """A periodic evaluation is due (the final one is :meth:`final_evaluation`)."""
        period, max_iter = self.options.eval_period, self.options.max_iter
        return (
            self.eval_fn is not None
            and iteration < max_iter
            and period > 0
            and (iteration % period == 0)
        )

    def checkpoint(self, iteration: int) -> str:
        """Save the state after ``iteration``; returns the file's path (or "none")."""
        if self.checkpointer is None:
            return "none"
        return str(self.checkpointer.save(iteration))

    def latest_checkpoint(self) -> str:
        """The newest checkpoint on disk, or "none"."""
        saved = list_checkpoints(self.checkpointer.output_dir) if self.checkpointer else []
        return str(saved[0]) if saved else "none"

    def periodic_evaluation(
        self, iteration: int, checkpointed: bool, signals: StopOnSignal
    ) -> dict[str, Any]:
        """Evaluate after ``iteration``; when its weights are in a checkpoint a stop
        abandons the evaluation (single process) and ends the run."""
        preempt = checkpointed and self.checkpointer is not None and dist.get_world_size() == 1
        try:
            with signals.interrupting(preempt):
                return _evaluate(self.model, self.eval_fn, self.logger, iteration)
        except StopRequested:
            raise TrainingInterrupted(
                f"stopped by {signals.signal} during the evaluation after iteration "
                f"{iteration}, not finished; checkpoint: {self.latest_checkpoint()} "
                "(continue with --resume)"
            ) from None

    def final_evaluation(self, signals: StopOnSignal) -> dict[str, Any]:
        """Evaluate the trained weights (they are in the last checkpoint); a stop before or
        during it (during: at once, in a single process) raises EvaluationInterrupted."""
        iteration = self.options.max_iter
        if self.stop_agreed:
            raise EvaluationInterrupted(
                f"stopped by {signals.signal} at iteration {iteration}, the last, before the "
                f"final evaluation; checkpoint: {self.latest_checkpoint()}"
            )
        try:
            with signals.interrupting(dist.get_world_size() == 1):
                return _evaluate(self.model, self.eval_fn, self.logger, iteration)
        except (RunStopped, UserError):
            raise
        except (StopRequested, Exception) as exc:
            if signals.signal is None:
                raise
            cause = "" if isinstance(exc, StopRequested) else f" (then: {_first_line(exc)})"
            raise EvaluationInterrupted(
                f"stopped by {signals.signal} during the final evaluation after iteration "
                f"{iteration}{cause}; checkpoint: {self.latest_checkpoint()}"
            ) from None

    def stopped_by_an_error(self, signals: StopOnSignal, iteration: int, exc: Exception) -> str:
        """The one line for an error that followed a stop: no new checkpoint (the state may
        be half-updated), the last one is named."""
        return (
            f"stopped by {signals.signal} at iteration {iteration} (then: {_first_line(exc)}); "
            f"the last checkpoint is {self.latest_checkpoint()} (continue with --resume)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


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
        self, iteration: int, batch: Any, stop: StopOnSignal, counts: dict[str, float]
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
    model: nn.Module, eval_fn: EvalFn | None, logger: MetricsLogger | None, iteration: int
) -> dict[str, Any]:
    """Run ``eval_fn`` and log its results; the random streams are put back afterwards (an
    evaluation's DataLoader draws a seed), so training after it continues as a run resumed
    from the checkpoint saved before it does."""
    assert eval_fn is not None
    rng = capture_rng_state()
    try:
        results = eval_fn()
    finally:
        restore_rng_state(rng)
        model.train()
    if logger is not None:
        logger.write(iteration, {"eval": results})
    return results
