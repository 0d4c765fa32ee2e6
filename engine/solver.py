"""SGD with per-group weight decay, and the warm-up x multi-step learning-rate schedule.

The schedule is a plain object with ``state_dict`` / ``load_state_dict`` (checkpointed with
the run) rather than a ``torch.optim.lr_scheduler`` subclass, because one warm-up mode ends on
a training-error signal the loop reports, not on an iteration count.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

# the metric a step function reports for warm-up "until_error" (fraction of wrong predictions)
TRAIN_ERROR_KEY = "train_error"
WARMUP_METHODS = ("linear", "constant", "until_error")

# (a frozen BN holds buffers, not parameters: the optimizer never sees it)
_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def param_groups(
    model: nn.Module, weight_decay: float, weight_decay_norm: float, weight_decay_bias: float
) -> list[dict[str, Any]]:
    """Split the trainable parameters into groups by weight decay.

    A parameter of a normalisation layer (its weight and its bias) takes ``weight_decay_norm``;
    any other bias takes ``weight_decay_bias``; everything else ``weight_decay``. Frozen
    parameters (``requires_grad=False``) are left out. Groups with the same decay are merged.

    Returns:
        Param groups for ``torch.optim``: dicts with ``params``, ``weight_decay`` and ``name``
        ("decay", "norm", "bias"), in that order, empty groups dropped.
    """
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "norm": [], "bias": []}
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))  # shared parameters go into one group only
            if isinstance(module, _NORM_TYPES):
                groups["norm"].append(param)
            elif name == "bias":
                groups["bias"].append(param)
            else:
                groups["decay"].append(param)
    decay = {"decay": weight_decay, "norm": weight_decay_norm, "bias": weight_decay_bias}
    return [
        {"params": params, "weight_decay": decay[name], "name": name}
        for name, params in groups.items()
        if params
    ]


def build_optimizer(
    model: nn.Module,
    base_lr: float,
    momentum: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_bias: float,
) -> torch.optim.SGD:
    """SGD with momentum and the weight-decay groups of :func:`param_groups`."""
    groups = param_groups(model, weight_decay, weight_decay_norm, weight_decay_bias)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=base_lr, momentum=momentum)


class WarmupMultiStepLR:
    """lr(i) = base_lr x warm-up factor(i) x gamma ** (number of steps <= i).

    ``i`` counts finished iterations, so the first update uses lr(0). Warm-up:
    - ``linear``: factor ramps from ``warmup_factor`` at i=0 to 1 at ``warmup_iters``;
    - ``constant``: ``warmup_factor`` for i < ``warmup_iters``, then 1;
    - ``until_error``: ``warmup_factor`` until the reported training error first falls below
      ``warmup_error`` (the paper's ResNet-110: lr 0.01 until training error < 80%), then 1
      for good; ``warmup_iters`` > 0 caps its length, 0 leaves it uncapped.

    Args:
        optimizer: its groups' current ``lr`` is taken as their base lr.
        steps: iterations at which the lr is multiplied by ``gamma`` (ascending).
        gamma: decay factor.
        warmup_iters, warmup_factor, warmup_method, warmup_error: see above.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_factor: float = 0.001,
        warmup_method: str = "linear",
        warmup_error: float = 0.8,
    ) -> None:
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"warmup_method {warmup_method!r}: expected one of {WARMUP_METHODS}")
        if list(steps) != sorted(steps):
            raise ValueError(f"steps must be ascending, got {list(steps)}")
        self.optimizer = optimizer
        self.steps = list(steps)
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.warmup_method = warmup_method
        self.warmup_error = warmup_error
        self.base_lrs = [
            group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups
        ]
        self.iteration = 0
        self.error_reached = False  # until_error: the training error went below warmup_error
        self._apply()

    def warmup(self, iteration: int) -> float:
        """The warm-up multiplier at ``iteration`` (1.0 once warm-up is over)."""
        if self.warmup_method == "until_error":
            capped = self.warmup_iters > 0 and iteration >= self.warmup_iters
            return 1.0 if self.error_reached or capped else self.warmup_factor
        if iteration >= self.warmup_iters:
            return 1.0
        if self.warmup_method == "constant":
            return self.warmup_factor
        alpha = iteration / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha

    def factor(self, iteration: int) -> float:
        """lr / base_lr at ``iteration``."""
        return self.warmup(iteration) * self.gamma ** bisect.bisect_right(self.steps, iteration)

    def get_lr(self) -> list[float]:
        """Current lr of every param group."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, metrics: Mapping[str, float] | None = None) -> None:
        """Count one finished iteration and set the lr of the next.

        Args:
            metrics: this iteration's scalars, the same on every rank; ``until_error`` reads
                ``metrics[TRAIN_ERROR_KEY]`` when present.
        """
        if self.warmup_method == "until_error" and metrics and TRAIN_ERROR_KEY in metrics:
            self.error_reached |= metrics[TRAIN_ERROR_KEY] < self.warmup_error
        self.iteration += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.factor(self.iteration)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        """The position in the schedule (the settings come from the config)."""
        return {"iteration": self.iteration, "error_reached": self.error_reached}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the position and set the optimizer's lr accordingly."""
        self.iteration = int(state["iteration"])
        self.error_reached = bool(state["error_reached"])
        self._apply()
