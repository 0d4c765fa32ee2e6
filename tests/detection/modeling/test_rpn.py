"""RPN: output layout, anchor labelling, losses and proposal selection by hand."""

from __future__ import annotations

import math

import pytest
import torch

from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_ops import BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.rpn import (
    RPN,
    RPNHead,
    flatten_deltas,
    flatten_logits,
    label_and_sample_anchors,
    rpn_losses,
    select_proposals,
)
from detection.structures import ImageBatch, Targets

UNIT = BoxCoder([1.0, 1.0, 1.0, 1.0])


def test_flatten_follows_the_anchor_order() -> None:
    a_count, h, w = 3, 2, 4
    a, y, x = torch.meshgrid(torch.arange(a_count), torch.arange(h), torch.arange(w), indexing="ij")
    code = (100 * a + 10 * y + x).float()[None]  # (1, A, H, W)
    flat = flatten_logits(code)[0]
    index = (1 * w + 2) * a_count + 1  # y=1, x=2, a=1
    assert flat[index].item() == 100 + 10 + 2
    deltas = torch.stack([code[0] + k / 10 for k in range(4)], dim=1).reshape(1, 4 * a_count, h, w)
    assert flatten_deltas(deltas)[0, index].tolist() == pytest.approx([112.0, 112.1, 112.2, 112.3])


def test_label_and_sample_anchors() -> None:
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 9.0, 10.0],
            [5.0, 0.0, 15.0, 10.0],
            [50.0, 50.0, 60.0, 60.0],
        ]
    )
    target = Targets(
        torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([2]), torch.tensor([False])
    )
    empty = Targets(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
    )
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    labels, gt_boxes = label_and_sample_anchors(anchors, [target, empty], matcher, 256, 0.5)
    # IoUs 1.0, 0.9, 1/3 (ignored), 0 (negative)
    assert labels.tolist() == [[1, 1, -1, 0], [0, 0, 0, 0]]
    assert gt_boxes[0, 1].tolist() == [0.0, 0.0, 10.0, 10.0]
    # a sample of 2 with at most one positive
    labels, _ = label_and_sample_anchors(anchors, [target], matcher, 2, 0.5)
    assert sorted(labels[0].tolist()) == [-1, -1, 0, 1]


def test_rpn_losses_by_hand() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]])
    labels = torch.tensor([[1, 0, -1]], dtype=torch.int8)
    gt = torch.tensor([[[0.0, 0.0, 20.0, 10.0], [0.0] * 4, [0.0] * 4]])
    logits = torch.tensor([[0.0, 0.0, 5.0]])
    deltas = torch.zeros(1, 3, 4)
    beta = 1 / 9
    losses = rpn_losses(anchors, logits, deltas, labels, gt, UNIT, "smooth_l1", beta, 256.0)
    # BCE(0, 1) + BCE(0, 0) = 2 ln 2; the ignored anchor does not count
    assert losses["loss_rpn_cls"].item() == pytest.approx(2 * math.log(2) / 256)
    # targets (0.5, 0, ln 2, 0); both beyond beta: |d| - beta / 2
    expected = (0.5 - beta / 2) + (math.log(2) - beta / 2)
    assert losses["loss_rpn_loc"].item() == pytest.approx(expected / 256)
    l1 = rpn_losses(anchors, logits, deltas, labels, gt, UNIT, "l1", beta, 256.0)
    assert l1["loss_rpn_loc"].item() == pytest.approx((0.5 + math.log(2)) / 256)


def test_select_proposals_per_level_topk_nms_and_min_size() -> None:
    level0 = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],  # IoU 0.82 with the first: suppressed
            [30.0, 30.0, 30.5, 40.0],  # 0.5 wide: below min_size 1
            [50.0, 50.0, 70.0, 70.0],
        ]
    )
    level1 = torch.tensor([[0.0, 0.0, 10.0, 10.0], [-20.0, -20.0, 30.0, 30.0]])  # clipped
    logits = [torch.tensor([[4.0, 3.0, 5.0, -1.0]]), torch.tensor([[2.0, 1.0]])]
    deltas = [torch.zeros(1, 4, 4), torch.zeros(1, 2, 4)]
    proposals = select_proposals(
        [level0, level1], logits, deltas, [(100, 100)], UNIT,
        pre_nms_topk=3, post_nms_topk=3, nms_thresh=0.7, min_size=1.0,
    )[0]  # fmt: skip
    # level 0 keeps its top 3 (5, 4, 3): 5 is too thin, 3 is suppressed -> [box0];
    # level 1 keeps both (NMS per level: its box0 copy survives); ranked by score overall
    assert proposals.objectness.tolist() == [4.0, 2.0, 1.0]
    assert proposals.boxes.tolist() == [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 30.0, 30.0],
    ]
    top1 = select_proposals([level0, level1], logits, deltas, [(100, 100)], UNIT, 3, 1, 0.7, 1.0)
    assert top1[0].objectness.tolist() == [4.0]


def test_rpn_anchor_strides_follow_the_padded_size() -> None:
    rpn = RPN(
        RPNHead(4, 1),
        AnchorGenerator([[8.0], [16.0]], [1.0]),
        UNIT,
        Matcher([0.3, 0.7], [0, -1, 1]),
    )
    images = torch.zeros(1, 3, 96, 64)
    features = [torch.zeros(1, 4, 3, 2), torch.zeros(1, 4, 2, 1)]  # strides 32 and (48, 64)
    small, odd = rpn.anchors(images, features)
    assert small[-1].tolist() == [28.0, 60.0, 36.0, 68.0]  # centre (32, 64)
    assert odd[-1].tolist() == [-8.0, 40.0, 8.0, 56.0]  # centre (0, 48)


def test_rpn_forward_train_and_eval_counts() -> None:
    torch.manual_seed(0)
    rpn = RPN(
        RPNHead(8, 3), AnchorGenerator([[16.0, 32.0, 64.0]], [1.0]), UNIT,
        Matcher([0.3, 0.7], [0, -1, 1], True), pre_nms_topk=(50, 20), post_nms_topk=(10, 5),
    )  # fmt: skip
    images = ImageBatch(
        torch.zeros(1, 3, 64, 64), [(60, 50)], [(60, 50)], [(1.0, 1.0)], [False], [0]
    )
    features = [torch.randn(1, 8, 4, 4)]
    targets = [
        Targets(torch.tensor([[5.0, 5.0, 40.0, 40.0]]), torch.tensor([0]), torch.tensor([False]))
    ]
    proposals, losses = rpn(images, features, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"} and len(proposals[0].boxes) <= 10
    assert (proposals[0].boxes[:, 2] <= 50).all() and (proposals[0].boxes[:, 3] <= 60).all()
    rpn.eval()
    proposals, losses = rpn(images, features, None)
    assert losses == {} and 0 < len(proposals[0].boxes) <= 5
