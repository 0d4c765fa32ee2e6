"""engine/samplers.py: the shared training stream, resuming, sharding, grouping, seeds."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.samplers import (
    InferenceSampler,
    ResumableBatchSampler,
    TrainingSampler,
    group_batches,
    sample_seed,
    seed_worker,
)


def _take(sampler: ResumableBatchSampler, n: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), n))


def test_training_sampler_shards_one_stream() -> None:
    whole = list(itertools.islice(iter(TrainingSampler(10, seed=4)), 40))
    assert sorted(whole[:10]) == list(range(10)) and sorted(whole[10:20]) == list(range(10))
    assert whole[:10] != whole[10:20]  # reshuffled every pass
    shards = [list(itertools.islice(iter(TrainingSampler(10, 4, r, 2)), 20)) for r in (0, 1)]
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]
    assert list(itertools.islice(iter(TrainingSampler(3, 0, shuffle=False)), 5)) == [0, 1, 2, 0, 1]


def test_group_batches_keeps_orientations_apart() -> None:
    groups = [0, 0, 1, 0, 1, 1]
    assert list(group_batches(iter(range(6)), groups, 2)) == [[0, 1], [2, 4]]
    assert list(group_batches(iter(range(5)), None, 2)) == [[0, 1], [2, 3]]


def test_batches_are_a_function_of_the_iteration() -> None:
    groups = [i % 2 for i in range(11)]
    run = _take(ResumableBatchSampler(11, 3, 7, groups=groups), 12)
    assert _take(ResumableBatchSampler(11, 3, 7, start_iter=5, groups=groups), 7) == run[5:]
    for batch in run:
        assert len({groups[i] for i, _ in batch}) == 1  # one orientation per batch
    seeds = [seed for batch in run for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every sample has its own augmentation seed
    assert run[4][1][1] == sample_seed(7, 4, 1)
    other_rank = ResumableBatchSampler(11, 3, 7, rank=1, world_size=2, groups=groups)
    assert next(iter(other_rank))[0][1] != run[0][0][1]


def test_two_ranks_together_see_the_one_process_batch_and_seeds() -> None:
    one = _take(ResumableBatchSampler(20, 4, seed=3), 6)
    ranks = [_take(ResumableBatchSampler(20, 2, 3, r, 2), 6) for r in range(2)]
    for i in range(6):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(one[i])


def test_an_epoch_covers_the_data_set_once() -> None:
    batches = _take(ResumableBatchSampler(12, 4, seed=1), 6)
    first, second = (sorted(i for b in part for i, _ in b) for part in (batches[:3], batches[3:]))
    assert first == second == list(range(12))
    assert [i for i, _ in batches[0]] != [i for i, _ in batches[3]]  # reshuffled


def test_empty_data_set_is_a_user_error() -> None:
    with pytest.raises(UserError, match="training set is empty"):
        ResumableBatchSampler(0, 4, 0)


def test_inference_sampler_contiguous_shards() -> None:
    shards = [list(InferenceSampler(10, r, 3)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(InferenceSampler(2, r, 3)) for r in range(3)] == [1, 1, 0]


def test_seed_worker_depends_on_seed_rank_and_worker() -> None:
    def draw(worker: int, seed: int, rank: int) -> tuple[float, float, float]:
        seed_worker(worker, seed=seed, rank=rank)
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    assert draw(0, 1, 0) == draw(0, 1, 0)
    values = {draw(w, s, r) for w, s, r in [(0, 1, 0), (1, 1, 0), (0, 1, 1), (0, 2, 0)]}
    assert len(values) == 4
