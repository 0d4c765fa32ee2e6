"""NMS that stops at k survivors: torchvision's indices, from fewer boxes."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms, nms

import detection.modeling.nms as nms_module
from detection.modeling.nms import batched_nms_top_k, nms_top_k


def _candidates(
    n: int, seed: int, clustered: bool = False, tied: bool = False, categories: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n boxes in a 500 px square (clustered: around n/10 centres, as proposals crowd around
    objects), their scores (tied: ten distinct values) and categories."""
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * 400
    boxes = torch.cat([corner, corner + torch.rand(n, 2, generator=g) * 100 + 1], 1)
    if clustered:
        centres = torch.randint(0, max(1, n // 10), (n,), generator=g)
        boxes = boxes[centres] + torch.randn(n, 4, generator=g) * 2
    # distinct scores from a permutation: a float32 draw of thousands repeats a value now and then
    distinct = torch.randperm(n, generator=g).float() / n
    scores = (torch.rand(n, generator=g) * 10).round() / 10 if tied else distinct
    return boxes, scores, torch.randint(0, categories, (n,), generator=g)


def test_hand_case_where_the_first_try_keeps_too_few() -> None:
    # B, C and D overlap A (IoU 0.9, 0.9, 0.77); E is alone. With k = 2 the first try
    # (the 4 best: A-D) keeps A only, so the second try takes all five and finds E.
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 9], [1, 0, 10, 10], [0, 0, 8, 10.5], [50, 50, 60, 60]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms_top_k(boxes, scores, 0.5, 2).tolist() == [0, 4]
    assert nms(boxes, scores, 0.5)[:2].tolist() == [0, 4]
    assert nms_top_k(boxes, scores, 0.5, 1).tolist() == [0]  # 5 > 2: the prefix road


def test_the_first_try_suppresses_among_the_2k_best_only(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = []

    def counting_nms(boxes: torch.Tensor, scores: torch.Tensor, t: float) -> torch.Tensor:
        sizes.append(boxes.shape[0])
        return nms(boxes, scores, t)

    monkeypatch.setattr(nms_module, "nms", counting_nms)
    boxes, scores, _ = _candidates(1000, seed=1)
    keep = nms_top_k(boxes, scores, 0.7, 100)
    assert sizes == [200]  # random boxes rarely overlap at 0.7: the first try is enough
    assert torch.equal(keep, nms(boxes, scores, 0.7)[:100])
    # per category (3,000 boxes in 5): the 200 best of all, split by category
    sizes.clear()
    boxes, scores, idxs = _candidates(3000, seed=1, categories=5)
    keep = batched_nms_top_k(boxes, scores, idxs, 0.7, 100)
    assert len(sizes) == 5 and sum(sizes) == 200
    assert torch.equal(keep, batched_nms(boxes, scores, idxs, 0.7)[:100])


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("k", [1, 37, 250, 999])
def test_nms_top_k_equals_torchvision(clustered: bool, tied: bool, k: int) -> None:
    for seed in range(4):
        boxes, scores, _ = _candidates(1200, seed, clustered, tied)
        for t in (0.3, 0.5, 0.7):
            assert torch.equal(nms_top_k(boxes, scores, t, k), nms(boxes, scores, t)[:k])


# 800 boxes: batched_nms offsets the categories (3,200 coordinates <= 4,000 on the CPU);
# 3,000 boxes: it runs NMS per category (12,000 coordinates)
@pytest.mark.parametrize("n", [800, 3000])
@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("categories", [1, 5])
def test_batched_nms_top_k_equals_torchvision(n: int, clustered: bool, categories: int) -> None:
    for seed in range(3):
        boxes, scores, idxs = _candidates(n, seed, clustered, categories=categories)
        for t, k in ((0.5, 100), (0.7, 300), (0.3, 1000)):
            expected = batched_nms(boxes, scores, idxs, t)[:k]
            assert torch.equal(batched_nms_top_k(boxes, scores, idxs, t, k), expected)


def test_equal_scores_keep_torchvision_s_order_of_scores() -> None:
    # with offsets (800 boxes) the indices match even among equal scores; per category
    # (3,000 boxes) batched_nms orders equal scores by an unstable sort and we by index, so
    # the same scores come out in the same order
    boxes, scores, idxs = _candidates(800, 0, clustered=True, tied=True, categories=5)
    expected = batched_nms(boxes, scores, idxs, 0.5)[:150]
    assert torch.equal(batched_nms_top_k(boxes, scores, idxs, 0.5, 150), expected)
    boxes, scores, idxs = _candidates(3000, 0, clustered=True, tied=True, categories=5)
    expected = batched_nms(boxes, scores, idxs, 0.5)[:150]
    got = batched_nms_top_k(boxes, scores, idxs, 0.5, 150)
    assert torch.equal(scores[got], scores[expected])
    for value in scores[got].unique():  # a run of equal scores: by index
        run = got[scores[got] == value]
        assert torch.equal(run, run.sort()[0])


def test_few_candidates_and_none() -> None:
    boxes, scores, idxs = _candidates(10, 0, categories=3)
    assert torch.equal(
        batched_nms_top_k(boxes, scores, idxs, 0.5, 100), batched_nms(boxes, scores, idxs, 0.5)
    )
    empty = torch.zeros(0, 4)
    none = torch.zeros(0, dtype=torch.long)
    assert batched_nms_top_k(empty, torch.zeros(0), none, 0.5, 10).shape == (0,)
    assert nms_top_k(empty, torch.zeros(0), 0.5, 10).shape == (0,)
