"""Shared helpers for the backbone tests: random norm statistics, small models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from backbones.layers import BATCH_NORMS


@torch.no_grad()
def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN / FrozenBN random affine and statistics, kept near 1 so deep nets stay O(1).

    Freshly initialised norms are the identity (mean 0, var 1, weight 1, bias 0), which would
    hide a mix-up of weight/bias/mean/var in any loader or folding code.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            c = m.running_mean.shape[0]
            m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return model


@pytest.fixture
def randomize_norms() -> Callable[..., nn.Module]:
    """`randomize_norms(model, seed=0)`: random norm affine + statistics, in place."""
    return _randomize_norms


@pytest.fixture
def images() -> torch.Tensor:
    """(2, 3, 64, 64) random images, fixed seed."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
