"""Parameters and multiply-adds, the paper's complexity measure ("FLOPs" in Table 1).

Multiply-adds are counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions and
linear layers; norms, ReLUs and pools are not counted, as in the paper) and halved, since it
counts a multiply-add as two FLOPs. Build the model under `torch.device("meta")` to count
without allocating or computing anything.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or frozen (buffers such as FrozenBN's excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> int:
    """Multiply-adds of one forward pass of a single (1, 3, H, W) image.

    Args:
        model: any module taking (N, 3, H, W); runs in eval mode under no_grad, on the
            device of its parameters (use "meta" for a free count), and is put back in its
            previous mode.
        input_size: (H, W).

    Returns:
        Multiply-adds (FLOPs // 2), e.g. 4,089,184,256 for torchvision's ResNet-50 at 224.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, 3, *input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
