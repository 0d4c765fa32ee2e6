"""RoIAlign's backward as matrix products: hand cases and torchvision's own backward."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from detection.modeling import roi_align_grad
from detection.modeling.roi_align_grad import (
    axis_weights,
    roi_align_backward,
    touched_cells,
    window,
)


def _rois(generator: torch.Generator, images: int, per_image: int, size: float) -> torch.Tensor:
    """RoIs of every kind: inside, across and beyond the map's edges, tiny and zero-size."""
    rows = []
    for b in range(images):
        corner = torch.rand(per_image, 2, generator=generator, dtype=torch.float64) * size * 1.2
        corner -= 0.1 * size
        extent = torch.rand(per_image, 2, generator=generator, dtype=torch.float64) * size * 0.7
        extent[0] = 0.0  # a zero-size box
        extent[1] = 0.3  # smaller than a cell
        index = torch.full((per_image, 1), float(b), dtype=torch.float64)
        rows.append(torch.cat([index, corner, corner + extent], dim=1))
    return torch.cat(rows)


def test_one_sample_on_a_cell_centre_by_hand() -> None:
    """A 2x2 box at scale 1, one bin, one sample: (1, 1) without the half-pixel shift; with
    it the sample sits at (0.5, 0.5), a quarter on each of the four cells around it."""
    rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]])
    grad = torch.ones(1, 1, 1, 1)
    plain = roi_align_backward(grad, rois, 1.0, 1, False, (1, 1, 4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1, 1] = 1.0
    assert torch.equal(plain, expected)
    shifted = roi_align_backward(grad, rois, 1.0, 1, True, (1, 1, 4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, :2, :2] = 0.25
    assert torch.equal(shifted, expected)


def test_axis_weights_by_hand() -> None:
    """One RoI from 0 to 4 in 2 bins of 2 samples, at 0.5, 1.5 | 2.5, 3.5, on a map of 4
    cells: each sample splits its half of the bin between its two cells, and the last (3.5)
    is past the last cell and clamps onto it."""
    w = axis_weights(torch.tensor([0.0]), torch.tensor([4.0]), 2, 4, 2, True)
    expected = torch.tensor([[[0.25, 0.5, 0.25, 0.0], [0.0, 0.0, 0.25, 0.75]]])
    assert torch.allclose(w, expected)
    beyond = axis_weights(torch.tensor([5.5]), torch.tensor([7.5]), 1, 4, 2, True)
    assert torch.equal(beyond, torch.zeros(1, 1, 4))  # samples past length + 1 count zero


def test_touched_cells_and_windows_by_hand() -> None:
    """First touched cell and span per RoI; a window of 2 cells moved back from the far edge;
    an RoI that touches nothing spans 1 and its window holds zeros."""
    weights = torch.tensor(
        [[[0.0, 0.5, 0.5, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0, 0.0, 0.0]]]
    )
    first, span = touched_cells(weights)
    assert first.tolist() == [1, 4, 5] and span.tolist() == [2, 1, 1]
    start, cells = window(weights, first, 2)
    assert start.tolist() == [1, 3, 3]
    assert cells.tolist() == [[[0.5, 0.5]], [[0.0, 1.0]], [[0.0, 0.0]]]


def test_a_long_thin_roi_among_small_ones() -> None:
    """A 1-row, full-width RoI and a full-height, 1-column one beside small ones (proposals of
    an untrained RPN look like this): grouped windows, still torchvision's gradient."""
    g = torch.Generator().manual_seed(3)
    rois = torch.tensor(
        [[0, 10, 10, 30, 30], [0, 0, 40, 260, 44], [1, 100, 0, 103, 200], [1, 50, 60, 70, 90]],
        dtype=torch.float64,
    )
    grad = torch.randn(4, 3, 7, 7, generator=g, dtype=torch.float64)
    ours = roi_align_backward(grad, rois, 0.25, 2, False, (2, 3, 50, 66))
    theirs = torch.ops.torchvision._roi_align_backward(
        grad, rois, 0.25, 7, 7, 2, 3, 50, 66, 2, False
    )
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("bins", [7, 14])
def test_equals_torchvision_backward(aligned: bool, sampling_ratio: int, bins: int) -> None:
    """float64, three images (the last without RoIs), boxes across every edge: torchvision's
    own backward to 1e-12."""
    g = torch.Generator().manual_seed(bins + sampling_ratio + int(aligned))
    shape = (3, 5, 11, 17)
    rois = _rois(g, 2, 9, 17 * 8.0)
    grad = torch.randn(len(rois), 5, bins, bins, generator=g, dtype=torch.float64)
    ours = roi_align_backward(grad, rois, 1 / 8, sampling_ratio, aligned, shape)
    theirs = torch.ops.torchvision._roi_align_backward(
        grad, rois, 1 / 8, bins, bins, *shape, sampling_ratio, aligned
    )
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    assert theirs.abs().max() > 1  # not a comparison of zeros
    assert ours[2].abs().sum() == 0


def test_chunks_sum_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """RoIs split into chunks of one (a tiny CHUNK_ELEMENTS) add up to the one-chunk result."""
    g = torch.Generator().manual_seed(1)
    rois = _rois(g, 2, 6, 80.0).float()
    grad = torch.randn(len(rois), 4, 7, 7, generator=g)
    whole = roi_align_backward(grad, rois, 0.25, 2, True, (2, 4, 20, 20))
    monkeypatch.setattr(roi_align_grad, "CHUNK_ELEMENTS", 1)
    chunked = roi_align_backward(grad, rois, 0.25, 2, True, (2, 4, 20, 20))
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_forward_through_the_weights_equals_roi_align() -> None:
    """The separable weights are RoIAlign itself: Wy @ feature @ Wx^T is torchvision's forward."""
    g = torch.Generator().manual_seed(2)
    feature = torch.randn(2, 3, 11, 17, generator=g, dtype=torch.float64)
    rois = _rois(g, 2, 5, 17 * 8.0)
    wy, wx = roi_align_grad.roi_align_weights(rois, 1 / 8, 7, 0, True, 11, 17)
    per_roi = feature[rois[:, 0].long()]  # (R, C, H, W)
    ours = wy[:, None] @ per_roi @ wx.transpose(1, 2)[:, None]
    assert torch.allclose(ours, roi_align(feature, rois, 7, 1 / 8, 0, True), atol=1e-12)


def test_no_rois_gives_zeros() -> None:
    grad, rois = torch.zeros(0, 4, 7, 7), torch.zeros(0, 5)
    out = roi_align_backward(grad, rois, 0.25, 2, True, (2, 4, 5, 6))
    assert out.shape == (2, 4, 5, 6) and out.abs().sum() == 0
