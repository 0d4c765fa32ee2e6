"""Fast R-CNN sampling, losses and inference postprocessing on hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch

from detection.modeling.box_ops import BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.roi_heads import (
    SampledRoIs,
    decode_predictions,
    fast_rcnn_losses,
    sample_proposals,
    select_detections,
)
from detection.structures import Targets

CODER = BoxCoder([10.0, 10.0, 5.0, 5.0])
FG_BG = Matcher([0.0, 0.5], [-1, 0, 1])


def postprocess_detections(logits, deltas, proposals, image_sizes, coder, *rule):
    """The head's inference on given outputs: decode per image, then select."""
    decoded = decode_predictions(logits, deltas, proposals, image_sizes, coder)
    return [select_detections(candidates, *rule) for candidates in decoded]


def test_sample_proposals_adds_ground_truth_and_offsets_classes() -> None:
    gt = Targets(
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]),
        torch.tensor([0, 4]),
        torch.tensor([False, True]),  # the second is ignored: not added, not a target
    )
    proposals = torch.tensor(
        [
            [0.0, 0.0, 9.0, 10.0],  # IoU 0.9 -> class 0 -> index 1
            [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 -> background
            [50.0, 50.0, 60.0, 61.0],  # on the ignored box -> not sampled
        ]
    )
    (sampled,) = sample_proposals([proposals], [gt], FG_BG, 512, 0.25)
    assert len(sampled.boxes) == 3  # 2 foreground (incl. the added GT box) + 1 background
    assert sampled.classes.tolist() == [1, 1, 0]
    assert sorted(sampled.boxes[:2, 2].tolist()) == [9.0, 10.0]
    assert sampled.gt_boxes[:2].tolist() == [[0.0, 0.0, 10.0, 10.0]] * 2
    (no_gt,) = sample_proposals([proposals], [gt], FG_BG, 512, 0.25, add_gt_as_proposals=False)
    assert no_gt.classes.tolist() == [1, 0]


def test_sample_proposals_for_an_image_without_objects() -> None:
    empty = Targets(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
    )
    proposals = torch.tensor([[0.0, 0.0, 9.0, 10.0]] * 5)
    (sampled,) = sample_proposals([proposals], [empty], FG_BG, 3, 0.25)
    assert sampled.classes.tolist() == [0, 0, 0]


def test_fast_rcnn_losses_by_hand() -> None:
    sampled = [
        SampledRoIs(
            torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 5.0, 5.0]]),
            torch.tensor([2, 0]),
            torch.tensor([[2.0, 4.0, 22.0, 24.0], [0.0, 0.0, 0.0, 0.0]]),
        )
    ]
    logits = torch.zeros(2, 3)  # K = 2 classes + background
    deltas = torch.zeros(2, 12)
    deltas[0, 8:12] = torch.tensor([7.0, 2.0, 0.0, 0.0])  # class 2's slot: dx, dy exact
    losses = fast_rcnn_losses(logits, deltas, sampled, CODER, "smooth_l1", 1.0)
    assert losses["loss_cls"].item() == pytest.approx(math.log(3))
    # targets (7, 2, 5 ln 2, 0): only dw is off, by 3.466 > beta: 3.466 - 0.5; / 2 RoIs
    assert losses["loss_box_reg"].item() == pytest.approx((5 * math.log(2) - 0.5) / 2, rel=1e-5)


def _logits_for(probabilities: list[list[float]]) -> torch.Tensor:
    return torch.log(torch.tensor(probabilities))


def test_postprocess_threshold_nms_per_class_topk_and_clip() -> None:
    proposals = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],  # overlaps the first (IoU 0.82)
            [40.0, 40.0, 60.0, 60.0],
            [95.0, 0.0, 120.0, 10.0],  # crosses the right border (w = 100)
        ]
    )
    # columns: background, class 0, class 1
    logits = _logits_for([[0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.96, 0.02, 0.02], [0.5, 0.04, 0.46]])
    deltas = torch.zeros(4, 12)
    dets = postprocess_detections(logits, deltas, [proposals], [(50, 100)], CODER, 0.05, 0.5, 100)[
        0
    ]
    # class 0: RoI 1 (0.7) suppresses RoI 0 (0.6); class 1: RoIs 0 (0.3) and 3 (0.46) kept;
    # RoI 2 scores 0.02 everywhere: below 0.05; RoI 3 class 0 (0.04) too
    assert dets.scores.tolist() == pytest.approx([0.7, 0.46, 0.3])
    assert dets.labels.tolist() == [0, 1, 1]
    assert dets.boxes.tolist() == [
        [1.0, 0.0, 11.0, 10.0],
        [95.0, 0.0, 100.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],
    ]
    top2 = postprocess_detections(logits, deltas, [proposals], [(50, 100)], CODER, 0.05, 0.5, 2)[0]
    assert top2.scores.tolist() == pytest.approx([0.7, 0.46])
    strict = postprocess_detections(logits, deltas, [proposals], [(50, 100)], CODER, 0.5, 0.5, 9)[0]
    assert strict.scores.tolist() == pytest.approx([0.7])
    loose = postprocess_detections(logits, deltas, [proposals], [(50, 100)], CODER, 0.5, 0.9, 9)[0]
    assert loose.scores.tolist() == pytest.approx([0.7, 0.6])  # IoU 0.82 < 0.9: both kept


def test_postprocess_splits_images_and_drops_collapsed_boxes() -> None:
    proposals = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[200.0, 0.0, 220.0, 10.0]])]
    logits = _logits_for([[0.1, 0.9], [0.1, 0.9]])  # one class
    dets = postprocess_detections(
        logits, torch.zeros(2, 8), proposals, [(50, 100), (50, 100)], CODER, 0.05, 0.5, 100
    )
    assert [len(d) for d in dets] == [1, 0]  # image 2's box clips to zero width
