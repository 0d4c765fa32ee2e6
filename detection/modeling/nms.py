"""Non-maximum suppression that stops at the survivors it is asked for.

Every NMS of the detector keeps a fixed number of survivors: the RPN's `post_nms_topk`
proposals, the RoI head's `detections_per_image`, an ensemble's proposals per image.
torchvision suppresses among all the candidates (12,000 in the paper's RPN, 1,000 per level
in the FPN's) and the caller cuts the list. Greedy NMS decides a box from the boxes that
outscore it alone, so NMS over the m best candidates keeps exactly the first survivors of NMS
over all of them, as far as its own list goes: when it keeps at least k, its first k are the
answer. Here NMS runs over the 2k best candidates first, then twice as many, and so on. NMS
compares pairs of boxes, so a first try that succeeds costs about (2k / n)^2 of the full one.

Equal to torchvision to the index (tests/detection/modeling/test_nms.py): `nms_top_k` to
``nms(...)[:k]``, and `batched_nms_top_k` to ``batched_nms(...)[:k]`` whenever no two
scores are equal. The one difference is the order within a run of equal scores when
batched_nms works per category (above 4,000 coordinates on the CPU): it orders its
survivors with an unstable sort, this module by index. The scores, in order, are the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms


def nms_top_k(boxes: Tensor, scores: Tensor, iou_threshold: float, k: int) -> Tensor:
    """``torchvision.ops.nms(boxes, scores, iou_threshold)[:k]``, from the best boxes first.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,) higher is better.
        iou_threshold: a box goes when its IoU with a kept, better box exceeds this.
        k: survivors wanted.

    Returns:
        (min(k, survivors),) int64 indices into `boxes`, by decreasing score (ties by index).
    """
    if torch.jit.is_tracing() or scores.shape[0] <= 2 * k:
        return nms(boxes, scores, iou_threshold)[:k]
    return _first_survivors(scores, k, lambda best: nms(boxes[best], scores[best], iou_threshold))


def batched_nms_top_k(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, k: int
) -> Tensor:
    """``torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)[:k]``: NMS within
    each category, the best `k` survivors of all.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,) higher is better.
        idxs: (N,) category of each box; boxes of different categories never suppress each
            other.
        iou_threshold: a box goes when its IoU with a kept, better box of its category
            exceeds this.
        k: survivors wanted.

    Returns:
        (min(k, survivors),) int64 indices into `boxes`, by decreasing score.
    """
    if torch.jit.is_tracing() or scores.shape[0] <= 2 * k:
        return batched_nms(boxes, scores, idxs, iou_threshold)[:k]
    # batched_nms takes one of two roads: NMS per category above 4,000 coordinates on the CPU
    # (100,000 on a GPU), else one NMS over boxes offset per category. The offsets change the
    # IoUs' rounding, so the same road is taken here.
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):

        def survivors(best: Tensor) -> Tensor:
            kept, categories = [], idxs[best]
            for category in torch.unique(categories):
                members = torch.where(categories == category)[0]
                kept.append(
                    members[nms(boxes[best[members]], scores[best[members]], iou_threshold)]
                )
            return torch.cat(kept).sort()[0]  # positions in `best`: by score, ties by index

        return _first_survivors(scores, k, survivors)
    offset = boxes + (idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes)))[:, None]
    return _first_survivors(scores, k, lambda best: nms(offset[best], scores[best], iou_threshold))


def _first_survivors(scores: Tensor, k: int, survivors: Callable[[Tensor], Tensor]) -> Tensor:
    """The first `k` survivors, from NMS over the 2k, 4k, ... best candidates until one keeps k.

    Args:
        scores: (N,) of every candidate.
        k: survivors wanted.
        survivors: NMS over some candidates: their (M,) indices, by decreasing score (ties by
            index) -> the positions in those M that survive, in the same order.

    Returns:
        (min(k, survivors),) int64 indices of candidates, by decreasing score.
    """
    n = scores.shape[0]
    order = scores.sort(descending=True, stable=True)[1]  # torchvision nms's own order
    m = 2 * k
    while True:
        best = order[:m]  # for every category, the start of its own order
        keep = best[survivors(best)]
        if keep.shape[0] >= k or m >= n:
            return keep[:k]
        m *= 2
