"""RoI feature pooling (torchvision.ops roi_pool / roi_align), one map or an FPN pyramid.

With several maps each RoI is pooled from the level that the canonical mapping assigns it
(Lin et al. 2017, Eq. 1): ``k = floor(k0 + log2(sqrt(w * h) / 224))``, clamped to the pyramid.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from backbones.fused import being_recorded
from detection.modeling.box_ops import box_area

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


def in_parallel_chunks(kernel: Callable[[Tensor], Tensor], rois: Tensor) -> Tensor:
    """``kernel(rois)``, at CPU inference split over torch's intra-op thread count.

    torchvision's CPU RoI kernels run on one thread; each RoI is pooled on its own, so
    pooling chunks of RoIs in parallel (Python threads: the op releases the GIL) and
    concatenating gives the same tensor, bit for bit. Training (autograd), CUDA, tracing
    (the ONNX export) and small RoI counts take the plain call.
    """
    threads = torch.get_num_threads()
    plain = (
        rois.device.type != "cpu" or threads < 2 or len(rois) < MIN_ROIS_TO_SPLIT
        or torch.is_grad_enabled() or being_recorded()
    )  # fmt: skip
    if plain:
        return kernel(rois)
    inference = torch.is_inference_mode_enabled()

    def pool(chunk: Tensor) -> Tensor:
        with torch.inference_mode(inference), torch.no_grad():  # grad modes are per thread
            return kernel(chunk)

    return torch.cat(list(_executor(threads).map(pool, rois.tensor_split(threads))))


MIN_ROIS_TO_SPLIT = 64  # fewer RoIs: a thread hand-off would cost more than it saves


@functools.cache
def _executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="roi-pool")


def float32_nchw(feature: Tensor) -> Tensor:
    """(N, C, H, W) in any dtype and memory format -> the same values, float32, NCHW-contiguous.

    An fp32 channels_last map is, per image, the transpose of an (H*W, C) matrix: PyTorch
    copies a 2-D transpose with its cache-blocked kernel, 2x faster than the general
    strided copy (a 256 x 200 x 272 map: 33 ms against 64 ms, docs/PERFORMANCE.md). The
    gradient goes back the same way (`_NCHWCopy`).
    """
    if (
        feature.dtype != torch.float32
        or not _is_strictly_channels_last(feature)
        or being_recorded()
    ):
        return feature.to(torch.float32, memory_format=torch.contiguous_format)
    out = _NCHWCopy.apply(feature)
    assert isinstance(out, Tensor)
    return out


def _is_strictly_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.permute(0, 2, 3, 1).is_contiguous()


def _transpose_images(source: Tensor, to_channels_last: bool) -> Tensor:
    """``source`` (N, C, H, W) copied into the other memory format, image by image."""
    fmt = torch.channels_last if to_channels_last else torch.contiguous_format
    out = torch.empty(source.shape, dtype=source.dtype, device=source.device, memory_format=fmt)
    for i in range(source.shape[0]):
        _copy_transposed(out[i], source[i])
    return out


def _copy_transposed(out: Tensor, image: Tensor) -> None:
    """``out[...] = image`` for a (C, H, W) image between NCHW and channels_last (either way)
    as one (H*W, C) <-> (C, H*W) 2-D transpose, which PyTorch copies cache-blocked."""
    c, h, w = image.shape
    if image.is_contiguous():  # NCHW into channels_last
        out.permute(1, 2, 0).reshape(h * w, c).copy_(image.reshape(c, h * w).t())
    else:  # channels_last into NCHW
        out.view(c, h * w).copy_(image.permute(1, 2, 0).reshape(h * w, c).t())


class _NCHWCopy(torch.autograd.Function):
    """channels_last -> NCHW copy whose backward is the NCHW -> channels_last copy."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, feature: Tensor) -> Tensor:
        return _transpose_images(feature, to_channels_last=False)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return _transpose_images(grad.contiguous(), to_channels_last=True)


class _RoIAlignPerImage(torch.autograd.Function):
    """roi_align over a batch in training, one image per thread, forward and backward.

    torchvision's CPU roi_align and its backward run on one thread. An image's RoIs read,
    and their gradients write, only that image's map, so the images are independent: each
    thread converts its image to float32 NCHW, pools its RoIs, and in the backward scatters
    their gradient into its image's slice (in the map's own layout and dtype). The numbers
    are those of one roi_align call over the batch (tests/detection/modeling/test_poolers.py).
    """

    @staticmethod
    def applies(feature: Tensor, rois: Tensor) -> bool:
        """CPU training with a batch of 2+ images, RoIs sorted by image (as the pooler's)."""
        return (
            feature.device.type == "cpu" and feature.requires_grad and torch.is_grad_enabled()
            and feature.shape[0] > 1 and torch.get_num_threads() > 1 and len(rois) > 0
            and not being_recorded() and bool((rois[1:, 0] >= rois[:-1, 0]).all())
        )  # fmt: skip

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        feature: Tensor,
        rois: Tensor,
        scale: float,
        size: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        counts = torch.bincount(rois[:, 0].long(), minlength=feature.shape[0]).tolist()
        per_image = [r.clone() for r in rois.split(counts)]
        for r in per_image:
            r[:, 0] = 0  # each is pooled from a batch of its one image
        ops = torch.ops.torchvision

        def pool(i: int) -> Tensor:
            with torch.no_grad():  # grad modes are per thread
                image = float32_nchw(feature[i : i + 1])
                return ops.roi_align(
                    image, per_image[i], scale, size, size, sampling_ratio, aligned
                )

        pooled = list(_executor(torch.get_num_threads()).map(pool, range(len(counts))))
        ctx.save_for_backward(*per_image)
        ctx.geometry = (counts, scale, size, sampling_ratio, aligned)  # type: ignore[attr-defined]
        ctx.feature = (feature.shape, feature.dtype, _is_strictly_channels_last(feature))  # type: ignore[attr-defined]
        return torch.cat(pooled)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        counts, scale, size, sampling_ratio, aligned = ctx.geometry  # type: ignore[attr-defined]
        (n, c, h, w), dtype, channels_last = ctx.feature  # type: ignore[attr-defined]
        per_image = ctx.saved_tensors  # type: ignore[attr-defined]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty((n, c, h, w), dtype=dtype, device=grad.device, memory_format=fmt)
        grads = grad.contiguous().split(counts)
        backward = torch.ops.torchvision._roi_align_backward

        def scatter(i: int) -> None:
            if counts[i] == 0:
                out[i].zero_()
                return
            with torch.no_grad():
                g = backward(
                    grads[i], per_image[i], scale, size, size, 1, c, h, w, sampling_ratio, aligned
                )
                if channels_last:
                    _copy_transposed(out[i], g[0])
                else:
                    out[i].copy_(g[0])

        list(_executor(torch.get_num_threads()).map(scatter, range(n)))
        return out, None, None, None, None, None


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
        if self.pooler_type == "roi_align" and _RoIAlignPerImage.applies(feature, rois):
            args = (scale, self.output_size, self.sampling_ratio, self.aligned)
            pooled = _RoIAlignPerImage.apply(feature, rois, *args)
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
            out[index] = self.pool(feature, rois[index], scale).to(out.dtype)
        return out
