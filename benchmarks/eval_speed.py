"""Evaluation speed at real data-set sizes, on synthetic ground truth and detections.

    python benchmarks/eval_speed.py [--skip-pycocotools] [--seed 0]

* VOC07 test scale: 4,952 images, 20 classes, ~3 objects and 100 detections per image;
  ``evaluate_voc`` from memory, and the ``resdet score`` path (read 20 devkit files, then
  evaluate), for both AP metrics.
* COCO val2017 scale: 5,000 images, ~7 objects (1% crowd) and 100 detections per image,
  80 categories; ``evaluate_coco`` (index, loadRes, evaluate, accumulate, summarize) with
  the faster-coco-eval backend and with pycocotools.

Prints one markdown row per measurement (the table in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from detection.evaluation.coco import evaluate_coco
from detection.evaluation.results import read_voc_results, write_voc_results
from detection.evaluation.voc import ClassDetections, evaluate_voc, to_voc_boxes
from detection.structures import Detections, ImageRecord


def _boxes(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """(n, 4) xyxy boxes inside the image with log-uniform sides (small to large)."""
    side = np.exp(rng.uniform(np.log(8), np.log(min(width, height)), size=(n, 2)))
    x1, y1 = rng.uniform(0, width - side[:, 0]), rng.uniform(0, height - side[:, 1])
    return np.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], axis=1)


def _detections(
    rng: np.random.Generator,
    gt: np.ndarray,
    labels: np.ndarray,
    size: tuple[int, int],
    k: int,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k detections: up to 3 jittered copies of each object, the rest random boxes."""
    copies = np.repeat(np.arange(len(gt)), 3)[:k]
    wh = np.tile(gt[copies, 2:] - gt[copies, :2], 2)
    near = gt[copies] + rng.normal(0, 0.1, (len(copies), 4)) * wh
    near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
    far = _boxes(rng, k - len(copies), *size)
    boxes = np.concatenate([near, far])
    classes = np.concatenate([labels[copies], rng.integers(0, num_classes, len(far))])
    return boxes, rng.random(k), classes


def voc_case(seed: int, num_images: int = 4952, num_classes: int = 20, per_image: int = 100):
    """VOC07-test-sized records and per-image detections (original 0-based pixels)."""
    rng = np.random.default_rng(seed)
    records, detections = [], []
    for i in range(num_images):
        size = (int(rng.integers(300, 500)), int(rng.integers(300, 500)))
        n = int(rng.integers(1, 6))
        gt = np.round(_boxes(rng, n, *size))
        labels = rng.integers(0, num_classes, n)
        difficult = rng.random(n) < 0.2
        records.append(ImageRecord(f"{i:06d}", f"{i:06d}.jpg", *size, gt, labels, difficult))
        boxes, scores, classes = _detections(rng, gt, labels, size, per_image, num_classes)
        detections.append(
            Detections(
                torch.from_numpy(boxes).float(),
                torch.from_numpy(scores).float(),
                torch.from_numpy(classes),
            )
        )
    return records, detections, [f"class{c}" for c in range(num_classes)]


def coco_case(seed: int, num_images: int = 5000, num_classes: int = 80, per_image: int = 100):
    """A val2017-sized annotation set and results list."""
    rng = np.random.default_rng(seed)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image_id in range(1, num_images + 1):
        size = (int(rng.integers(400, 640)), int(rng.integers(400, 640)))
        images.append({"id": image_id, "width": size[0], "height": size[1]})
        n = int(rng.integers(1, 14))  # ~7 per image, as val2017's 36,781 objects
        gt, labels = _boxes(rng, n, *size), rng.integers(0, num_classes, n)
        for box, label in zip(gt, labels):
            xywh = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": int(rng.random() < 0.01),
                }
            )
        boxes, scores, classes = _detections(rng, gt, labels, size, per_image, num_classes)
        for box, score, label in zip(boxes, scores, classes):
            xywh = [round(float(v), 2) for v in (*box[:2], *(box[2:] - box[:2]))]
            results.append(
                {"image_id": image_id, "category_id": int(label) + 1, "bbox": xywh, "score": score}
            )
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def voc_rows(seed: int) -> list[str]:
    records, detections, names = voc_case(seed)
    num_dets = sum(len(d) for d in detections)
    size = f"{len(records)} images, {len(names)} classes, {num_dets} dets"
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_seconds, _ = timed(
            lambda: write_voc_results(
                folder, "test", [r.image_id for r in records], detections, names
            )
        )
        rows.append(f"| VOC write 20 devkit files | {size} | - | {write_seconds:.2f} |")
        known = {str(r.image_id) for r in records}
        read_seconds, from_files = timed(lambda: read_voc_results(folder, "test", names, known))
        rows.append(f"| VOC read 20 devkit files | {size} | - | {read_seconds:.2f} |")
    in_memory = _in_memory(records, detections, names)
    for metric in ("voc07", "voc"):
        seconds, result = timed(partial(evaluate_voc, records, in_memory, names, metric))
        rows.append(
            f"| VOC evaluate_voc (AP50 + AP@[.5:.95]) | {size} | {metric} | {seconds:.2f} |"
        )
    seconds, result = timed(lambda: evaluate_voc(records, from_files, names, "voc07"))
    total = read_seconds + seconds
    rows.append(f"| VOC `resdet score` path (read + evaluate) | {size} | voc07 | {total:.2f} |")
    print(f"<!-- VOC mAP {result.mAP:.4f} -->")
    return rows


def _in_memory(
    records: Sequence[ImageRecord], detections: Sequence[Detections], names: Sequence[str]
) -> dict[str, ClassDetections]:
    """Per-class detections in the devkit frame, without the text round trip."""
    ids = np.repeat([str(r.image_id) for r in records], [len(d) for d in detections])
    boxes = to_voc_boxes(torch.cat([d.boxes for d in detections]).numpy())
    scores = torch.cat([d.scores for d in detections]).numpy().astype(np.float64)
    labels = torch.cat([d.labels for d in detections]).numpy()
    return {
        name: ClassDetections(ids[labels == c].tolist(), scores[labels == c], boxes[labels == c])
        for c, name in enumerate(names)
    }


def coco_rows(seed: int, backends: Sequence[str]) -> list[str]:
    dataset, results = coco_case(seed)
    size = (
        f"{len(dataset['images'])} images, {len(dataset['annotations'])} objects, "
        f"{len(results)} dets, 80 classes"
    )
    rows, stats = [], {}
    for backend in backends:
        seconds, result = timed(partial(evaluate_coco, dataset, results, backend))
        stats[backend] = result.stats
        rows.append(
            f"| COCO evaluate_coco (12 stats + per class) | {size} | {backend} | {seconds:.2f} |"
        )
    print(f"<!-- COCO AP {stats[backends[0]]['AP']:.4f} -->")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pycocotools", action="store_true", help="faster backend only")
    args = parser.parse_args(argv)
    backends = ["faster"] if args.skip_pycocotools else ["faster", "pycocotools"]
    rows = ["| benchmark | size | metric / backend | seconds |", "| --- | --- | --- | ---: |"]
    rows += voc_rows(args.seed) + coco_rows(args.seed, backends)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
