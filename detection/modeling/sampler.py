"""Balanced positive / negative sampling of labelled boxes for a loss (Ren et al. 2015)."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_labels(
    labels: Tensor,
    batch_size: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Pick at most `batch_size` boxes, at most `positive_fraction` of them positive.

    Positives are drawn first (up to ``int(batch_size * positive_fraction)``); negatives fill
    the rest of the batch as far as there are any. Ignored boxes (-1) are never drawn.

    Args:
        labels: (M,) in {-1, 0, 1}.
        batch_size: boxes wanted in total.
        positive_fraction: cap on the share of positives.
        generator: random source (None: torch's global one).

    Returns:
        (pos_idx, neg_idx): int64 indices into `labels`, in random order.
    """
    positive = torch.nonzero(labels == 1).squeeze(1)
    negative = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(int(batch_size * positive_fraction), positive.numel())
    num_neg = min(batch_size - num_pos, negative.numel())
    pos_perm = torch.randperm(positive.numel(), generator=generator)[:num_pos]
    neg_perm = torch.randperm(negative.numel(), generator=generator)[:num_neg]
    return positive[pos_perm.to(labels.device)], negative[neg_perm.to(labels.device)]
