"""Classification samples and batches: the mean image, datasets, augmentation, collation.

The readers (ImageFolder, CIFAR-10, Tiny ImageNet) are :mod:`backbones.pretrain.readers`;
they return a :class:`ClassificationData` that the datasets here index.

Images are decoded by ``engine.images.decode_image`` into RGB uint8. A file that cannot be
read comes back as a :class:`BadImage` instead of a sample, so the training process (not a
worker) applies the bad-image policy. Training batches come from engine's
``ResumableBatchSampler`` (shared with detection), so ``--resume`` sees exactly the batches
an uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from backbones.pretrain.readers import ClassificationData
from backbones.pretrain.transforms import ImageTransform, ViewTransform
from engine.errors import UserError
from engine.images import BadImageError, decode_image


class BadImage(NamedTuple):
    """A file that could not be decoded: reported by the training process, not the worker."""

    path: str
    reason: str


# ------------------------------------------------------------------------------- decoding
def pixel_mean_image(data: ClassificationData, size: int) -> np.ndarray:
    """Per-pixel mean of the training images, (size, size, 3) float32 RGB 0..255.

    CIFAR images are averaged as they are; image files are each resized to size x size first
    (files that cannot be decoded are left out).
    """
    if data.images is not None:
        images = data.images
        if images.shape[1:3] != (size, size):
            images = np.stack([cv2.resize(im, (size, size)) for im in images])
        return images.mean(axis=0, dtype=np.float64).astype(np.float32)
    total, count = np.zeros((size, size, 3), np.float64), 0
    for path in data.paths or []:
        try:
            total += cv2.resize(decode_image(path), (size, size), interpolation=cv2.INTER_AREA)
            count += 1
        except BadImageError:
            continue
    if count == 0:
        raise UserError("input.per_pixel_mean: no training image could be read")
    return (total / count).astype(np.float32)


# ------------------------------------------------------------------------------- datasets
@dataclass
class Sample:
    """One training image after augmentation."""

    image: Tensor  # (3, crop, crop) float32, normalised
    label: int


@dataclass
class EvalSample:
    """One test image as its views (see transforms.eval_views)."""

    views: list[Tensor]  # per size: (V, 3, h, w) float32, normalised
    label: int


class TrainDataset(Dataset[Sample | BadImage]):
    """Indexed by ``(index, seed)``: the seed drives this sample's augmentation."""

    def __init__(self, data: ClassificationData, transform: ImageTransform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> Sample | BadImage:
        index, seed = key
        image = _load(self.data, index)
        if isinstance(image, BadImage):
            return image
        return Sample(self.transform(image, seed), int(self.data.labels[index]))


class EvalDataset(Dataset[EvalSample | BadImage]):
    """Indexed by position; each item is all the views of one test mode."""

    def __init__(self, data: ClassificationData, views: ViewTransform) -> None:
        self.data = data
        self.views = views

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> EvalSample | BadImage:
        image = _load(self.data, index)
        if isinstance(image, BadImage):
            return image
        return EvalSample(self.views(image), int(self.data.labels[index]))


def _load(data: ClassificationData, index: int) -> np.ndarray | BadImage:
    if data.images is not None:
        return data.images[index]
    assert data.paths is not None
    try:
        return decode_image(data.paths[index])
    except BadImageError as exc:
        return BadImage(data.paths[index], str(exc))


# ------------------------------------------------------------------------------- batches
@dataclass
class ClassBatch:
    """A training batch; unreadable files are listed, not included."""

    images: Tensor  # (B, 3, H, W) float32, normalised
    labels: Tensor  # (B,) int64
    bad: list[BadImage]  # files of this batch that could not be read

    def pin_memory(self) -> ClassBatch:
        """Page-locked copies (DataLoader(pin_memory=True) calls this) for async H2D copies."""
        return ClassBatch(self.images.pin_memory(), self.labels.pin_memory(), self.bad)


@dataclass
class EvalBatch:
    """A test batch: views per image (sizes may differ between images)."""

    views: list[list[Tensor]]  # per image, per size: (V, 3, h, w)
    labels: Tensor  # (B,) int64
    bad: list[BadImage]


def collate_train(items: list[Sample | BadImage]) -> ClassBatch:
    """Stack the good samples, list the bad ones."""
    good = [s for s in items if isinstance(s, Sample)]
    bad = [s for s in items if isinstance(s, BadImage)]
    images = torch.stack([s.image for s in good]) if good else torch.zeros(0, 3, 1, 1)
    return ClassBatch(images, torch.tensor([s.label for s in good], dtype=torch.int64), bad)


def collate_eval(items: list[EvalSample | BadImage]) -> EvalBatch:
    """Keep each image's views as they are (grouped by size later)."""
    good = [s for s in items if isinstance(s, EvalSample)]
    bad = [s for s in items if isinstance(s, BadImage)]
    labels = torch.tensor([s.label for s in good], dtype=torch.int64)
    return EvalBatch([s.views for s in good], labels, bad)
