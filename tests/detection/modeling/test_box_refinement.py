"""Box refinement (appendix B) on a hand-worked head: each RoI is scored twice, the union of
both passes goes through NMS (and box voting)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from detection.modeling.box_ops import BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.roi_heads import ClassBoxes, DetectionRule, ROIHeads
from detection.structures import ImageBatch, Proposals


class BoxesAsFeatures(nn.Module):
    """A stand-in pooler: the RoI's own coordinates are its feature, (R, 4)."""

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        return torch.cat(boxes)


class ShiftRight(nn.Module):
    """One class: probability (x1 + 1) / (x1 + 2) and a regression moving the box 1 px right."""

    def forward(self, boxes: Tensor) -> tuple[Tensor, Tensor]:
        x1, width = boxes[:, 0], boxes[:, 2] - boxes[:, 0]
        logits = torch.stack([torch.zeros_like(x1), torch.log(x1 + 1)], dim=1)
        deltas = torch.zeros(len(boxes), 8)
        deltas[:, 4] = 10.0 / width  # dx = wx (cx' - cx) / w with wx = 10: cx' = cx + 1
        return logits, deltas


def _head(box_refinement: bool, box_voting_iou: float | None = None) -> ROIHeads:
    return ROIHeads(
        ["c4"], BoxesAsFeatures(), nn.Identity(), ShiftRight(),  # type: ignore[arg-type]
        BoxCoder([10.0, 10.0, 5.0, 5.0]), Matcher([0.0, 0.5], [-1, 0, 1]),
        rule=DetectionRule(0.05, 0.3, box_voting_iou=box_voting_iou),
        box_refinement=box_refinement,
    )  # fmt: skip


def _detect(head: ROIHeads) -> tuple[list[float], list[float]]:
    images = ImageBatch(
        torch.zeros(1, 3, 32, 64), [(32, 64)], [(32, 64)], [(1.0, 1.0)], [False], [0]
    )
    proposals = [Proposals(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(1))]
    detections, _ = head(images, {"c4": torch.zeros(1, 1, 2, 4)}, proposals, detect=True)
    assert detections is not None
    (boxes,) = detections[0].boxes.tolist()  # one detection
    return boxes, detections[0].scores.tolist()


def test_without_refinement_the_regressed_box_is_the_detection() -> None:
    boxes, scores = _detect(_head(False))
    assert boxes == pytest.approx([1.0, 0.0, 11.0, 10.0]) and scores == pytest.approx([0.5])


def test_refinement_scores_the_regressed_box_again_and_nms_picks_from_both() -> None:
    # pass 1 on x1 = 0: p = 1/2, box [1, 0, 11, 10]; pass 2 on that box: p = 2/3, box
    # [2, 0, 12, 10]; their IoU 9/11 > 0.3, so NMS keeps the refined one
    boxes, scores = _detect(_head(True))
    assert boxes == pytest.approx([2.0, 0.0, 12.0, 10.0]) and scores == pytest.approx([2 / 3])


def test_refinement_then_box_voting_averages_both_passes() -> None:
    # (1/2 * 1 + 2/3 * 2) / (1/2 + 2/3) = 11/7 for x1, 11/7 + 10 for x2
    boxes, scores = _detect(_head(True, box_voting_iou=0.5))
    x1 = 11 / 7
    assert boxes == pytest.approx([x1, 0.0, x1 + 10, 10.0]) and scores == pytest.approx([2 / 3])


def test_union_and_best_boxes() -> None:
    first = ClassBoxes(torch.tensor([[0.2, 0.3, 0.5]]), torch.arange(12.0).view(1, 3, 4))
    second = ClassBoxes(torch.tensor([[0.1, 0.8, 0.1]]), -torch.arange(12.0).view(1, 3, 4))
    both = ClassBoxes.union([first, second])
    assert both.scores.shape == (2, 3) and both.boxes.shape == (2, 3, 4)
    # RoI 0's best object class is 2 (0.5), RoI 1's is 1 (0.8); background never counts
    assert both.best_boxes().tolist() == [[8.0, 9.0, 10.0, 11.0], [-4.0, -5.0, -6.0, -7.0]]
    assert math.isclose(float(both.scores.sum()), 2.0)
