"""Anchors: hand-worked cells, positions and counts, and torchvision's exact anchors."""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from detection.modeling.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_by_hand() -> None:
    cell = cell_anchors([32.0], [0.5, 1.0, 2.0])
    # ratio 0.5: w = 32 * sqrt(2) = 45.25 -> half 22.63 -> 23; h = 22.63 -> half 11.31 -> 11
    assert cell.tolist() == [
        [-23.0, -11.0, 23.0, 11.0],
        [-16.0, -16.0, 16.0, 16.0],
        [-11.0, -23.0, 11.0, 23.0],
    ]
    # ratio-major, size-minor
    two = cell_anchors([16.0, 32.0], [1.0, 2.0])
    assert two[:, 2].tolist() == [8.0, 16.0, 6.0, 11.0]  # 16/sqrt(2)/2 = 5.66 -> 6


def test_positions_and_counts() -> None:
    gen = AnchorGenerator([[16.0], [32.0, 64.0]], [1.0], offset=0.0)
    assert gen.num_anchors() == [1, 2]
    small, large = gen([(2, 3), (1, 2)], [(8, 8), (16, 16)])
    assert small.shape == (2 * 3 * 1, 4) and large.shape == (1 * 2 * 2, 4)
    # index (y * W + x) * A + a; anchor centres at (x * 8, y * 8)
    assert small[4].tolist() == [0.0, 0.0, 16.0, 16.0]  # y=1, x=1 -> centre (8, 8)
    assert large.tolist() == [
        [-16.0, -16.0, 16.0, 16.0],
        [-32.0, -32.0, 32.0, 32.0],
        [0.0, -16.0, 32.0, 16.0],
        [-16.0, -32.0, 48.0, 32.0],
    ]
    shifted = AnchorGenerator([[16.0]], [1.0], offset=0.5)([(1, 1)], [(8, 8)])[0]
    assert shifted.tolist() == [[-4.0, -4.0, 12.0, 12.0]]  # centre (4, 4)


def test_equal_to_torchvision_fpn_anchors() -> None:
    sizes = [[32.0], [64.0], [128.0], [256.0], [512.0]]
    ratios = [0.5, 1.0, 2.0]
    padded = (800, 1088)
    grids = [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)]  # P6 of an odd P5 grid
    ours = AnchorGenerator(sizes, ratios)(grids, [(800 // h, 1088 // w) for h, w in grids])
    tv = TVAnchorGenerator(tuple((int(s[0]),) for s in sizes), (tuple(ratios),) * 5)
    feature_maps = [torch.zeros(1, 1, h, w) for h, w in grids]
    expected = tv(ImageList(torch.zeros(1, 3, *padded), [padded]), feature_maps)[0]
    assert torch.equal(torch.cat(ours), expected)
