"""RoIAlign's backward as two matrix products per image, on every core.

RoIAlign (Mask R-CNN; torchvision's ``roi_align``) averages bilinear samples: bin ``(i, j)``
of RoI ``r`` is ``sum_{h,w} Wy[r, i, h] * Wx[r, j, w] * feature[b_r, :, h, w]``, because a
sample's bilinear weight is a product of a row weight and a column weight, its validity test
(``-1 <= y <= H`` and ``-1 <= x <= W``) is a product too, and the 1 / (grid_h * grid_w) average
splits the same way. ``Wy`` (R, S, H) sums the row weights of a bin's grid_h sample rows
divided by grid_h; ``Wx`` (R, S, W) the same for columns.

The gradient of the feature map is then ``sum_r Wy[r]^T @ grad[r] @ Wx[r]`` per image: one
batched product over the RoIs and one GEMM, both multi-threaded. torchvision's CPU backward
scatters every sample's four weighted values one by one on one thread: on the demo's shapes
(64 RoIs, 64 channels, 14 x 14 bins) it took 75-90 ms against 6-8 ms here, and on R101-C4's
(256 RoIs, 1024 channels, a 38 x 50 map) 2.3-2.8 s against 1.0 s (one thread,
docs/PERFORMANCE.md). The sums run in another order, so the gradient equals torchvision's to
float rounding (~1e-6 relative), not bit for bit (tests/detection/modeling/test_roi_align_grad.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Elements of one chunk's intermediate (RoIs x C x S x W): 8M floats, 32 MB.
CHUNK_ELEMENTS = 1 << 23


def axis_weights(
    start: Tensor, end: Tensor, bins: int, length: int, sampling_ratio: int, aligned: bool
) -> Tensor:
    """The bilinear weights of RoIAlign along one axis.

    Args:
        start, end: (R,) the RoIs' extent on this axis in feature cells (already scaled and,
            when aligned, shifted by half a cell).
        bins: output bins along the axis (S).
        length: the feature map's length along the axis (H or W).
        sampling_ratio: samples per bin (0: ceil(extent / bins), per RoI, as torchvision).
        aligned: False clamps the extent to at least one cell (the original RoIAlign).

    Returns:
        (R, S, length): weight of each cell in each bin's average, samples outside
        [-1, length] counting as zero but still in the average's denominator.
    """
    extent = end - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_size = extent / bins
    if sampling_ratio > 0:
        grid = torch.full_like(extent, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(extent / bins).long()
    samples = max(int(grid.max()), 1) if grid.numel() else 1
    grid_f = grid.to(start.dtype).clamp(min=1)[:, None, None]
    k = torch.arange(samples, dtype=start.dtype, device=start.device)
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    step = bin_size[:, None, None]
    pos = start[:, None, None] + p[None, :, None] * step + (k + 0.5) * step / grid_f  # (R, S, K)
    used = (k < grid[:, None, None]) & (pos >= -1.0) & (pos <= length)
    pos = pos.clamp(min=0.0)
    low = pos.long()
    last = low >= length - 1  # at the far edge both neighbours are the last cell
    low = low.clamp(max=length - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(pos), pos - low.to(pos.dtype))
    share = used.to(pos.dtype) / grid_f
    weights = pos.new_zeros(start.shape[0], bins, length)
    weights.scatter_add_(2, low, (1.0 - frac) * share)
    weights.scatter_add_(2, high, frac * share)
    return weights


def roi_align_weights(
    rois: Tensor,
    scale: float,
    bins: int,
    sampling_ratio: int,
    aligned: bool,
    height: int,
    width: int,
) -> tuple[Tensor, Tensor]:
    """(R, 5) rois (image index, x1, y1, x2, y2 input pixels) -> Wy (R, S, H), Wx (R, S, W)."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, k] * scale - offset for k in range(1, 5))
    wy = axis_weights(y1, y2, bins, height, sampling_ratio, aligned)
    wx = axis_weights(x1, x2, bins, width, sampling_ratio, aligned)
    return wy, wx


def roi_align_backward(
    grad: Tensor,
    rois: Tensor,
    scale: float,
    sampling_ratio: int,
    aligned: bool,
    shape: tuple[int, int, int, int],
) -> Tensor:
    """The gradient of ``roi_align(feature, rois, S, scale, sampling_ratio, aligned)``.

    Args:
        grad: (R, C, S, S) the pooled features' gradient.
        rois: (R, 5) as pooled, any image order.
        shape: the feature map's (N, C, H, W).

    Returns:
        (N, C, H, W) in grad's dtype (float32 at least), channels_last in memory (its natural
        layout here: one GEMM per image writes (H, W * C)).
    """
    n, c, h, w = shape
    bins = grad.shape[-1]
    dtype = torch.promote_types(grad.dtype, torch.float32)
    out = grad.new_zeros(n, h, w * c, dtype=dtype)
    if rois.shape[0] == 0:
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    wy, wx = roi_align_weights(rois.to(dtype), scale, bins, sampling_ratio, aligned, h, w)
    grad = grad.to(dtype)
    image = rois[:, 0].long()
    chunk = max(1, CHUNK_ELEMENTS // (c * bins * w))
    for b in range(n):
        for part in torch.nonzero(image == b).squeeze(1).split(chunk):
            r = part.shape[0]
            # grad[r] @ Wx[r]: (r, C * S, S) @ (r, S, W), then rows (r * S) by (W * C)
            cols = torch.bmm(grad[part].reshape(r, c * bins, bins), wx[part])
            cols = cols.view(r, c, bins, w).permute(0, 2, 3, 1).reshape(r * bins, w * c)
            # Wy^T @ ...: (H, r * S) @ (r * S, W * C), summed over the chunk's RoIs
            out[b].addmm_(wy[part].reshape(r * bins, h).t(), cols)
    return out.view(n, h, w, c).permute(0, 3, 1, 2)
