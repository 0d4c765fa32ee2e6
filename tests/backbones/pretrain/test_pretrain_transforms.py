"""Augmentation (seeded, the paper's steps) and the test views (centre, 10-crop, multi-scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbones.pretrain.transforms import (
    Lighting,
    Standardize,
    eval_views,
    ten_crop,
    train_transform,
)
from engine.errors import UserError

MEAN = np.zeros(3, np.float32)
STD = [1.0, 1.0, 1.0]


def _index_image(h: int, w: int) -> np.ndarray:
    """Pixel value 10 * row + col in every channel (uint8, so 10 * (h - 1) + w - 1 <= 255)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.repeat((10 * y + x)[..., None], 3, axis=2).astype(np.uint8)


def test_ten_crop_corners_centre_and_flips() -> None:
    crops = ten_crop(_index_image(6, 8), 4)  # (10, 4, 4, 3)
    assert crops.shape == (10, 4, 4, 3)
    top_left = [c[0, 0, 0] for c in crops[:5]]
    assert top_left == [0, 4, 20, 24, 12]  # tl, tr, bl, br, centre (row 1, col 2)
    for plain, flipped in zip(crops[:5], crops[5:]):
        np.testing.assert_array_equal(flipped, plain[:, ::-1])
    with pytest.raises(ValueError, match="smaller than the crop"):
        ten_crop(_index_image(3, 8), 4)


def test_eval_view_shapes() -> None:
    image = np.random.default_rng(0).integers(0, 255, (40, 80, 3)).astype(np.uint8)
    (center,) = eval_views("center", 16, 20, [], MEAN, STD)(image)
    assert center.shape == (1, 3, 16, 16)
    (crops,) = eval_views("10crop", 16, 20, [], MEAN, STD)(image)
    assert crops.shape == (10, 3, 16, 16)
    scales = eval_views("multiscale", 16, 20, [20, 30], MEAN, STD)(image)
    assert [tuple(v.shape) for v in scales] == [(2, 3, 20, 40), (2, 3, 30, 60)]
    for v in scales:
        assert torch.equal(v[1], v[0].flip(-1))  # the flipped twin
    with pytest.raises(UserError, match="unknown mode 'five'"):
        eval_views("five", 16, 20, [], MEAN, STD)


def test_center_view_is_the_middle_after_resize() -> None:
    image = _index_image(8, 12)  # shorter side already 8: no resize
    (view,) = eval_views("center", 4, 8, [], np.full(3, 1.0, np.float32), [2.0] * 3)(image)
    expected = (image[2:6, 4:8, 0].astype(np.float32) - 1.0) / 2.0
    torch.testing.assert_close(view[0, 1], torch.from_numpy(expected))


def test_standardize_with_a_mean_image_resizes_it() -> None:
    mean = np.full((4, 4, 3), 10.0, np.float32)
    out = Standardize(mean, [2.0, 4.0, 5.0]).apply(np.full((8, 6, 3), 30, np.uint8))
    assert out.shape == (8, 6, 3)
    np.testing.assert_allclose(out[3, 2], [10.0, 5.0, 4.0])


def test_lighting_adds_the_pca_shift() -> None:
    alpha = np.array([1.0, -2.0, 0.5], np.float32)
    out = Lighting(0.1).apply(np.zeros((2, 2, 3), np.uint8), alpha=alpha)
    # eigvec @ (alpha * eigval) * 255 with AlexNet's eigenvalues 0.2175, 0.0188, 0.0045
    scaled = alpha * np.array([0.2175, 0.0188, 0.0045])
    vec = np.array(
        [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    )
    np.testing.assert_allclose(out[1, 1], vec @ scaled * 255, rtol=1e-5)


def test_train_transform_is_a_function_of_the_seed() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (30, 45, 3)).astype(np.uint8)
    tf = train_transform(16, [20, 28], 0, 0.5, 0.1, np.full(3, 100.0, np.float32), STD)
    a, b, c = tf(image, 7), tf(image, 7), tf(image, 8)
    assert a.shape == (3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cifar_transform_pads_with_the_mean() -> None:
    # a constant image equal to the mean is all zeros after subtraction; so is the padding,
    # and a crop of the padded image must be all zeros too
    image = np.full((32, 32, 3), 120, np.uint8)
    mean = np.full((32, 32, 3), 120.0, np.float32)
    tf = train_transform(32, [32, 32], 4, 0.5, 0.0, mean, STD)
    assert all(torch.equal(tf(image, s), torch.zeros(3, 32, 32)) for s in range(5))
    # with another mean, the padded border (zeros) shows where the crop moved
    out = [train_transform(32, [32, 32], 4, 0.0, 0.0, MEAN, STD)(image, s) for s in range(20)]
    shifted = [o for o in out if (o == 0).any()]
    assert shifted and all(o.max() == 120 for o in out)


def test_bad_scale_range() -> None:
    with pytest.raises(UserError, match=r"input.scale_range: expected \[low, high\]"):
        train_transform(8, [10], 0, 0.5, 0.0, MEAN, STD)
