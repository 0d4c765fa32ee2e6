"""Test-time views of a batch: multi-scale testing and horizontal flip (He et al. 2016, app. B).

Multi-scale testing, after SPP-net (He et al. 2014) as the paper describes it: the shared
feature maps are computed on an image pyramid (``test.pyramid_sizes``, the paper's shorter
sides {200, 400, 600, 800, 1000}); the proposals stay those of the test scale; each RoI is
pooled on the two adjacent pyramid scales between which its size crosses
``test.pyramid_roi_size`` (the size the per-RoI head saw in pre-training: 224), both go
through the box head, and the two region features are merged by max-out (element-wise
maximum) before the classifier and box regressor.

Horizontal flip (``test.flip``): the same RoIs are scored on the mirrored images (every
pyramid scale mirrored) and the two predictions are averaged per (RoI, class), boxes mapped
back first. Flipping a tensor is exact: no resampling.

Coordinates: RoIs and candidates are in the test scale's network-input pixels ("main");
a view's pixels are ``main * ratio`` per axis, mirrored as ``x -> w_view - x`` when flipped.
Box deltas are relative to the RoI's own size, so a view's deltas decode against the main
RoI (mirrored with it when the view is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from detection.modeling.box_ops import box_area, clip_boxes
from detection.modeling.roi_heads import ClassBoxes, ROIHeads, Scorer, decode_predictions
from detection.structures import ImageBatch


@dataclass
class View:
    """The batch as the RoI head sees it at one pyramid scale (mirrored or not)."""

    maps: list[Tensor]  # the RoI head's in_features, (N, C, H_l, W_l) each
    image_sizes: list[tuple[int, int]]  # per image (h, w) of this view, before padding
    ratios: list[tuple[float, float]]  # per image (ry, rx): view pixels = main pixels * ratio


def mirror_boxes(boxes: Tensor, width: float) -> Tensor:
    """(..., 4) xyxy -> the same boxes in the horizontally mirrored image of that width."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((width - x2, y1, width - x1, y2), dim=-1)


def mirror_images(images: ImageBatch) -> ImageBatch:
    """Each image mirrored within its own (unpadded) width; the padding stays bottom/right."""
    tensor = images.tensor.clone()
    for i, (h, w) in enumerate(images.image_sizes):
        tensor[i, :, :h, :w] = images.tensor[i, :, :h, :w].flip(-1)
    return ImageBatch(
        tensor, images.image_sizes, images.original_sizes, images.scales, images.flipped,
        images.image_ids, [mirror_images(level) for level in images.pyramid],
    )  # fmt: skip


def adjacent_scales(sides: Tensor, target: float) -> tuple[Tensor, Tensor]:
    """The two adjacent pyramid scales around ``target`` for each RoI.

    Args:
        sides: (R, S) each RoI's size (sqrt of area) at each scale, scales ascending.
        target: the size sought.

    Returns:
        (low, high), each (R,) int64 scale indices with high = low + 1 (both 0 when S == 1):
        the pair whose sizes bracket ``target``, else the two smallest (RoI still too big at
        the smallest scale) or the two largest (too small at the largest).
    """
    above = (sides < target).sum(dim=1)  # scales at which the RoI is still smaller
    low = (above - 1).clamp(min=0, max=max(sides.shape[1] - 2, 0))
    return low, (low + 1).clamp(max=sides.shape[1] - 1)


def pyramid_features(
    heads: ROIHeads, views: Sequence[View], rois: Sequence[Tensor], roi_size: float
) -> Tensor:
    """Max-out of each RoI's region features at its two adjacent scales (see the module doc).

    Args:
        heads: the RoI head (its pooler and box head).
        views: the pyramid, scales ascending, none mirrored.
        rois: per image (R_i, 4) xyxy, main pixels.
        roi_size: ``test.pyramid_roi_size``.

    Returns:
        (R, D) region features, RoIs of all images in order.
    """
    if len(views) == 1:  # one scale: nothing to choose or merge
        (view,) = views
        return heads.box_features(view.maps, _in_view(rois, view), view.image_sizes)
    side = box_area(torch.cat(list(rois))).clamp(min=0).sqrt()  # (R,)
    counts = torch.tensor([len(r) for r in rois], device=side.device)
    image_of = torch.repeat_interleave(torch.arange(len(rois), device=side.device), counts)
    # a view's ratio is near-isotropic (rounded sizes): its size scales by sqrt(ry rx)
    scale = side.new_tensor([[(ry * rx) ** 0.5 for ry, rx in v.ratios] for v in views])  # (S, N)
    low, high = adjacent_scales(side[:, None] * scale[:, image_of].T, roi_size)
    merged: Tensor | None = None
    for s, view in enumerate(views):  # one box-head pass per scale, over the RoIs it serves
        chosen = (low == s) | (high == s)
        if not chosen.any():
            continue
        boxes = _in_view([r[chosen[image_of == i]] for i, r in enumerate(rois)], view)
        part = heads.box_features(view.maps, boxes, view.image_sizes)
        if merged is None:  # -inf where a scale does not serve a RoI: the max takes the other
            merged = part.new_full((len(side), part.shape[1]), float("-inf"))
        merged[chosen] = torch.maximum(merged[chosen], part)
    assert merged is not None  # every RoI is served by two scales
    return merged


def _in_view(rois: Sequence[Tensor], view: View) -> list[Tensor]:
    """Per image (R_i, 4) main-pixel boxes -> the same boxes in ``view``'s pixels."""
    return [r * r.new_tensor([rx, ry, rx, ry]) for r, (ry, rx) in zip(rois, view.ratios)]


def view_scorer(
    heads: ROIHeads,
    views: Sequence[View],
    mirrored: Sequence[View] | None,
    image_sizes: Sequence[tuple[int, int]],
    roi_size: float,
) -> Scorer:
    """Scores RoIs on a pyramid (a single view: plain single-scale scoring) and, with
    ``mirrored`` views, on the mirrored pyramid too, averaging the two.

    Args:
        heads: the RoI head.
        views: the pyramid, scales ascending.
        mirrored: the same views of the mirrored images, or None for no flip.
        image_sizes: per image (h, w) of the main (test) scale: clipping and mirroring.
        roi_size: ``test.pyramid_roi_size``.
    """

    def score(pyramid: Sequence[View], rois: Sequence[Tensor]) -> list[ClassBoxes]:
        features = pyramid_features(heads, pyramid, rois, roi_size)
        logits, deltas = heads.predictor(features)
        # decoded against the main RoIs (mirrored ones for a mirrored pyramid)
        return decode_predictions(logits, deltas, rois, image_sizes, heads.box_coder)

    def scorer(rois: Sequence[Tensor]) -> list[ClassBoxes]:
        plain = score(views, rois)
        if mirrored is None:
            return plain
        widths = [w for _, w in image_sizes]
        flipped = score(mirrored, [mirror_boxes(r, w) for r, w in zip(rois, widths)])
        return [
            ClassBoxes.mean([p, ClassBoxes(f.scores, clip_boxes(mirror_boxes(f.boxes, w), size))])
            for p, f, w, size in zip(plain, flipped, widths, image_sizes)
        ]

    return scorer
