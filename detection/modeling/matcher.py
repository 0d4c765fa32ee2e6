"""Matching predicted boxes (anchors, proposals) to ground truth by IoU.

Labels: 1 positive (foreground), 0 negative (background), -1 ignored (not sampled, no loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from detection.modeling.box_ops import box_iou

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


class Matcher:
    """Assigns each box the ground truth it overlaps most and labels it by IoU intervals.

    With ``thresholds=[0.3, 0.7]`` and ``labels=[0, -1, 1]`` (the RPN): IoU < 0.3 negative,
    0.3 <= IoU < 0.7 ignored, IoU >= 0.7 positive. With ``[0.0, 0.5]`` and ``[-1, 0, 1]``
    (Fast R-CNN): background in [0.0, 0.5), foreground from 0.5.

    Args:
        thresholds: increasing IoU boundaries; interval i is [t_{i-1}, t_i).
        labels: one label per interval (len(thresholds) + 1), each in {-1, 0, 1}.
        allow_low_quality_matches: also make positive, for every ground truth, the boxes
            with its highest IoU (ties included), even below the last threshold, so that every
            object has a positive (Ren et al.: "the anchor with the highest IoU").
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ) -> None:
        if list(thresholds) != sorted(thresholds):
            raise ValueError(f"matcher thresholds must increase, got {list(thresholds)}")
        if len(labels) != len(thresholds) + 1 or not set(labels) <= {-1, 0, 1}:
            raise ValueError(f"matcher needs {len(thresholds) + 1} labels in -1/0/1, got {labels}")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> tuple[Tensor, Tensor]:
        """Match by an IoU matrix.

        Args:
            iou: (G, M) IoU between G ground-truth and M predicted boxes; G >= 1.

        Returns:
            matches: (M,) int64 index of the best ground truth of each box.
            labels: (M,) int8 in {-1, 0, 1}.
        """
        best_iou, matches = iou.max(dim=0)
        labels = matches.new_full(matches.shape, 1, dtype=torch.int8)
        bounds = zip(self.thresholds[:-1], self.thresholds[1:])
        for label, (low, high) in zip(self.labels, bounds):
            labels[(best_iou >= low) & (best_iou < high)] = label
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1, keepdim=True).values  # (G, 1)
            # boxes that are some object's best match; an object overlapping nothing gets none
            is_best = ((iou == best_per_gt) & (best_per_gt > 0)).any(dim=0)
            labels[is_best] = POSITIVE
        return matches, labels


def match_boxes(
    matcher: Matcher, gt_boxes: Tensor, gt_ignore: Tensor, boxes: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Match boxes to the non-ignored ground truth; boxes in an ignore zone get label -1.

    A box lies in an ignore zone when an ignored ground-truth box (VOC difficult, COCO crowd)
    overlaps it more than any regular one does: it is then neither positive nor negative.

    Args:
        matcher: the IoU rule.
        gt_boxes: (G, 4) xyxy ground truth.
        gt_ignore: (G,) bool.
        boxes: (M, 4) xyxy anchors or proposals.

    Returns:
        matches: (M,) int64 index into `gt_boxes` (0 where there is no regular ground truth).
        labels: (M,) int8 in {-1, 0, 1}; all 0 (background) for an image without objects.
        matched: (M, 4) the matched ground-truth box of every box (zeros without objects;
            meaningful on positives only).
    """
    iou = box_iou(gt_boxes, boxes)  # (G, M)
    regular = ~gt_ignore
    if regular.any():
        matches, labels = matcher(iou[regular])
        matches = torch.nonzero(regular).squeeze(1)[matches]  # back to indices into gt_boxes
        best_regular = iou[regular].max(dim=0).values
    else:
        matches = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
        labels = torch.zeros(len(boxes), dtype=torch.int8, device=boxes.device)
        best_regular = torch.zeros(len(boxes), device=boxes.device)
    if gt_ignore.any():
        best_ignored = iou[gt_ignore].max(dim=0).values
        labels[(best_ignored > best_regular) & (best_ignored > 0)] = IGNORE
    matched = gt_boxes[matches] if len(gt_boxes) else torch.zeros_like(boxes)
    return matches, labels, matched
