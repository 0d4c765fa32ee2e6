"""Evaluators that plug into training and ``resdet eval``: ``reset / process / evaluate``.

``process`` receives a batch of records and their detections (original-image pixels,
0-based labels) and only stores them; ``evaluate`` gathers what every rank stored to rank 0
under torch.distributed, and there writes the result files and computes the metrics (other
ranks return ``{}``). Images seen twice (a distributed sampler pads the last batch by
repeating images) count once, and images are scored in image-id order whatever the number of
ranks, so the numbers do not depend on how the data set was split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch.distributed as dist

from detection.data.coco import read_coco_json
from detection.evaluation.coco import COCO_BACKENDS, evaluate_coco
from detection.evaluation.pr_curves import write_pr_curves
from detection.evaluation.results import (
    coco_results,
    parse_voc_lines,
    voc_result_lines,
    write_coco_results,
    write_voc_lines,
)
from detection.evaluation.voc import VOC_METRICS, VOCResult, evaluate_voc
from detection.structures import Detections, ImageRecord

T = TypeVar("T")


class DatasetEvaluator(Protocol):
    """What the training loop and ``resdet eval`` call."""

    def reset(self) -> None:
        """Forgets everything processed so far."""

    def process(self, records: list[ImageRecord], detections: list[Detections]) -> None:
        """Stores one batch: detections in original-image pixels, labels 0-based."""

    def evaluate(self) -> dict[str, Any]:
        """Metrics over everything processed (on rank 0; ``{}`` on other ranks)."""
        ...


def gather_to_main(items: list[T]) -> list[T] | None:
    """Concatenates every rank's list on rank 0 (None on other ranks).

    Without an initialised process group (or with one rank) returns ``items`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    # all_gather_object works on every backend (gather_object needs extra care with NCCL).
    gathered: list[list[T] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    if dist.get_rank() != 0:
        return None
    return [item for part in gathered for item in part or []]


def _first_per_image(pairs: list[tuple[Any, T]]) -> list[tuple[Any, T]]:
    """One entry per image id, sorted by id.

    A distributed sampler pads by repeating images, so repeats are dropped; sorting makes the
    order (which breaks ties between equal VOC scores) independent of the number of ranks.
    """
    first: dict[Any, T] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    return sorted(first.items(), key=lambda pair: pair[0])


def _to_cpu(records: Sequence[Any], detections: Sequence[Detections]) -> list[Detections]:
    if len(records) != len(detections):
        raise ValueError(f"{len(records)} records but {len(detections)} detections")
    return [d.to("cpu") for d in detections]


class VOCEvaluator:
    """PASCAL VOC AP (``voc07`` 11-point or ``voc`` area) over the processed images.

    ``evaluate`` returns ``{"mAP": float, "per_class": {name: AP}, "mAP@[.5:.95]": float}``
    (the last is a VOC-style bonus column, not an official VOC number). Detections go through
    the devkit text format (``%.3f`` scores, ``%.1f`` coordinates) before scoring, so the
    numbers equal ``resdet score`` on the written files.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        metric: str = "voc07",
        out_dir: str | Path | None = None,
        split: str = "test",
        curves_dir: str | Path | None = None,
    ) -> None:
        """
        Args:
            class_names: the class list the labels index.
            metric: "voc07" or "voc".
            out_dir: if set, ``comp4_det_<split>_<class>.txt`` files are written there.
            split: image set name used in the file names.
            curves_dir: if set, ``pr_curves.json`` and ``pr_curves.png`` (per-class
                precision-recall at IoU > 0.5, see ``pr_curves``) are written there.
        """
        if metric not in VOC_METRICS:
            raise ValueError(f"unknown VOC metric {metric!r}; valid: {', '.join(VOC_METRICS)}")
        self.class_names = list(class_names)
        self.metric = metric
        self.out_dir = out_dir
        self.split = split
        self.curves_dir = curves_dir
        self._seen: list[tuple[str, tuple[ImageRecord, Detections]]] = []

    def reset(self) -> None:
        self._seen = []

    def process(self, records: list[ImageRecord], detections: list[Detections]) -> None:
        for record, dets in zip(records, _to_cpu(records, detections)):
            self._seen.append((str(record.image_id), (record, dets)))

    def evaluate(self) -> dict[str, Any]:
        gathered = gather_to_main(self._seen)
        if gathered is None:
            return {}
        images = [pair for _, pair in _first_per_image(gathered)]
        records = [record for record, _ in images]
        result = score_voc(
            records, [d for _, d in images], self.class_names, self.metric, self.out_dir, self.split
        )
        if self.curves_dir is not None:
            write_pr_curves(self.curves_dir, result)
        return result.to_dict()


def score_voc(
    records: Sequence[ImageRecord],
    detections: Sequence[Detections],
    class_names: Sequence[str],
    metric: str,
    out_dir: str | Path | None = None,
    split: str = "",
) -> VOCResult:
    """VOC AP of per-image detections (original pixels) as the devkit scores them: through
    its result lines (rounded as the devkit files are), written to ``out_dir`` when given."""
    lines = voc_result_lines([r.image_id for r in records], list(detections), class_names)
    if out_dir is not None:
        write_voc_lines(out_dir, split, lines)
    per_class = {
        name: parse_voc_lines(class_lines, f"<{name} detections>")
        for name, class_lines in lines.items()
    }
    return evaluate_voc(records, per_class, class_names, metric)


class COCOEvaluator:
    """COCO box AP (the 12 COCOeval stats + per-class AP / AP50) over the processed images.

    Only the processed images are evaluated (as Detectron2 does), so a subset of the
    annotation file can be scored during training. ``evaluate`` returns the 12 names of
    ``coco.COCO_STAT_NAMES`` plus ``"per_class": {name: {"AP": .., "AP50": ..}}``.
    """

    def __init__(
        self,
        ann_file: str | Path | dict[str, Any],
        label_to_category_id: Sequence[int],
        backend: str = "faster",
        out_json: str | Path | None = None,
    ) -> None:
        """
        Args:
            ann_file: COCO annotation JSON of the evaluated split, or the parsed dict (e.g.
                from :func:`records_to_coco`, to score a VOC-format set with COCO's metric).
            label_to_category_id: contiguous 0-based label -> original COCO category id.
            backend: "faster" (faster-coco-eval) or "pycocotools".
            out_json: if set, the COCO results JSON is written there.
        """
        if backend not in COCO_BACKENDS:
            raise ValueError(f"unknown COCO backend {backend!r}; valid: {', '.join(COCO_BACKENDS)}")
        self.dataset = ann_file if isinstance(ann_file, dict) else read_coco_json(ann_file)
        # VOC image ids are file stems: score them under their position in the ground truth
        self._id_map = {img["file_name"]: img["id"] for img in self.dataset["images"]}
        self.label_to_category_id = list(label_to_category_id)
        self.backend = backend
        self.out_json = out_json
        self._seen: list[tuple[int, Detections]] = []

    def reset(self) -> None:
        self._seen = []

    def process(self, records: list[ImageRecord], detections: list[Detections]) -> None:
        for record, dets in zip(records, _to_cpu(records, detections)):
            image_id = record.image_id
            self._seen.append(
                (image_id if isinstance(image_id, int) else self._id_map[image_id], dets)
            )

    def evaluate(self) -> dict[str, Any]:
        gathered = gather_to_main(self._seen)
        if gathered is None:
            return {}
        images = _first_per_image(gathered)
        image_ids = [image_id for image_id, _ in images]
        entries = coco_results(image_ids, [d for _, d in images], self.label_to_category_id)
        if self.out_json is not None:
            write_coco_results(self.out_json, entries)
        return evaluate_coco(self.dataset, entries, self.backend, image_ids).to_dict()


def records_to_coco(records: Sequence[ImageRecord], class_names: Sequence[str]) -> dict[str, Any]:
    """A COCO ground-truth dict for any records (e.g. a VOC split), for COCO's metric.

    Image ids are positions (1-based); ``file_name`` holds the record's own id, which
    :class:`COCOEvaluator` maps back. Ignored objects (VOC ``difficult``) become ``iscrowd``
    regions, which COCOeval neither rewards nor penalises matching. Areas are box areas.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, record in enumerate(records, start=1):
        images.append(
            {
                "id": index,
                "file_name": record.image_id,
                "width": record.width,
                "height": record.height,
            }
        )
        for box, label, ignore in zip(record.boxes, record.labels, record.ignore):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ignore),
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}
