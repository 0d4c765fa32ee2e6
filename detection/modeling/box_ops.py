"""Box arithmetic: areas, IoU, clipping, size filtering and the Faster R-CNN box coder.

Boxes are ``xyxy`` in continuous 0-based pixels (see detection/structures.py): a box's width is
``x2 - x1``, with no "+1" (Detectron2 and torchvision; py-faster-rcnn's integer boxes add 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# exp(dw) may not grow a box more than 1000/16 times (py-faster-rcnn, Detectron2, torchvision)
DELTA_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: Tensor) -> Tensor:
    """Areas of boxes: (N, 4) xyxy -> (N,)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.

    Returns:
        (N, M) IoU; 0 where the union is empty.
    """
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip boxes to an image: x to [0, w], y to [0, h].

    Args:
        boxes: (..., 4) xyxy.
        image_size: (h, w).

    Returns:
        (..., 4) clipped copy.
    """
    h, w = image_size
    x = boxes[..., 0::2].clamp(min=0, max=w)
    y = boxes[..., 1::2].clamp(min=0, max=h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def whole_image_box(image_size: tuple[int, int], like: Tensor) -> Tensor:
    """(1, 4) xyxy [0, 0, w, h] of an (h, w) image, in `like`'s dtype and device.

    An infinite box clipped to the image, so `image_size` may hold the traced 0-d tensors of
    an ONNX export (the graph keeps the size dynamic).
    """
    return clip_boxes(like.new_tensor([[0.0, 0.0, math.inf, math.inf]]), image_size)


def large_enough(boxes: Tensor, min_size: float) -> Tensor:
    """Mask of boxes whose width and height are both at least `min_size`: (N, 4) -> (N,) bool."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size)


class BoxCoder:
    """Encodes a box relative to a reference box as deltas (dx, dy, dw, dh), and back.

    ``dx = wx * (gx - rx) / rw``, ``dw = ww * log(gw / rw)`` (centres and sizes); decoding
    clamps ``dw / ww`` and ``dh / wh`` at log(1000 / 16) so no box explodes.

    Args:
        weights: (wx, wy, ww, wh): (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for Fast R-CNN.
        clamp: upper bound of the scaled dw, dh before exp.
    """

    def __init__(self, weights: Sequence[float], clamp: float = DELTA_CLAMP) -> None:
        if len(weights) != 4:
            raise ValueError(f"box coder weights must be 4 numbers, got {list(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas that turn `reference` into `target`: (N, 4), (N, 4) -> (N, 4)."""
        wx, wy, ww, wh = self.weights
        ref_w = reference[:, 2] - reference[:, 0]
        ref_h = reference[:, 3] - reference[:, 1]
        ref_x = reference[:, 0] + 0.5 * ref_w
        ref_y = reference[:, 1] + 0.5 * ref_h
        gt_w = target[:, 2] - target[:, 0]
        gt_h = target[:, 3] - target[:, 1]
        gt_x = target[:, 0] + 0.5 * gt_w
        gt_y = target[:, 1] + 0.5 * gt_h
        dx = wx * (gt_x - ref_x) / ref_w
        dy = wy * (gt_y - ref_y) / ref_h
        dw = ww * torch.log(gt_w / ref_w)
        dh = wh * torch.log(gt_h / ref_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Apply deltas to reference boxes.

        Args:
            deltas: (N, 4 * C) deltas, C boxes per reference (C = 1, or classes for Fast R-CNN).
            reference: (N, 4) xyxy.

        Returns:
            (N, 4 * C) xyxy boxes, laid out like `deltas`.
        """
        wx, wy, ww, wh = self.weights
        reference = reference.to(deltas.dtype)
        widths = (reference[:, 2] - reference[:, 0])[:, None]  # (N, 1) broadcasts over C
        heights = (reference[:, 3] - reference[:, 1])[:, None]
        ctr_x = reference[:, 0, None] + 0.5 * widths
        ctr_y = reference[:, 1, None] + 0.5 * heights
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy  # (N, C)
        dw = (deltas[:, 2::4] / ww).clamp(max=self.clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.clamp)
        x = dx * widths + ctr_x
        y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        boxes = torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), dim=2)  # (N, C, 4)
        return boxes.reshape(deltas.shape)
