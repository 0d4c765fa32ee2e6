"""Box arithmetic on hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch

from detection.modeling.box_ops import (
    DELTA_CLAMP,
    BoxCoder,
    box_area,
    box_iou,
    clip_boxes,
    large_enough,
    whole_image_box,
)


def test_area_and_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 5.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0]])
    assert box_area(b).tolist() == [100.0, 100.0, 200.0]
    iou = box_iou(a, b)
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175
    assert iou[0].tolist() == pytest.approx([25 / 175, 1.0, 0.0])
    # a zero-area box overlaps nothing (union 100 for b[1], intersection 0)
    assert iou[1].tolist() == [0.0, 0.0, 0.0]
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 3)


def test_iou_of_two_empty_boxes_is_zero_not_nan() -> None:
    empty = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou(empty, empty).item() == 0.0


def test_clip_and_large_enough() -> None:
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 30.0], [45.0, 10.0, 70.0, 12.0]])
    clipped = clip_boxes(boxes, (20, 48))  # (h, w)
    assert clipped.tolist() == [[0.0, 0.0, 48.0, 20.0], [45.0, 10.0, 48.0, 12.0]]
    assert large_enough(clipped, 2.0).tolist() == [True, True]
    assert large_enough(clipped, 2.5).tolist() == [True, False]  # 3 x 2: height too small


def test_whole_image_box_from_int_or_tensor_sizes() -> None:
    like = torch.zeros(0, 4, dtype=torch.float64)
    box = whole_image_box((20, 48), like)  # (h, w)
    assert box.dtype == torch.float64 and box.tolist() == [[0.0, 0.0, 48.0, 20.0]]
    traced = whole_image_box((torch.tensor(7), torch.tensor(9)), torch.zeros(0, 4))
    assert traced.tolist() == [[0.0, 0.0, 9.0, 7.0]]  # 0-d sizes, as in an ONNX trace


def test_encode_by_hand() -> None:
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    target = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    deltas = BoxCoder([1.0, 1.0, 1.0, 1.0]).encode(reference, target)
    assert deltas[0].tolist() == pytest.approx([0.7, 0.2, math.log(2.0), 0.0])
    weighted = BoxCoder([10.0, 10.0, 5.0, 5.0]).encode(reference, target)
    assert weighted[0].tolist() == pytest.approx([7.0, 2.0, 5 * math.log(2.0), 0.0])


def test_decode_inverts_encode_for_several_classes() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    reference = torch.cat((xy, xy + 1 + torch.rand(50, 2, generator=g) * 50), dim=1)
    xy = torch.rand(50, 2, generator=g) * 100
    target = torch.cat((xy, xy + 1 + torch.rand(50, 2, generator=g) * 50), dim=1)
    coder = BoxCoder([10.0, 10.0, 5.0, 5.0])
    deltas = coder.encode(reference, target)
    torch.testing.assert_close(coder.decode(deltas, reference), target, atol=1e-3, rtol=0)
    # (N, 4 * C): every class slot decodes against the same reference box
    two = coder.decode(torch.cat((deltas, torch.zeros_like(deltas)), dim=1), reference)
    torch.testing.assert_close(two[:, :4], target, atol=1e-3, rtol=0)
    torch.testing.assert_close(two[:, 4:], reference, atol=1e-4, rtol=0)


def test_decode_clamps_huge_sizes() -> None:
    reference = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = BoxCoder([1.0, 1.0, 1.0, 1.0]).decode(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), reference)
    # exp(log(1000/16)) * 16 = 1000 wide, centred on 8
    assert math.log(62.5) == pytest.approx(DELTA_CLAMP)
    assert boxes[0].tolist() == pytest.approx([-492.0, -492.0, 508.0, 508.0], abs=1e-3)


def test_box_coder_rejects_wrong_weights() -> None:
    with pytest.raises(ValueError, match="4 numbers"):
        BoxCoder([1.0, 1.0])
