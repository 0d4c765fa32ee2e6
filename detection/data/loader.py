"""From ImageRecords to DetectionBatches: decode, transform, collate, skip bad images.

* :class:`DetectionDataset` decodes an image (``engine.images.decode_image``, at 1/2, 1/4
  or 1/8 scale where the transform's resize shrinks it that much) and transforms it; a
  missing, corrupt or wrongly sized image does not raise inside a worker but comes back as a
  :class:`BadSample`.
* :class:`DetectionLoader` wraps the torch DataLoader and applies engine's
  :class:`~engine.images.BadImagePolicy` (``data.skip_bad_images``) to the bad samples.
The samplers are engine's (``engine.samplers``), shared with the classification task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detection.data.transforms import (
    Normalization,
    ScaledImage,
    TransformedSample,
    collate_uint8_images,
)
from detection.structures import DetectionBatch, ImageRecord, Targets
from engine.images import BadImageError, BadImagePolicy, decode_image, reduced_size


class SampleTransform(Protocol):
    def decode_reduction(self, height: int, width: int, seed: int) -> int: ...

    def transform_sample(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        seed: int,
        original_size: tuple[int, int] | None = None,
    ) -> TransformedSample: ...


@dataclass
class Sample:
    """One transformed image with its targets."""

    image: np.ndarray  # (h, w, 3) uint8 RGB, network-input pixels (normalised by the collate)
    targets: Targets  # network-input pixels; ignore flags carried
    record: ImageRecord  # original pixels
    scale: tuple[float, float]  # (sy, sx)
    flipped: bool
    normalization: Normalization  # the transform's: how the collate normalises ``image``
    pyramid: list[ScaledImage]  # the test pyramid's images and scales (else empty)


@dataclass
class BadSample:
    """An image that could not be loaded, and why."""

    record: ImageRecord
    reason: str  # one line naming the file


@dataclass
class CollatedBatch:
    """What the DataLoader's collate returns: the good images and the bad ones."""

    batch: DetectionBatch | None  # None when every image of the batch was bad
    bad: list[BadSample]


class DetectionDataset(Dataset):
    """Map-style dataset over records; an item is an index or (index, augmentation seed).

    Args:
        records: the images and their annotations (original pixels).
        transform: TrainTransform or TestTransform (anything with ``transform_sample``).
    """

    def __init__(self, records: Sequence[ImageRecord], transform: SampleTransform) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Sample | BadSample:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        record = self.records[index]
        original = (record.height, record.width)
        reduce = self.transform.decode_reduction(*original, seed)
        try:
            image = decode_image(record.path, reduce)
        except BadImageError as exc:
            return BadSample(record, str(exc))
        if image.shape[:2] != reduced_size(*original, reduce):
            return BadSample(record, _size_mismatch(record, image, reduce))
        out = self.transform.transform_sample(image, record.boxes, seed, original)
        targets = Targets(
            boxes=torch.from_numpy(out.boxes),
            labels=torch.from_numpy(record.labels.copy()),
            ignore=torch.from_numpy(record.ignore.copy()),
        )
        return Sample(
            out.image, targets, record, out.scale, out.flipped, out.normalization, out.pyramid
        )


def _size_mismatch(record: ImageRecord, image: np.ndarray, reduce: int) -> str:
    """One line naming the file: its decoded size against the annotation's."""
    message = (
        f"{record.path}: decoded size {image.shape[1]}x{image.shape[0]} differs from "
        f"the annotated {record.width}x{record.height}"
    )
    if reduce == 1:
        return message
    height, width = reduced_size(record.height, record.width, reduce)
    return f"{message} ({width}x{height} expected at 1/{reduce} scale)"


def collate_detection(
    samples: Sequence[Sample | BadSample], size_divisibility: int = 32
) -> CollatedBatch:
    """Normalise and pad the good samples into a DetectionBatch; pass the bad ones on.

    Returns:
        CollatedBatch; its batch has images (B, 3, H_pad, W_pad) and per-image Targets.
    """
    good = [s for s in samples if isinstance(s, Sample)]
    bad = [s for s in samples if isinstance(s, BadSample)]
    if not good:
        return CollatedBatch(None, bad)
    images = collate_uint8_images(
        [s.image for s in good],
        good[0].normalization,
        original_sizes=[(s.record.height, s.record.width) for s in good],
        scales=[s.scale for s in good],
        flipped=[s.flipped for s in good],
        image_ids=[s.record.image_id for s in good],
        size_divisibility=size_divisibility,
        pyramids=[s.pyramid for s in good],
    )
    batch = DetectionBatch(images, [s.targets for s in good], [s.record for s in good])
    return CollatedBatch(batch, bad)


class DetectionLoader:
    """Iterates DetectionBatches from a DataLoader built on :func:`collate_detection`.

    Args:
        loader: the torch DataLoader.
        skip_bad_images: warn once per bad file and go on (else raise UserError).
        num_images: images in the data set (if all of them are bad, raise UserError).
    """

    def __init__(self, loader: DataLoader, skip_bad_images: bool, num_images: int) -> None:
        self.loader = loader
        self.policy = BadImagePolicy(skip_bad_images, num_images)

    @property
    def num_skipped(self) -> int:
        return self.policy.num_skipped

    @property
    def num_images(self) -> int:
        """Images this process reads per pass: its shard of the set (finite loaders only)."""
        return len(self.loader.batch_sampler.sampler)  # type: ignore[union-attr]

    def __len__(self) -> int:
        """Batches per pass (finite loaders only)."""
        return len(self.loader)

    def __iter__(self) -> Iterator[DetectionBatch]:
        for collated in self.loader:
            for bad in collated.bad:
                self.policy.report(bad.record.path, bad.reason)
            if collated.batch is not None:
                yield collated.batch
