"""RoIAlign's backward as matrix products over each RoI's window, on every core.

RoIAlign (Mask R-CNN; torchvision's ``roi_align``) averages bilinear samples: bin ``(i, j)``
of RoI ``r`` is ``sum_{h,w} Wy[r, i, h] * Wx[r, j, w] * feature[b_r, :, h, w]``, because a
sample's bilinear weight is a product of a row weight and a column weight, its validity test
(``-1 <= y <= H`` and ``-1 <= x <= W``) is a product too, and the 1 / (grid_h * grid_w) average
splits the same way. ``Wy`` (R, S, H) sums the row weights of a bin's grid_h sample rows
divided by grid_h; ``Wx`` (R, S, W) the same for columns.

The gradient of the feature map is then a patch ``Wy[r]^T @ grad[r] @ Wx[r]`` per RoI over
the rows and columns its samples touch, added in at the patch's place: two batched matrix
products (multi-threaded) and one index_add. torchvision's CPU backward scatters every
sample's four weighted values one by one on one thread. `python
benchmarks/roi_align_backward.py` (docs/PERFORMANCE.md), one thread: 6.4x on the demo's
shapes, 6.0x on R101-C4's at 600 px, 3.5x on R50-FPN's finest level. The sums run in another
order, so the gradient equals torchvision's to float rounding (~1e-6 relative), not bit for
bit (tests/detection/modeling/test_roi_align_grad.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Elements of one chunk's intermediates (RoIs x C x cols x (S + rows)): 8M floats, 32 MB.
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

    Each RoI's gradient is a patch ``Wy[r]^T @ grad[r] @ Wx[r]`` over the rows and columns
    its samples touch, added into the map at the patch's place. RoIs go in groups of like
    windows (rows and columns each within a power of two), every window of a group padded to
    the group's largest, so that one long thin proposal does not widen every other's.

    Args:
        grad: (R, C, S, S) the pooled features' gradient.
        rois: (R, 5) as pooled, any image order.
        shape: the feature map's (N, C, H, W).

    Returns:
        (N, C, H, W) in grad's dtype (float32 at least), channels_last in memory (its natural
        layout here: patches of (rows, columns, C) added into (N * H * W, C)).
    """
    n, c, h, w = shape
    bins = grad.shape[-1]
    dtype = torch.promote_types(grad.dtype, torch.float32)
    out = grad.new_zeros(n * h * w, c, dtype=dtype)
    if rois.shape[0] == 0:
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    wy, wx = roi_align_weights(rois.to(dtype), scale, bins, sampling_ratio, aligned, h, w)
    top, height = touched_cells(wy)
    left, width = touched_cells(wx)
    image = rois[:, 0].long()
    # channels last: (R, S, S, C), free when the head's backward left it so
    grad = grad.to(dtype).permute(0, 2, 3, 1).contiguous()
    group = _bit_length(height) * 64 + _bit_length(width)
    for key in torch.unique(group):
        members = torch.nonzero(group == key).squeeze(1)
        rows, cols = int(height[members].max()), int(width[members].max())
        offsets = (torch.arange(rows)[:, None] * w + torch.arange(cols)).view(-1)
        for part in members.split(max(1, CHUNK_ELEMENTS // (c * cols * (bins + rows)))):
            r = part.shape[0]
            y0, y_weights = window(wy[part], top[part], rows)  # (r,), (r, S, rows)
            x0, x_weights = window(wx[part], left[part], cols)  # (r,), (r, S, cols)
            # per RoI and bin row, Wx^T @ grad: (r, 1, cols, S) @ (r, S, S, C) -> (r, S, cols, C)
            right = torch.matmul(x_weights.transpose(1, 2).unsqueeze(1), grad[part])
            # Wy^T @ ...: (r, rows, S) @ (r, S, cols * C) -> patches (r, rows, cols * C)
            patch = torch.bmm(y_weights.transpose(1, 2), right.view(r, bins, cols * c))
            first = (image[part] * h + y0) * w + x0  # the patch's corner in (N * H * W, C)
            out.index_add_(0, (first[:, None] + offsets).view(-1), patch.view(-1, c))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)


def touched_cells(weights: Tensor) -> tuple[Tensor, Tensor]:
    """(R, S, L) weights -> each RoI's first touched cell (R,) and count from there to its
    last touched cell (R,), at least 1 (an RoI that touches nothing: first L, count 1)."""
    length = weights.shape[2]
    cells = torch.arange(length, device=weights.device)
    touched = (weights != 0).any(dim=1)  # (R, L)
    first = torch.where(touched, cells, length).amin(dim=1)
    last = torch.where(touched, cells, -1).amax(dim=1)
    return first, (last - first + 1).clamp(min=1)


def window(weights: Tensor, first: Tensor, span: int) -> tuple[Tensor, Tensor]:
    """(r, S, L) weights -> the ``span`` cells from ``first`` (moved back from the far edge
    where needed): the start (r,) and their weights (r, S, span)."""
    first = first.clamp(max=weights.shape[2] - span)
    cells = (first[:, None] + torch.arange(span, device=weights.device))[:, None, :]
    return first, weights.gather(2, cells.expand(-1, weights.shape[1], -1))


def _bit_length(counts: Tensor) -> Tensor:
    """floor(log2(count)) + 1 for counts >= 1: the power-of-two class of a window's side."""
    return torch.floor(torch.log2(counts.double())).long() + 1
