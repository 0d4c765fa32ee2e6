"""From ImageRecords to DetectionBatches: decode, transform, sample, collate, skip bad images.

* :class:`DetectionDataset` decodes an image with OpenCV and transforms it; a missing or
  corrupt image does not raise inside a worker but comes back as a :class:`BadSample`.
* :class:`DetectionLoader` wraps the torch DataLoader: it warns once per bad file and counts
  the skips (``data.skip_bad_images``), or raises one-line :class:`UserError` otherwise.
* Samplers (Detectron2's design): :class:`TrainingSampler`, an infinite seeded shuffle sharded
  by rank; :class:`TrainBatchSampler`, which groups it into landscape / portrait batches and
  gives every sample its own augmentation seed ``f(seed, rank, iteration, position)``, so the
  stream is a function of (seed, iteration) alone and ``start_iter`` skips batches without
  loading them (exact resume); :class:`InferenceSampler`, contiguous shards in order.
* :func:`seed_worker` seeds Python, NumPy and torch in each worker from (seed, rank, worker).
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from backbones.errors import UserError
from detection.data.cleaning import DataWarning
from detection.data.transforms import TransformedSample, collate_images
from detection.structures import DetectionBatch, ImageRecord, Targets


class BadImageError(UserError):
    """An image file that is missing, unreadable, corrupt or not of its annotated size."""


def read_image(path: str) -> np.ndarray:
    """Decode an image file with OpenCV.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        BadImageError: the file is missing, unreadable or does not decode.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read the image file ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise BadImageError(f"{path}: the image does not decode (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class SampleTransform(Protocol):
    def transform_sample(
        self, image: np.ndarray, boxes: np.ndarray, seed: int
    ) -> TransformedSample: ...


@dataclass
class Sample:
    """One transformed image with its targets."""

    image: torch.Tensor  # (3, h, w) float32 normalised, network-input pixels
    targets: Targets  # network-input pixels; ignore flags carried
    record: ImageRecord  # original pixels
    scale: tuple[float, float]  # (sy, sx)
    flipped: bool


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
        try:
            image = read_image(record.path)
        except BadImageError as exc:
            return BadSample(record, str(exc))
        if image.shape[:2] != (record.height, record.width):
            return BadSample(
                record,
                f"{record.path}: decoded size {image.shape[1]}x{image.shape[0]} differs from "
                f"the annotated {record.width}x{record.height}",
            )
        out = self.transform.transform_sample(image, record.boxes, seed)
        targets = Targets(
            boxes=torch.from_numpy(out.boxes),
            labels=torch.from_numpy(record.labels.copy()),
            ignore=torch.from_numpy(record.ignore.copy()),
        )
        return Sample(out.image, targets, record, out.scale, out.flipped)


def collate_detection(
    samples: Sequence[Sample | BadSample], size_divisibility: int = 32
) -> CollatedBatch:
    """Pad the good samples into a DetectionBatch and pass the bad ones on.

    Returns:
        CollatedBatch; its batch has images (B, 3, H_pad, W_pad) and per-image Targets.
    """
    good = [s for s in samples if isinstance(s, Sample)]
    bad = [s for s in samples if isinstance(s, BadSample)]
    if not good:
        return CollatedBatch(None, bad)
    images = collate_images(
        [s.image for s in good],
        original_sizes=[(s.record.height, s.record.width) for s in good],
        scales=[s.scale for s in good],
        flipped=[s.flipped for s in good],
        image_ids=[s.record.image_id for s in good],
        size_divisibility=size_divisibility,
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
        self.skip_bad_images = skip_bad_images
        self.num_images = num_images
        self.skipped: dict[str, str] = {}  # path -> reason, each bad file once

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        """Batches per pass (finite loaders only)."""
        return len(self.loader)

    def __iter__(self) -> Iterator[DetectionBatch]:
        for collated in self.loader:
            for bad in collated.bad:
                self._report(bad)
            if collated.batch is not None:
                yield collated.batch

    def _report(self, bad: BadSample) -> None:
        if not self.skip_bad_images:
            raise UserError(f"{bad.reason} (set data.skip_bad_images=true to skip such images)")
        if bad.record.path in self.skipped:
            return
        self.skipped[bad.record.path] = bad.reason
        warnings.warn(
            f"skipping a bad image: {bad.reason} ({self.num_skipped} skipped so far)",
            DataWarning,
            stacklevel=3,
        )
        if self.num_skipped >= self.num_images:
            raise UserError(f"all {self.num_images} images of the data set are bad ({bad.reason})")


# ---------------------------------------------------------------------------------- samplers
def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sample_seed(seed: int, rank: int, iteration: int, position: int) -> int:
    """The augmentation seed of one sample of the training stream (a 32-bit int)."""
    words = [seed & 0xFFFFFFFF, rank, iteration, position]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """DataLoader ``worker_init_fn``: seed random, NumPy and torch from (seed, rank, worker)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, rank, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


class TrainingSampler(Sampler[int]):
    """An infinite stream of shuffled indices; rank r takes every world_size-th one.

    Args:
        size: number of images.
        seed: every rank uses the same seed, so the shards do not overlap.
        rank: this process's rank.
        world_size: number of processes.
        shuffle: reshuffle every pass (else 0, 1, ..., size-1 repeated).
    """

    def __init__(
        self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty data set, got size {size}")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._infinite(), self.rank, None, self.world_size)

    def _infinite(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=generator).tolist()
            else:
                yield from range(self.size)


def group_batches(
    indices: Iterator[int], groups: Sequence[int] | None, batch_size: int
) -> Iterator[list[int]]:
    """Cut an index stream into batches whose images share a group (aspect-ratio grouping).

    Args:
        indices: the sampler's stream.
        groups: per image its group (0 landscape, 1 portrait); None = no grouping.
        batch_size: images per batch.
    """
    buckets: dict[int, list[int]] = {}
    for index in indices:
        bucket = buckets.setdefault(groups[index] if groups is not None else 0, [])
        bucket.append(index)
        if len(bucket) == batch_size:
            yield bucket[:]
            bucket.clear()


def aspect_groups(records: Sequence[ImageRecord]) -> list[int]:
    """Per record 0 if landscape (w >= h) else 1."""
    return [int(r.width < r.height) for r in records]


class TrainBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite batches of (index, augmentation seed), starting at iteration ``start_iter``.

    Args:
        sampler: the rank's index stream.
        groups: aspect-ratio group per image, or None.
        batch_size: images per batch on this process.
        seed: run seed (augmentation seeds derive from it).
        rank: this process's rank.
        start_iter: batches to skip (indices only, no loading), for resuming.
    """

    def __init__(
        self,
        sampler: TrainingSampler,
        groups: Sequence[int] | None,
        batch_size: int,
        seed: int,
        rank: int = 0,
        start_iter: int = 0,
    ) -> None:
        self.sampler, self.groups, self.batch_size = sampler, groups, batch_size
        self.seed, self.rank, self.start_iter = seed, rank, start_iter

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = group_batches(iter(self.sampler), self.groups, self.batch_size)
        for _ in range(self.start_iter):
            next(batches)
        for iteration in itertools.count(self.start_iter):
            batch = next(batches)
            yield [
                (index, sample_seed(self.seed, self.rank, iteration, position))
                for position, index in enumerate(batch)
            ]


class InferenceSampler(Sampler[int]):
    """Indices 0..size-1 in order; rank r gets the r-th contiguous shard (maybe empty)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        shard = math.ceil(size / world_size)
        self.indices = range(min(rank * shard, size), min((rank + 1) * shard, size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
