"""The paper's classification augmentation and test views (albumentations on RGB uint8 images).

Training (He et al. 2015, Sec. 3.4): shorter side random in [256, 480], a 224 crop or its
flip, mean subtraction, AlexNet PCA colour ("lighting") noise. CIFAR-10 (Sec. 4.2): per-pixel
mean subtraction, 4 pixels of zero padding, a random 32 crop or its flip. Padding comes after
mean subtraction, so a padded pixel is "the mean" rather than black.

Testing: ``center`` (shorter side to ``test_resize``, centre crop), ``10crop`` (the four
corners and the centre, and their flips) and ``multiscale`` (the whole image with shorter side
at each of ``test_scales``, and its flip, fed fully-convolutionally: the network's global
average pool makes its head work on any size). Scores of all views are averaged.

Every random choice comes from a generator seeded per sample, so a sample's augmentation
depends on (seed, epoch, index) only: not on worker processes, ranks or resumption.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor

from engine.errors import UserError

TEST_MODES = ("center", "10crop", "multiscale")

# AlexNet's PCA of ImageNet RGB pixels (0..1 scale), as in fb.resnet.torch and many reruns
_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
_EIGVEC = np.array(
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
    np.float32,
)

ImageTransform = Callable[[np.ndarray, int], Tensor]  # (H, W, 3) uint8 RGB, seed -> (3, h, w)
ViewTransform = Callable[[np.ndarray], list[Tensor]]  # image -> [(V, 3, h, w) per size]


class Lighting(A.ImageOnlyTransform):
    """AlexNet PCA colour noise: adds ``eigvec @ (alpha * eigval) * 255``, alpha ~ N(0, std).

    Works on RGB images on the 0..255 scale; returns float32.
    """

    def __init__(self, std: float = 0.1, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.std = std

    def get_params(self) -> dict[str, Any]:
        return {"alpha": self.random_generator.normal(0.0, self.std, 3).astype(np.float32)}

    def apply(self, img: np.ndarray, alpha: np.ndarray, **params: Any) -> np.ndarray:
        delta = _EIGVEC @ (alpha * _EIGVAL) * 255.0  # (3,) RGB shift
        return img.astype(np.float32) + delta


class Standardize(A.ImageOnlyTransform):
    """(image - mean) / std in float32; ``mean`` is per channel (3,) or a mean image (h, w, 3).

    A mean image is resized to the image when their sizes differ (multi-scale testing).
    """

    def __init__(self, mean: np.ndarray, std: Sequence[float], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        mean: np.ndarray = self.mean
        if mean.ndim == 3 and mean.shape[:2] != img.shape[:2]:
            mean = cv2.resize(mean, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        return (img.astype(np.float32) - mean) / self.std


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) float array -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def train_transform(
    crop_size: int,
    scale_range: Sequence[int],
    pad: int,
    flip_prob: float,
    lighting_std: float,
    mean: np.ndarray,
    std: Sequence[float],
) -> ImageTransform:
    """The training augmentation as ``(image, seed) -> (3, crop_size, crop_size) tensor``.

    Args:
        crop_size: side of the random crop.
        scale_range: [low, high]: the shorter side is first resized to a random integer in it.
        pad: zero padding (after mean subtraction) before the crop; 0 for none.
        flip_prob: horizontal flip probability.
        lighting_std: AlexNet PCA noise strength; 0 = off.
        mean: per-channel (3,) or per-pixel (h, w, 3) mean, RGB 0..255.
        std: per-channel divisor, RGB 0..255 scale.
    """
    low, high = _check_range(scale_range)
    steps: list[Any] = [A.SmallestMaxSize(max_size=list(range(low, high + 1)))]
    crop_flip = [A.RandomCrop(crop_size, crop_size), A.HorizontalFlip(p=flip_prob)]
    colour = [Lighting(lighting_std)] if lighting_std > 0 else []
    if pad > 0:  # CIFAR: normalise, pad with zeros (= the mean), crop
        steps += [*colour, Standardize(mean, std), A.Pad(pad, fill=0), *crop_flip]
    else:  # crop first: cheaper on large images
        steps += [*crop_flip, *colour, Standardize(mean, std)]
    return SeededTransform(A.Compose(steps))


class SeededTransform:
    """An albumentations pipeline whose random draws come from a per-call seed.

    A class, not a closure, so DataLoader workers can receive it under any start method.
    """

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose

    def __call__(self, image: np.ndarray, seed: int) -> Tensor:
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return to_tensor(self.compose(image=image)["image"])


def ten_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The 10 views: top-left, top-right, bottom-left, bottom-right, centre, then their flips.

    Args:
        image: (H, W, C) with H, W >= size.

    Returns:
        (10, size, size, C) in torchvision's TenCrop order.
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    origins = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = [image[y : y + size, x : x + size] for y, x in origins]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def eval_views(
    mode: str,
    crop_size: int,
    test_resize: int,
    test_scales: Sequence[int],
    mean: np.ndarray,
    std: Sequence[float],
) -> ViewTransform:
    """``image -> list of (V, 3, h, w) tensors`` for one test mode (views of one size each).

    ``center``: [(1, 3, crop, crop)]; ``10crop``: [(10, 3, crop, crop)]; ``multiscale``:
    one (2, 3, h_s, w_s) per scale s (the image and its flip).
    """
    if mode not in TEST_MODES:
        raise UserError(f"input.test_modes: unknown mode {mode!r}; expected one of {TEST_MODES}")
    norm = Standardize(mean, std)
    if mode == "center":
        crop = A.CenterCrop(crop_size, crop_size)
        return EvalViews(mode, [A.Compose([A.SmallestMaxSize(test_resize), crop, norm])], 0)
    if mode == "10crop":
        return EvalViews(mode, [A.Compose([A.SmallestMaxSize(test_resize), norm])], crop_size)
    return EvalViews(mode, [A.Compose([A.SmallestMaxSize(s), norm]) for s in test_scales], 0)


class EvalViews:
    """The views of one test mode (see :func:`eval_views`); picklable for DataLoader workers."""

    def __init__(self, mode: str, pipes: list[A.Compose], crop_size: int) -> None:
        self.mode = mode
        self.pipes = pipes
        self.crop_size = crop_size

    def __call__(self, image: np.ndarray) -> list[Tensor]:
        scaled = [pipe(image=image)["image"] for pipe in self.pipes]
        if self.mode == "center":
            return [_stack(scaled[0][None])]
        if self.mode == "10crop":
            return [_stack(ten_crop(scaled[0], self.crop_size))]
        return [_stack(np.stack([im, im[:, ::-1]])) for im in scaled]  # image and its flip


def _stack(images: np.ndarray) -> Tensor:
    # (V, H, W, 3) -> (V, 3, H, W)
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))


def _check_range(scale_range: Sequence[int]) -> tuple[int, int]:
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise UserError(
            f"input.scale_range: expected [low, high] with 0 < low <= high, got {list(scale_range)}"
        )
    return int(scale_range[0]), int(scale_range[1])
