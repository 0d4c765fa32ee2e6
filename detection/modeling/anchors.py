"""Anchor boxes: sizes x aspect ratios at every position of every feature map (Ren et al. 2015).

Convention (torchvision's, so its checkpoints reproduce exactly): a cell's anchors are centred
on 0 with half-extents rounded to whole pixels, ordered aspect ratio major, size minor; the
anchors of a map with stride s sit at ``((x + offset) * s, (y + offset) * s)``, ordered row by
row, column by column, anchor by anchor: index ``(y * W + x) * A + a``, the order of the RPN
head's outputs once flattened.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """Zero-centred anchors of one feature-map cell.

    Args:
        sizes: square roots of the anchor areas, input pixels.
        aspect_ratios: height / width.

    Returns:
        (len(aspect_ratios) * len(sizes), 4) xyxy; ratio-major, half-extents rounded.
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (R * S,)
    heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()


class AnchorGenerator:
    """Anchors for a list of feature maps, one list of sizes per map.

    Args:
        sizes: per feature map, the anchor sizes (sqrt of area, input pixels).
        aspect_ratios: height / width ratios, shared by all maps.
        offset: anchor centres at (index + offset) * stride; 0.0 or 0.5.
    """

    def __init__(
        self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float], offset: float = 0.0
    ) -> None:
        if not sizes or any(len(s) == 0 for s in sizes) or not aspect_ratios:
            raise ValueError(f"anchor sizes {sizes} and aspect ratios {aspect_ratios} are empty")
        self.offset = offset
        self.cells = [cell_anchors(s, aspect_ratios) for s in sizes]

    def num_anchors(self) -> list[int]:
        """Anchors per position, per feature map."""
        return [len(c) for c in self.cells]

    def __call__(
        self,
        grid_sizes: Sequence[tuple[int, int]],
        strides: Sequence[tuple[int, int]],
        device: torch.device | str = "cpu",
    ) -> list[Tensor]:
        """Anchors of every position of every feature map.

        Args:
            grid_sizes: per map, its (H, W).
            strides: per map, (stride_y, stride_x) in input pixels.
            device: where the anchors go.

        Returns:
            per map, (H * W * A, 4) xyxy input pixels.
        """
        if len(grid_sizes) != len(self.cells):
            raise ValueError(f"{len(grid_sizes)} feature maps but {len(self.cells)} anchor sizes")
        anchors = []
        for (h, w), (sy, sx), cell in zip(grid_sizes, strides, self.cells):
            xs = (torch.arange(w, device=device, dtype=torch.float32) + self.offset) * sx
            ys = (torch.arange(h, device=device, dtype=torch.float32) + self.offset) * sy
            shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + cell.to(device)[None]).reshape(-1, 4))  # (H*W, A, 4) flat
        return anchors
