"""detection/data/stats.py: counts, histograms and anchor coverage, by hand."""

from __future__ import annotations

import numpy as np
import torch

from detection.data.stats import dataset_stats, render
from detection.structures import ImageRecord


def _record(boxes: list[list[float]], labels: list[int], ignore: list[bool]) -> ImageRecord:
    return ImageRecord(
        "a", "a.jpg", 100, 100, np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64), np.asarray(ignore, bool),
    )  # fmt: skip


def test_counts_histograms_and_coverage() -> None:
    records = [
        _record([[0, 0, 40, 40], [10, 10, 30, 50], [0, 0, 5, 5]], [0, 1, 1], [False, False, True]),
        _record([], [], []),
    ]
    anchor = torch.tensor([[0.0, 0.0, 80.0, 80.0]])  # the first box, doubled by the resize

    stats = dataset_stats(records, ["a", "b"], 200, 400, lambda h, w: anchor, positive_iou=0.7)
    assert (stats.images, stats.empty_images, stats.ignored) == (2, 1, 1)
    assert stats.objects_per_class == {"a": 1, "b": 1}
    # sizes at 2x: 80 in [64, 128) and sqrt(40 * 80) = 56.6 in [32, 64)
    assert stats.size_histogram == [0, 0, 1, 1, 0, 0, 0]
    assert stats.aspect_histogram == [0, 0, 0, 1, 1, 0]  # h/w = 1 in [1, 2), 2 in [2, 4)
    # IoU of [20, 20, 60, 100] with [0, 0, 80, 80]: 40 * 60 / (6400 + 3200 - 2400) = 1/3
    assert np.allclose(stats.best_iou, [1.0, 1 / 3])
    assert stats.anchor_coverage == 0.5
    text = render(stats, "data.train")
    assert text.startswith("data.train: 2 images (1 without objects), 2 objects, 1 ignored")
    assert "anchor coverage: 50.0% of the boxes have an anchor with IoU >= 0.7" in text
