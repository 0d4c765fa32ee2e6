"""CPU kernels around torchvision's RoI ops: the same numbers, on every core.

torchvision's CPU ``roi_align`` / ``roi_pool`` and their backward run on one thread and want
float32 NCHW maps. Here:
- :func:`in_parallel_chunks`: at inference, chunks of RoIs pooled in parallel threads;
- :func:`float32_nchw`: a channels_last map to NCHW as one blocked 2-D transpose per image
  (and back for its gradient);
- :class:`TrainingRoIAlign`: in training, the forward one image per thread, the backward as
  matrix products (:mod:`detection.modeling.roi_align_grad`).
The forwards equal one torchvision call over the batch, bit for bit; the backward equals
torchvision's to float rounding (tests/detection/modeling/test_poolers.py). Graph recording
(fx, ONNX, compile, export: ``engine.fastpath``) gets the plain call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from detection.modeling.roi_align_grad import roi_align_backward
from engine.fastpath import graph_recording


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
        or torch.is_grad_enabled() or graph_recording(rois)
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
        or graph_recording(feature)
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


class TrainingRoIAlign(torch.autograd.Function):
    """roi_align in CPU training: the forward one image per thread, the backward as GEMMs.

    torchvision's CPU roi_align and its backward run on one thread. An image's RoIs read only
    that image's map, so with 2+ threads and 2+ images each thread converts its image to
    float32 NCHW and pools its RoIs; the output is that of one roi_align call over the batch,
    bit for bit. The backward is :func:`detection.modeling.roi_align_grad.roi_align_backward`
    (matrix products over each RoI's window instead of one-by-one scatters: 6x faster on
    the demo's shapes), equal to torchvision's to float rounding; it comes back in the map's
    own layout and dtype (tests/detection/modeling/test_poolers.py).
    """

    @staticmethod
    def applies(feature: Tensor, rois: Tensor) -> bool:
        """CPU training with RoIs sorted by image (as the pooler's)."""
        return (
            feature.device.type == "cpu" and feature.requires_grad and torch.is_grad_enabled()
            and len(rois) > 0 and not graph_recording(feature)
            and bool((rois[1:, 0] >= rois[:-1, 0]).all())
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
        ctx.save_for_backward(rois)
        ctx.geometry = (scale, sampling_ratio, aligned)  # type: ignore[attr-defined]
        ctx.feature = (feature.shape, feature.dtype, _is_strictly_channels_last(feature))  # type: ignore[attr-defined]
        ops = torch.ops.torchvision
        threads = torch.get_num_threads()
        if threads < 2 or feature.shape[0] < 2:
            return ops.roi_align(
                float32_nchw(feature.detach()), rois, scale, size, size, sampling_ratio, aligned
            )
        counts = torch.bincount(rois[:, 0].long(), minlength=feature.shape[0]).tolist()
        per_image = [r.clone() for r in rois.split(counts)]
        for r in per_image:
            r[:, 0] = 0  # each is pooled from a batch of its one image

        def pool(i: int) -> Tensor:
            with torch.no_grad():  # grad modes are per thread
                image = float32_nchw(feature[i : i + 1])
                return ops.roi_align(
                    image, per_image[i], scale, size, size, sampling_ratio, aligned
                )

        return torch.cat(list(_executor(threads).map(pool, range(len(counts)))))

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        scale, sampling_ratio, aligned = ctx.geometry  # type: ignore[attr-defined]
        shape, dtype, channels_last = ctx.feature  # type: ignore[attr-defined]
        (rois,) = ctx.saved_tensors  # type: ignore[attr-defined]
        out = roi_align_backward(grad, rois, scale, sampling_ratio, aligned, tuple(shape))
        out = out if channels_last else out.contiguous()
        return out.to(dtype), None, None, None, None, None
