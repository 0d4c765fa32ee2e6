"""What a detection data set holds, and whether the config's anchors fit its boxes.

:func:`dataset_stats` counts images and objects per class, and bins the boxes' sizes
(sqrt of the area) and aspect ratios (h / w) in the network-input pixels of the test
resize. Anchor coverage is the share of boxes whose best anchor reaches the RPN's positive
IoU threshold: a box below it is a positive only through "the best anchor of each box"
(``allow_low_quality_matches``), a sign that ``model.anchors`` miss that shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from detection.data.transforms import resized_shape
from detection.modeling.box_ops import box_iou
from detection.structures import ImageRecord

SIZE_BINS = (0, 16, 32, 64, 128, 256, 512, 10**9)  # sqrt(area), network-input pixels
ASPECT_BINS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, float("inf"))  # h / w

AnchorFn = Callable[[int, int], Tensor]  # (input h, input w) -> (A, 4) xyxy anchors


@dataclass
class DatasetStats:
    """One split's statistics (boxes: non-ignored ones, in network-input pixels)."""

    images: int
    empty_images: int
    objects_per_class: dict[str, int]
    ignored: int
    size_histogram: list[int]  # counts per SIZE_BINS interval
    aspect_histogram: list[int]  # counts per ASPECT_BINS interval
    best_iou: list[float] = field(default_factory=list)  # per box, its best anchor's IoU
    positive_iou: float = 0.7

    @property
    def anchor_coverage(self) -> float:
        """Share of boxes whose best anchor has IoU >= the RPN's positive threshold."""
        return (
            float(np.mean(np.asarray(self.best_iou) >= self.positive_iou)) if self.best_iou else 0.0
        )


def dataset_stats(
    records: Sequence[ImageRecord], class_names: Sequence[str], min_size: int, max_size: int,
    anchors: AnchorFn, positive_iou: float,
) -> DatasetStats:  # fmt: skip
    """Statistics of ``records`` resized as the test transform does (shorter side
    ``min_size``, longer <= ``max_size``), with the anchors of each resized image."""
    counts: Counter[int] = Counter()
    sizes, aspects, best, ignored, empty = [], [], [], 0, 0
    for record in records:
        keep = ~record.ignore
        ignored += int(record.ignore.sum())
        empty += int(not keep.any())
        h, w = resized_shape(record.height, record.width, min_size, max_size)
        boxes = torch.from_numpy(record.boxes[keep] * np.float32(h / record.height))
        counts.update(int(label) for label in record.labels[keep])
        bw, bh = (boxes[:, 2] - boxes[:, 0]), (boxes[:, 3] - boxes[:, 1])
        sizes += (bw * bh).clamp(min=0).sqrt().tolist()
        aspects += (bh / bw.clamp(min=1e-6)).tolist()
        if len(boxes):
            best += box_iou(boxes, anchors(h, w)).max(dim=1).values.tolist()
    return DatasetStats(
        images=len(records), empty_images=empty, ignored=ignored,
        objects_per_class={name: counts[i] for i, name in enumerate(class_names)},
        size_histogram=np.histogram(sizes, SIZE_BINS)[0].tolist(),
        aspect_histogram=np.histogram(aspects, ASPECT_BINS)[0].tolist(),
        best_iou=best, positive_iou=positive_iou,
    )  # fmt: skip


def render(stats: DatasetStats, section: str) -> str:
    """The statistics as a few aligned text tables."""
    boxes = sum(stats.objects_per_class.values())
    head = (
        f"{section}: {stats.images} images ({stats.empty_images} without objects), "
        f"{boxes} objects, {stats.ignored} ignored (difficult / crowd)"
    )
    lines = [head, "", "objects per class"]
    lines += [f"  {name:<14}{n:>7}" for name, n in stats.objects_per_class.items()]
    lines += ["", "box size sqrt(area), test-resized px"]
    for lo, hi, n in zip(SIZE_BINS, SIZE_BINS[1:], stats.size_histogram):
        lines.append(f"  {f'[{lo}, {hi if hi < 10**9 else chr(8734)})':<14}{n:>7}")
    lines += ["", "aspect ratio h / w"]
    for lo_a, hi_a, n in zip(ASPECT_BINS, ASPECT_BINS[1:], stats.aspect_histogram):
        lines.append(f"  {f'[{lo_a:g}, {hi_a:g})':<14}{n:>7}")
    coverage = f"{100 * stats.anchor_coverage:.1f}%"
    threshold = f"IoU >= {stats.positive_iou:g} (model.rpn.iou_thresholds[1])"
    lines += ["", f"anchor coverage: {coverage} of the boxes have an anchor with {threshold}"]
    if stats.best_iou:
        median, low = np.median(stats.best_iou), min(stats.best_iou)
        lines.append(f"  best-anchor IoU: median {median:.2f}, min {low:.2f}")
    return "\n".join(lines)
