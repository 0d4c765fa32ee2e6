"""Box voting (Gidaris & Komodakis 2015; He et al. 2016, appendix B): after per-class NMS each
kept box becomes the score-weighted mean of the same-class candidates that overlap it."""

from __future__ import annotations

from torch import Tensor

from detection.modeling.box_ops import box_iou


def box_voting(
    kept: Tensor,
    kept_labels: Tensor,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float,
) -> Tensor:
    """Replace every kept box by the weighted mean of its class's candidates around it.

    Args:
        kept: (K, 4) xyxy boxes that survived NMS (each also among ``boxes``).
        kept_labels: (K,) their classes.
        boxes: (M, 4) xyxy candidates before NMS (all classes).
        scores: (M,) their scores, the weights (positive).
        labels: (M,) their classes.
        iou_threshold: a candidate votes for a kept box when their IoU is at least this.

    Returns:
        (K, 4) voted boxes, ``sum_j s_j b_j / sum_j s_j`` over the voting candidates j (a kept
        box votes for itself, so no sum is empty).
    """
    votes = (box_iou(kept, boxes) >= iou_threshold) & (kept_labels[:, None] == labels[None])
    weights = votes.to(scores.dtype) * scores[None]  # (K, M)
    total = weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return (weights @ boxes) / total
