"""Run set-up shared by `resdet pretrain` and `resdet train`: process, solver, loop options.

Both configs (PretrainConfig and Config) carry the same top-level keys (device, seed,
deterministic, log_period) and the same ``solver`` section, so these helpers take either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from backbones.errors import UserError
from detection.config import SolverConfig
from detection.engine import distributed as dist
from detection.engine.loop import LoopOptions
from detection.engine.seeding import deterministic_mode, seed_everything
from detection.engine.solver import WarmupMultiStepLR, build_optimizer


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
    """The autocast dtype name when AMP is on and the device is CUDA, else None."""
    return solver.amp_dtype if solver.amp and device.type == "cuda" else None


def loop_options(cfg: Any, eval_period: int, amp: str | None) -> LoopOptions:
    """The loop's periods and policies from a config's ``solver`` and top-level keys."""
    s = cfg.solver
    return LoopOptions(
        max_iter=s.max_iter,
        checkpoint_period=s.checkpoint_period,
        eval_period=eval_period,
        log_period=cfg.log_period,
        amp_dtype=amp,
        clip_grad_norm=s.clip_grad_norm,
        on_nonfinite=s.on_nonfinite,
    )
