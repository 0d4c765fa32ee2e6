"""RoI feature pooling (torchvision.ops roi_pool / roi_align), one map or an FPN pyramid.

The CPU kernels around torchvision's (RoIs in threads, layout copies, training's RoIAlign
with a GEMM backward) are :mod:`detection.modeling.roi_cpu`; they give the same numbers
(the backward to float rounding).

With several maps each RoI is pooled from the level that the canonical mapping assigns it
(Lin et al. 2017, Eq. 1): ``k = floor(k0 + log2(sqrt(w * h) / 224))``, clamped to the pyramid.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from detection.modeling.box_ops import box_area
from detection.modeling.roi_cpu import TrainingRoIAlign, float32_nchw, in_parallel_chunks

POOLER_TYPES = ("roi_pool", "roi_align")


def assign_levels(
    boxes: Tensor,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> Tensor:
    """Pyramid level of each box, relative to `min_level`.

    Args:
        boxes: (R, 4) xyxy input pixels.
        min_level: finest level (2 for P2).
        max_level: coarsest level (5 for P5).
        canonical_size: box size mapped to `canonical_level` (ImageNet's 224).
        canonical_level: its level.

    Returns:
        (R,) int64 in [0, max_level - min_level].
    """
    sizes = torch.sqrt(box_area(boxes))
    # the 1e-6 keeps exact powers of two on the upper level despite rounding (torchvision)
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size) + 1e-6)
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


def boxes_to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per image (R_i, 4) boxes -> (sum R_i, 5) rows (image index, x1, y1, x2, y2)."""
    rois = [torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rois)


class ROIPooler(nn.Module):
    """Pools a fixed-size feature for every box from one or several feature maps.

    Args:
        output_size: side of the pooled feature (7 or 14).
        strides: stride of each input map, finest first (e.g. [16] or [4, 8, 16, 32]);
            with several maps they must be consecutive powers of two.
        pooler_type: "roi_pool" (Fast R-CNN's max pooling) or "roi_align".
        sampling_ratio: RoIAlign sample points per bin side (0 = adaptive).
        aligned: RoIAlign's half-pixel shift (False reproduces torchvision's detectors).
        canonical_size: see `assign_levels`.
        canonical_level: see `assign_levels`.
    """

    def __init__(
        self,
        output_size: int,
        strides: Sequence[int],
        pooler_type: str = "roi_align",
        sampling_ratio: int = 0,
        aligned: bool = True,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(f"pooler {pooler_type!r} is not known; expected one of {POOLER_TYPES}")
        levels = [round(math.log2(s)) for s in strides]
        if any(2**k != s for k, s in zip(levels, strides)) or levels != list(
            range(levels[0], levels[0] + len(levels))
        ):
            raise ValueError(f"pooler strides must be consecutive powers of two, got {strides}")
        self.output_size = output_size
        self.scales = [1.0 / s for s in strides]
        self.min_level, self.max_level = levels[0], levels[-1]
        self.pooler_type = pooler_type
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level

    def pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        """One map: (N, C, H, W), (R, 5) -> (R, C, S, S) float32.

        The kernels want float32 NCHW: a bf16 / fp16 or channels_last map (autocast, fast
        paths) is converted here in one copy (roi_pool has no autocast rule of its own).
        """
        if self.pooler_type == "roi_align" and TrainingRoIAlign.applies(feature, rois):
            args = (scale, self.output_size, self.sampling_ratio, self.aligned)
            pooled = TrainingRoIAlign.apply(feature, rois, *args)
            assert isinstance(pooled, Tensor)
            return pooled
        feature = float32_nchw(feature)
        size = (self.output_size, self.output_size)
        if self.pooler_type == "roi_pool":
            kernel = functools.partial(roi_pool, feature, output_size=size, spatial_scale=scale)
        else:
            kernel = functools.partial(
                roi_align, feature, output_size=size, spatial_scale=scale,
                sampling_ratio=self.sampling_ratio, aligned=self.aligned,
            )  # fmt: skip
        return in_parallel_chunks(kernel, rois)

    def forward(self, features: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        """Pool every box from its map.

        Args:
            features: maps, finest first, each (N, C, H_l, W_l).
            boxes: per image, (R_i, 4) xyxy input pixels.

        Returns:
            (sum R_i, C, S, S), boxes in order.
        """
        rois = boxes_to_rois(boxes)  # float32 even under autocast: coordinates need it
        if len(features) == 1:
            return self.pool(features[0], rois, self.scales[0])
        levels = assign_levels(
            rois[:, 1:], self.min_level, self.max_level, self.canonical_size, self.canonical_level
        )
        channels, size = features[0].shape[1], self.output_size
        out = features[0].new_zeros((rois.shape[0], channels, size, size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.nonzero(levels == level).squeeze(1)
            pooled = self.pool(feature, rois[index], scale).to(out.dtype)
            # a scatter, not out[index] = pooled: the ONNX export of that index_put fixes the
            # update's shape when the example has one RoI on a level, and fails on 0 or 2+
            out.scatter_(0, index.view(-1, 1, 1, 1).expand_as(pooled), pooled)
        return out
