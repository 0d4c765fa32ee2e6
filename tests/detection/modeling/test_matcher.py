"""Matcher and ignore zones on hand-worked IoU matrices."""

from __future__ import annotations

import pytest
import torch

from detection.modeling.matcher import Matcher, match_boxes


def test_rpn_thresholds_by_hand() -> None:
    iou = torch.tensor(
        [
            [0.80, 0.50, 0.10, 0.00, 0.30],
            [0.10, 0.65, 0.29, 0.00, 0.70],
        ]
    )
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(iou)
    assert matches.tolist() == [0, 1, 1, 0, 1]
    # 0.8 pos; 0.65 ignored; 0.29 neg; 0.0 neg; 0.70 pos (>= high)
    assert labels.tolist() == [1, -1, 0, 0, 1]


def test_low_quality_matches_make_each_objects_best_positive() -> None:
    iou = torch.tensor(
        [
            [0.40, 0.40, 0.20, 0.00],  # best 0.40, a tie: both positive
            [0.05, 0.10, 0.25, 0.00],  # best 0.25 (below 0.3): still positive
            [0.00, 0.00, 0.00, 0.00],  # overlaps nothing: gets no positive
        ]
    )
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matches, labels = matcher(iou)
    assert labels.tolist() == [1, 1, 1, 0]
    assert matches.tolist()[:3] == [0, 0, 1]
    _, strict = Matcher([0.3, 0.7], [0, -1, 1])(iou)
    assert strict.tolist() == [-1, -1, 0, 0]


def test_fast_rcnn_intervals() -> None:
    iou = torch.tensor([[0.05, 0.15, 0.5, 0.49]])
    _, labels = Matcher([0.1, 0.5], [-1, 0, 1])(iou)
    assert labels.tolist() == [-1, 0, 1, 0]


def test_matcher_validates_arguments() -> None:
    with pytest.raises(ValueError, match="increase"):
        Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match="labels"):
        Matcher([0.3, 0.7], [0, 1])


def test_ignore_zone() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    ignore = torch.tensor([False, True])
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # on the regular object: positive
            [20.0, 0.0, 30.0, 10.0],  # on the ignored object: ignored, not positive
            [21.0, 0.0, 31.0, 10.0],  # mostly on the ignored one (IoU 0.82): ignored
            [50.0, 50.0, 60.0, 60.0],  # background: negative
            [8.0, 0.0, 22.0, 10.0],  # IoU 2/22 with each object: regular wins the tie: negative
        ]
    )
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matches, labels, matched = match_boxes(matcher, gt, ignore, boxes)
    assert labels.tolist() == [1, -1, -1, 0, 0]
    assert matches.tolist() == [0, 0, 0, 0, 0]  # indices into all GT: the regular one
    assert torch.equal(matched, gt[[0, 0, 0, 0, 0]])


def test_only_ignored_ground_truth() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0]])
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    _, labels, _ = match_boxes(matcher, gt, torch.tensor([True]), boxes)
    assert labels.tolist() == [-1, 0]


def test_image_without_objects_is_all_background() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0]])
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matches, labels, matched = match_boxes(
        matcher, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.bool), boxes
    )
    assert matches.tolist() == [0, 0] and labels.tolist() == [0, 0]
    assert torch.equal(matched, torch.zeros((2, 4)))
