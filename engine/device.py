"""Placing a model on its device: what training and inference both do to a fresh model."""

from __future__ import annotations

import torch
from torch import nn


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device``; channels_last memory format if asked for."""
    if channels_last:
        return model.to(device).to(memory_format=torch.channels_last)
    return model.to(device)
