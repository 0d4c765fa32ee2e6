"""Balanced sampling quotas."""

from __future__ import annotations

import torch

from detection.modeling.sampler import sample_labels


def _labels(pos: int, neg: int, ignored: int) -> torch.Tensor:
    return torch.tensor([1] * pos + [0] * neg + [-1] * ignored, dtype=torch.int8)


def test_quota_when_both_are_plenty() -> None:
    labels = _labels(200, 1000, 50)
    pos, neg = sample_labels(labels, 256, 0.5, torch.Generator().manual_seed(0))
    assert (len(pos), len(neg)) == (128, 128)
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 128  # drawn without replacement


def test_few_positives_are_filled_with_negatives() -> None:
    pos, neg = sample_labels(_labels(10, 1000, 5), 256, 0.5)
    assert (len(pos), len(neg)) == (10, 246)
    # Fast R-CNN: 25 % of 128 = 32 foreground at most
    pos, neg = sample_labels(_labels(100, 1000, 0), 128, 0.25)
    assert (len(pos), len(neg)) == (32, 96)


def test_few_of_both_returns_what_there_is() -> None:
    pos, neg = sample_labels(_labels(3, 4, 100), 256, 0.5)
    assert sorted(pos.tolist()) == [0, 1, 2]
    assert sorted(neg.tolist()) == [3, 4, 5, 6]


def test_generator_makes_it_reproducible() -> None:
    labels = _labels(50, 500, 0)
    a = sample_labels(labels, 64, 0.5, torch.Generator().manual_seed(3))
    b = sample_labels(labels, 64, 0.5, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
