"""One orchestrator for both tasks: a :class:`Task` in, a trained (or scored) model out.

``run_training(task, resume)`` runs the twelve steps every training run takes (process
set-up, preflight, model, DDP, solver, AMP, checkpointer and resume, config.yaml, data,
logger, the loop, final files); ``evaluate_checkpoint(task, weights)`` scores a weights
file. A task says what is its own: its model, batches, step, evaluation and final files.

Every run writes ``eval_results.json`` in one layout (``engine.runfolder``, which also reads
it back for the tools).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from torch import Tensor, nn

from engine import distributed as dist
from engine.amp import make_grad_scaler, resolve_amp
from engine.checkpoint import Checkpointer, list_checkpoints
from engine.config import SolverConfig, save_config
from engine.errors import UserError
from engine.loop import EvaluationInterrupted, LoopOptions, TrainingInterrupted, train_loop
from engine.metrics import MetricsLogger
from engine.rundir import claim_eval_dir, claim_run_dir
from engine.runfolder import CONFIG_FILE, MODEL_FINAL, write_eval_results
from engine.seeding import deterministic_mode, seed_everything
from engine.solver import WarmupMultiStepLR, build_optimizer
from engine.stops import StopOnSignal, StopRequested


class Task(Protocol):
    """What a task plugs into :func:`run_training` and :func:`evaluate_checkpoint`.

    ``cfg`` is the task's root config (an ``engine.config.RunConfig`` with ``solver`` and
    ``test.eval_period``). Every method runs on every rank, except ``headline`` and
    ``save_final``, which only rank 0 calls (it writes the files).
    """

    cfg: Any

    def preflight(self) -> None:
        """Check what the run reads last (the test split's index, the evaluators) before
        anything is trained, so a typo there fails in seconds; raises UserError."""

    def build_model(self, device: torch.device) -> nn.Module:
        """The model to train, with its configured initial weights, on ``device``."""

    def load_for_eval(
        self, weights: str | list[str], device: torch.device
    ) -> tuple[nn.Module, int]:
        """The model filled from a weights file (or one model of several, for a task that
        ensembles them), on ``device``, and the (first) file's iteration."""

    def train_batches(self, batch_size: int, start_iter: int) -> Iterable[Any]:
        """The endless training stream of this rank, starting with batch ``start_iter``."""

    def step(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Losses (``loss*``), counts (``num_*``) and scalars of one batch (engine.loop)."""

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Score ``model`` on the test split: {metric or mode: {...}, scalar: value}."""

    def headline(self, results: dict[str, Any]) -> dict[str, float]:
        """The few numbers that summarise ``results`` (e.g. mAP@.5, top-1 error)."""

    def meta(self) -> dict[str, Any]:
        """Stored in every checkpoint: the input spec, class names (plain values)."""

    def save_final(self, out: Path, model: nn.Module, iteration: int) -> None:
        """Write the trained weights (``model_final.pth``, ...) on rank 0."""


@contextmanager
def run_process(cfg: Any) -> Iterator[torch.device]:
    """Set up this process for a run and undo it afterwards.

    Inside the block: the device, the process group (under torchrun), deterministic mode as
    configured and the seeds (seed + rank). On exit the process group is destroyed and the
    deterministic flags are restored, so in-process callers (tests, notebooks) keep theirs.
    """
    with deterministic_mode(cfg.deterministic):
        device = dist.resolve_device(cfg.device)
        dist.init_distributed(device)
        try:
            seed_everything(cfg.seed, dist.get_rank())
            yield device
        finally:
            dist.cleanup()


def run_training(task: Task, resume: bool = False, restart: bool = False) -> dict[str, Any]:
    """Train ``task`` (a whole run, or its rest after ``--resume``); rank 0 writes the files.

    Launched by ``torchrun``, every process runs this. The run owns its ``output_dir``
    (``engine.rundir``): a folder holding another run needs ``resume`` or ``restart``.

    Returns:
        The loop's final metrics, with "eval" = the test results of the final model.

    Raises:
        UserError: bad data or settings. NonFiniteLossError / TrainingInterrupted from the
            loop (see engine.loop).
    """
    cfg = task.cfg
    out = Path(cfg.output_dir)
    with run_process(cfg) as device, claim_run_dir(out, resume, restart, dist.is_main()):
        return _train(task, out, resume, device)


def _train(task: Task, out: Path, resume: bool, device: torch.device) -> dict[str, Any]:
    """The steps of one run, inside its process set-up and its claim on ``out``.

    SIGTERM / SIGINT (see ``engine.stops``): during the set-up (nothing trained yet) a stop
    ends the run at once, in a single process; from the first iteration on the loop
    handles it; while the final files are written it waits for them.
    """
    cfg = task.cfg
    with StopOnSignal() as stop:
        run = _set_up(task, out, resume, device, stop)
        logger = MetricsLogger(out, cfg.solver.max_iter, run.start, enabled=dist.is_main(),
                               tensorboard=cfg.tensorboard)  # fmt: skip
        try:
            final = train_loop(
                run.ddp, run.optimizer, run.schedule, run.batches, task.step,
                loop_options(cfg, run.amp), start_iter=run.start, scaler=run.scaler,
                checkpointer=run.checkpointer, logger=logger,
                eval_fn=lambda: task.evaluate(run.model, device), stop=stop,
            )  # fmt: skip
        except EvaluationInterrupted as exc:
            raise EvaluationInterrupted(_trained_not_evaluated(task, out, run.model, exc)) from None
        finally:
            logger.close()
        if dist.is_main():
            task.save_final(out, run.model, cfg.solver.max_iter)
            results = final.get("eval", {})
            write_eval_results(out, results, task.headline(results), cfg.solver.max_iter,
                               MODEL_FINAL)  # fmt: skip
    return final


@dataclass
class _Parts:
    """What a run trains with, from :func:`_set_up`."""

    model: nn.Module
    ddp: nn.Module  # the model, DDP-wrapped under torchrun
    optimizer: torch.optim.SGD
    schedule: WarmupMultiStepLR
    amp: str | None
    scaler: torch.amp.GradScaler | None
    checkpointer: Checkpointer
    start: int  # finished iterations (from --resume)
    batches: Iterable[Any]


def _set_up(
    task: Task, out: Path, resume: bool, device: torch.device, stop: StopOnSignal
) -> _Parts:
    """Preflight, model, solver, checkpointer and resume, config.yaml, the training stream.

    Raises:
        TrainingInterrupted: a stop arrived meanwhile (nothing trained, nothing to save).
    """
    cfg = task.cfg
    try:
        with stop.interrupting(dist.get_world_size() == 1):
            task.preflight()
            batch = per_process_batch(cfg.solver)
            model = task.build_model(device)
            ddp = dist.wrap_ddp(model, device)
            optimizer, schedule = build_solver(cfg.solver, model)
            amp = amp_dtype(cfg.solver, device)
            scaler = make_grad_scaler(amp, device)
            checkpointer = Checkpointer(out, ddp, optimizer, schedule, scaler, meta=task.meta())
            start = _resume(checkpointer) if resume else 0
            # the training data is read before config.yaml is written: a bad data.train path
            # then leaves the folder as it was, not "holding a run" the rerun must --restart
            batches = task.train_batches(batch, start)
            if dist.is_main():
                if resume:
                    warn_changed_schedule(out / CONFIG_FILE, cfg)
                save_config(cfg, out / CONFIG_FILE)
    except StopRequested:
        raise TrainingInterrupted(
            f"stopped by {stop.signal} while setting up, before the first iteration: nothing "
            "to save (--resume starts the run again)"
        ) from None
    return _Parts(model, ddp, optimizer, schedule, amp, scaler, checkpointer, start, batches)


def _trained_not_evaluated(
    task: Task, out: Path, model: nn.Module, exc: EvaluationInterrupted
) -> str:
    """Write the final weights of a run whose final evaluation a stop cut short; returns
    the one line that says so and how to run the evaluation."""
    if dist.is_main():
        task.save_final(out, model, task.cfg.solver.max_iter)
    return (
        f"{exc}; the training is complete ({out / MODEL_FINAL}); --resume runs the evaluation again"
    )


def evaluate_checkpoint(task: Task, weights: str | list[str]) -> dict[str, Any]:
    """Score a weights file (or a list of them, if the task ensembles) on the task's test
    split; rank 0 writes ``eval_results.json`` (``"weights"``: the file, or the list).

    The output_dir is held as a run holds it (``engine.rundir.claim_eval_dir``); results
    already there are kept: ``task.cfg.output_dir`` is then set to the new folder written.

    Returns:
        The task's results (rank 0's; other ranks get theirs, possibly empty).
    """
    cfg = task.cfg
    with run_process(cfg) as device, claim_eval_dir(Path(cfg.output_dir), dist.is_main()) as out:
        cfg.output_dir = str(out)
        task.preflight()
        model, iteration = task.load_for_eval(weights, device)
        results = task.evaluate(model, device)
        if dist.is_main():
            write_eval_results(out, results, task.headline(results), iteration, weights)
        return results


def _resume(checkpointer: Checkpointer) -> int:
    """The iteration to continue from; 0 (with a warning) when there is no checkpoint yet.

    Raises:
        UserError: there are checkpoints but none of them can be read.
    """
    state = checkpointer.resume()
    if not state:
        if list_checkpoints(checkpointer.output_dir):
            raise UserError(
                f"--resume: no checkpoint in {checkpointer.output_dir} can be read (see the "
                "warnings above); --restart moves them aside and starts over"
            )
        warnings.warn(
            f"--resume: no checkpoint in {checkpointer.output_dir}; starting at 0", stacklevel=3
        )
    return int(state.get("iteration", 0))


def warn_changed_schedule(previous: Path, cfg: Any) -> None:
    """``--resume`` with other ``solver`` values than the run had: one warning naming them
    (a longer max_iter or moved steps is allowed, but should not pass without a word)."""
    if not previous.is_file():
        return
    try:
        old = yaml.safe_load(previous.read_text()).get("solver", {})
    except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return
    new = dataclasses.asdict(cfg.solver)
    changed = [
        f"solver.{k} {old[k]!r} -> {v!r}" for k, v in new.items() if k in old and old[k] != v
    ]
    if changed:
        warnings.warn(f"--resume with a changed schedule: {', '.join(changed)}", stacklevel=3)


def per_process_batch(solver: SolverConfig) -> int:
    """``solver.ims_per_batch`` is global (as in Detectron2): split it over the processes."""
    world = dist.get_world_size()
    if solver.ims_per_batch % world:
        raise UserError(
            f"solver.ims_per_batch ({solver.ims_per_batch}) is the global batch and must "
            f"be divisible by the number of processes ({world})"
        )
    return solver.ims_per_batch // world


def build_solver(
    solver: SolverConfig, model: nn.Module
) -> tuple[torch.optim.SGD, WarmupMultiStepLR]:
    """SGD with the weight-decay groups, and the warm-up + multi-step schedule."""
    optimizer = build_optimizer(
        model,
        solver.base_lr,
        solver.momentum,
        solver.weight_decay,
        solver.weight_decay_norm,
        solver.weight_decay_bias,
    )
    schedule = WarmupMultiStepLR(
        optimizer,
        solver.steps,
        solver.gamma,
        solver.warmup_iters,
        solver.warmup_factor,
        solver.warmup_method,
        solver.warmup_error,
    )
    return optimizer, schedule


def amp_dtype(solver: SolverConfig, device: torch.device) -> str | None:
    """The autocast dtype name when AMP is on and ``device`` runs it (CUDA; bf16 on a CPU
    with native bf16, see ``engine.amp.resolve_amp``), else None."""
    return resolve_amp(solver.amp_dtype if solver.amp else None, device, "solver.amp_dtype")


def loop_options(cfg: Any, amp: str | None) -> LoopOptions:
    """The loop's periods and policies from a config's ``solver``, ``test`` and run keys."""
    s = cfg.solver
    return LoopOptions(
        max_iter=s.max_iter,
        checkpoint_period=s.checkpoint_period,
        eval_period=cfg.test.eval_period,
        log_period=cfg.log_period,
        amp_dtype=amp,
        clip_grad_norm=s.clip_grad_norm,
        on_nonfinite=s.on_nonfinite,
    )
