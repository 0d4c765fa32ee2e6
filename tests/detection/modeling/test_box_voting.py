"""Box voting on hand-worked boxes, alone and inside the RoI head's detection selection."""

from __future__ import annotations

import torch

from detection.config import Config
from detection.modeling.box_voting import box_voting
from detection.modeling.build import build_model
from detection.modeling.roi_heads import ClassBoxes, select_detections

A = [0.0, 0.0, 10.0, 10.0]  # area 100
B = [0.0, 0.0, 10.0, 8.0]  # inside A, area 80: IoU 80 / 100 = 0.8
FAR = [50.0, 50.0, 60.0, 60.0]  # overlaps neither


def test_a_kept_box_becomes_the_weighted_mean_of_its_overlaps() -> None:
    boxes = torch.tensor([A, B, FAR, B])
    scores = torch.tensor([0.9, 0.1, 0.7, 0.5])
    labels = torch.tensor([1, 1, 1, 2])  # the last is another class: it does not vote for A
    kept, kept_labels = torch.tensor([A, FAR]), torch.tensor([1, 1])
    voted = box_voting(kept, kept_labels, boxes, scores, labels, iou_threshold=0.8)
    # (0.9 * A + 0.1 * B) / (0.9 + 0.1): only y2 moves, 0.9 * 10 + 0.1 * 8 = 9.8; FAR alone
    torch.testing.assert_close(voted, torch.tensor([[0.0, 0.0, 10.0, 9.8], FAR]))
    # above the pair's IoU nothing votes but the box itself
    assert torch.equal(box_voting(kept, kept_labels, boxes, scores, labels, 0.81), kept)


def test_selection_votes_after_nms_and_keeps_the_scores() -> None:
    # one candidate per RoI (the other class scores 0): (box, score, head class)
    picks = [(A, 0.9, 1), (B, 0.1, 1), (B, 0.5, 2), ([0.0, 0.0, 0.005, 5.0], 0.8, 1)]
    scores, boxes = torch.zeros(4, 3), torch.zeros(4, 3, 4)  # the last box is too thin
    for roi, (box, score, head_class) in enumerate(picks):
        scores[roi, head_class], boxes[roi, head_class] = score, torch.tensor(box)
    candidates = ClassBoxes(scores, boxes)
    plain = select_detections(candidates, 0.05, 0.3, 100, 0.01, None)
    assert torch.equal(plain.boxes, torch.tensor([A, B]))  # NMS at 0.3 drops the 0.1 box
    voted = select_detections(candidates, 0.05, 0.3, 100, 0.01, 0.5)
    torch.testing.assert_close(voted.boxes, torch.tensor([[0.0, 0.0, 10.0, 9.8], B]))
    assert torch.equal(voted.scores, plain.scores) and voted.labels.tolist() == [0, 1]


def test_config_switch_reaches_the_roi_head() -> None:
    cfg = Config()
    cfg.model.backbone.name, cfg.model.backbone.weights = "resnet18", ""
    with torch.device("meta"):
        assert build_model(cfg, load_backbone_weights=False).roi_heads.rule.box_voting_iou is None
        cfg.test.box_voting, cfg.test.box_voting_iou = True, 0.7
        assert build_model(cfg, load_backbone_weights=False).roi_heads.rule.box_voting_iou == 0.7
