"""Samplers for training and evaluation, shared by both tasks (Detectron2's design).

* :class:`TrainingSampler`: an infinite seeded shuffle (a new permutation every pass over
  the data), of which rank r takes every world_size-th index, so the ranks together see the
  stream a single process sees.
* :class:`ResumableBatchSampler`: cuts that stream into batches (optionally grouping images
  by aspect ratio) and gives every sample its own augmentation seed
  ``sample_seed(seed, iteration, position in the global batch)``: batch ``i`` is a function
  of (seed, i) alone, and ``start_iter`` skips batches without loading them, so a resumed run
  sees exactly the batches an uninterrupted one would have. Without grouping, the N ranks of
  a run together get exactly the samples and seeds one process gets with the global batch.
* :class:`InferenceSampler`: indices in order, one contiguous shard per rank.
* :func:`seed_worker`: seeds random, NumPy and torch in each DataLoader worker.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from engine.errors import UserError


def sample_seed(seed: int, iteration: int, position: int) -> int:
    """The augmentation seed of one sample of the training stream (a 32-bit int).

    Args:
        seed: the run's seed.
        iteration: the batch's iteration (0-based).
        position: the sample's place in the global batch (all ranks together).
    """
    # the 0 keeps single-process seeds what they were when the word was the rank
    words = [seed & 0xFFFFFFFF, 0, iteration, position]
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
        size: number of samples.
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
    """Cut an index stream into batches whose samples share a group (aspect-ratio grouping).

    Args:
        indices: the sampler's stream.
        groups: per sample its group (e.g. 0 landscape, 1 portrait); None = no grouping.
        batch_size: samples per batch.
    """
    buckets: dict[int, list[int]] = {}
    for index in indices:
        bucket = buckets.setdefault(groups[index] if groups is not None else 0, [])
        bucket.append(index)
        if len(bucket) == batch_size:
            yield bucket[:]
            bucket.clear()


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite batches of (index, augmentation seed) for one rank, from ``start_iter``.

    Args:
        size: number of samples in the data set.
        batch_size: samples per batch on this process.
        seed: run seed (the shuffle and the augmentation seeds derive from it).
        rank, world_size: this process and the number of processes.
        start_iter: batches to skip (indices only, no loading), for resuming.
        groups: aspect-ratio group per sample, or None.

    Raises:
        UserError: the data set is empty.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
        groups: Sequence[int] | None = None,
    ) -> None:
        if size <= 0:
            raise UserError("the training set is empty: no sample to draw a batch from")
        self.sampler = TrainingSampler(size, seed, rank, world_size)
        self.groups, self.batch_size = groups, batch_size
        self.seed, self.start_iter = seed, start_iter
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = group_batches(iter(self.sampler), self.groups, self.batch_size)
        for _ in range(self.start_iter):
            next(batches)
        for iteration in itertools.count(self.start_iter):
            batch = next(batches)
            # rank r's k-th sample is the (k * world_size + r)-th of the global batch
            yield [
                (index, sample_seed(self.seed, iteration, k * self.world_size + self.rank))
                for k, index in enumerate(batch)
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
