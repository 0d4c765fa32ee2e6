"""The box-regression loss shared by the RPN and the Fast R-CNN head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

BOX_LOSSES = ("smooth_l1", "l1")


def check_box_loss(loss_type: str) -> None:
    """Raise ValueError unless `loss_type` is one of BOX_LOSSES."""
    if loss_type not in BOX_LOSSES:
        raise ValueError(f"box loss {loss_type!r} is not known; expected one of {BOX_LOSSES}")


def box_regression_loss(pred: Tensor, target: Tensor, loss_type: str, beta: float) -> Tensor:
    """Summed box loss (the caller normalises).

    Args:
        pred: (P, 4) predicted deltas.
        target: (P, 4) target deltas.
        loss_type: "smooth_l1" (quadratic below `beta`, Girshick 2015) or "l1".
        beta: smooth-L1 transition point (1 / sigma^2 in py-faster-rcnn); 0 is L1.

    Returns:
        scalar sum over boxes and coordinates.
    """
    if loss_type == "l1" or beta == 0:
        return F.l1_loss(pred, target, reduction="sum")
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")
