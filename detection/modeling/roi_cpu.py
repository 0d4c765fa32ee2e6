"""CPU kernels around torchvision's RoI ops: the same numbers, on every core.

torchvision's CPU ``roi_align`` / ``roi_pool`` and their backward run on one thread and want
float32 NCHW maps. Here:
- :func:`in_parallel_chunks`: at inference, chunks of RoIs pooled in parallel threads;
- :func:`float32_nchw`: a channels_last map to NCHW as one blocked 2-D transpose per image
  (and back for its gradient);
- :class:`RoIAlignPerImage`: in training, one image per thread, forward and backward.
Each equals one torchvision call over the batch, bit for bit
(tests/detection/modeling/test_poolers.py). Graph recording (fx, ONNX, compile, export:
``engine.fastpath``) gets the plain call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

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


class RoIAlignPerImage(torch.autograd.Function):
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
            and not graph_recording(feature) and bool((rois[1:, 0] >= rois[:-1, 0]).all())
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
