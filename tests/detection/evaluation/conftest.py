"""Generators of random ground truth and perturbed detections for the evaluation tests."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detection.structures import ImageRecord


def _random_boxes(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """(n, 4) xyxy boxes inside the image, sides spread over small/medium/large COCO areas."""
    side = np.exp(rng.uniform(np.log(4), np.log(min(width, height) * 0.9), size=(n, 2)))
    x1 = rng.uniform(0, width - side[:, 0])
    y1 = rng.uniform(0, height - side[:, 1])
    return np.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], axis=1)


def _perturb(rng: np.random.Generator, boxes: np.ndarray, scale: float) -> np.ndarray:
    """Moves each corner by a random fraction of the box size (IoUs spread over 0.3..1)."""
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    out = boxes + rng.normal(0, scale, boxes.shape) * wh
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1.0)
    return out


def make_voc_case(
    seed: int, num_images: int = 30, num_classes: int = 3
) -> tuple[list[ImageRecord], list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """Random VOC-like records (integer pixel boxes, ~20% difficult) and detections.

    Returns:
        records, and detections per image as (image_id, boxes (N, 4) 0-based xyxy,
        scores (N,), labels (N,)), with duplicates, false positives and images without any.
    """
    rng = np.random.default_rng(seed)
    records, detections = [], []
    for i in range(num_images):
        width, height = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        n = int(rng.integers(0, 6))
        # VOC XML holds integers (1-based); loaded as (xmin - 1, ymin - 1, xmax, ymax).
        xml = np.round(_random_boxes(rng, n, width, height)) + np.array([1, 1, 0, 0])
        boxes = xml - np.array([1, 1, 0, 0])
        labels = rng.integers(0, num_classes, n)
        records.append(
            ImageRecord(
                f"{i:06d}", f"{i:06d}.jpg", width, height, boxes, labels, rng.random(n) < 0.2
            )
        )
        found = rng.random(n) < 0.8
        det_boxes = [_perturb(rng, boxes[found], 0.1)]
        det_labels = [labels[found]]
        dup = rng.random(n) < 0.3  # duplicates of some objects
        det_boxes.append(_perturb(rng, boxes[dup], 0.05))
        det_labels.append(labels[dup])
        m = int(rng.integers(0, 4)) if i % 7 else 0  # false positives (none on every 7th)
        det_boxes.append(_random_boxes(rng, m, width, height))
        det_labels.append(rng.integers(0, num_classes, m))
        all_boxes = np.concatenate(det_boxes)
        # Scores on a 1/1000 grid with ties: what the %.3f devkit files hold.
        scores = np.round(rng.random(len(all_boxes)), 3)
        keep = slice(None) if i % 11 else slice(0, 0)  # some images without detections
        detections.append(
            (f"{i:06d}", all_boxes[keep], scores[keep], np.concatenate(det_labels)[keep])
        )
    return records, detections


def make_coco_case(seed: int, num_images: int = 40) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random COCO annotation set and results list.

    Categories have non-contiguous ids (one without ground truth); ~10% of objects are
    crowd; object sizes cover small/medium/large; some images have no ground truth and some
    no detections; detections include duplicates and false positives.
    """
    rng = np.random.default_rng(seed)
    categories = [{"id": cid, "name": f"c{cid}"} for cid in (1, 3, 7, 12)]
    gt_cats = np.array([1, 3, 7])  # 12 has no ground truth
    images, annotations, results = [], [], []
    for i in range(num_images):
        image_id = 100 + 3 * i
        width, height = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{i}.jpg"})
        n = 0 if i % 6 == 0 else int(rng.integers(1, 8))
        boxes = _random_boxes(rng, n, width, height)
        cats = rng.choice(gt_cats, n)
        crowd = rng.random(n) < 0.1
        for box, cat, is_crowd in zip(boxes, cats, crowd):
            x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    # area differs from w*h like real polygon areas do
                    "area": float(w * h * rng.uniform(0.6, 1.0)),
                    "iscrowd": int(is_crowd),
                }
            )
        if i % 5 == 4:
            continue  # an image without detections
        dets = np.concatenate([_perturb(rng, boxes, 0.08), _perturb(rng, boxes[: n // 2], 0.15)])
        det_cats = np.concatenate([cats, cats[: n // 2]])
        fp = int(rng.integers(0, 5))
        dets = np.concatenate([dets, _random_boxes(rng, fp, width, height)])
        det_cats = np.concatenate([det_cats, rng.choice([1, 3, 7, 12], fp)])
        for box, cat in zip(dets, det_cats):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [round(float(v), 2) for v in (*box[:2], *(box[2:] - box[:2]))],
                    "score": round(float(rng.random()), 5),
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}, results


def reference_voc_eval(
    objects: dict[str, list[dict[str, Any]]],
    class_name: str,
    rows: list[tuple[str, float, list[float]]],
    use_07_metric: bool,
) -> float:
    """A straightforward loop implementation of the devkit definition (py-faster-rcnn style).

    Args:
        objects: image id -> its objects ``{"name", "bbox": VOC 1-based [x1, y1, x2, y2],
            "difficult"}`` (what py-faster-rcnn's ``parse_rec`` returns).
        class_name: the evaluated class.
        rows: (image_id, score, VOC 1-based box) detections of the class.
        use_07_metric: 11-point AP, else the area under the envelope.

    Returns:
        The class AP (NaN without non-difficult objects). Precision is guarded against 0/0
        (a first detection on a difficult object) as Detectron2 does.
    """
    class_recs, npos = {}, 0
    for image_id, objs in objects.items():
        mine = [o for o in objs if o["name"] == class_name]
        difficult = np.array([bool(o["difficult"]) for o in mine], bool)
        npos += int((~difficult).sum())
        bbox = np.array([o["bbox"] for o in mine], float).reshape(-1, 4)
        class_recs[image_id] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(mine)}
    if npos == 0:
        return float("nan")
    rows = sorted(rows, key=lambda row: -row[1])  # Python's sort is stable
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for d, (image_id, _, box) in enumerate(rows):
        rec, bb, ovmax, jmax = class_recs[image_id], np.array(box, float), -np.inf, -1
        for j, g in enumerate(rec["bbox"]):
            iw = max(min(g[2], bb[2]) - max(g[0], bb[0]) + 1.0, 0.0)
            ih = max(min(g[3], bb[3]) - max(g[1], bb[1]) + 1.0, 0.0)
            inter = iw * ih
            area_d = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
            uni = area_d + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inter
            if inter / uni > ovmax:  # strict: the first of equal overlaps wins
                ovmax, jmax = inter / uni, j
        if ovmax > 0.5:
            if not rec["difficult"][jmax]:
                if not rec["det"][jmax]:
                    tp[d], rec["det"][jmax] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / float(npos)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(recall >= t) == 0 else np.max(precision[recall >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.fixture
def voc_reference() -> Callable[..., float]:
    return reference_voc_eval


@pytest.fixture
def voc_case() -> Callable[..., Any]:
    return make_voc_case


@pytest.fixture
def coco_case() -> Callable[..., Any]:
    return make_coco_case


def pycocotools_eval(
    dataset: dict[str, Any], results: list[dict[str, Any]] | str, image_ids: list[int] | None = None
) -> Any:
    """pycocotools run directly, the way its README does (COCO, loadRes, COCOeval)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        dt = gt.loadRes(results if isinstance(results, str) else copy.deepcopy(results))
        evaluator = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.fixture
def pycocotools_reference() -> Callable[..., Any]:
    return pycocotools_eval


def write_voc_tree(
    root: Path, records: list[ImageRecord], class_names: list[str], split: str
) -> None:
    """A minimal VOC20xx tree: Annotations/<id>.xml (integer 1-based boxes) + the split file."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for r in records:
        objects = "".join(
            f"<object><name>{class_names[label]}</name><difficult>{int(difficult)}</difficult>"
            f"<bndbox><xmin>{round(b[0]) + 1}</xmin><ymin>{round(b[1]) + 1}</ymin>"
            f"<xmax>{round(b[2])}</xmax><ymax>{round(b[3])}</ymax></bndbox></object>"
            for b, label, difficult in zip(r.boxes.tolist(), r.labels, r.ignore)
        )
        (root / "Annotations" / f"{r.image_id}.xml").write_text(
            f"<annotation><filename>{r.image_id}.jpg</filename><size><width>{r.width}</width>"
            f"<height>{r.height}</height><depth>3</depth></size>{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
        "".join(f"{r.image_id}\n" for r in records)
    )


@pytest.fixture
def voc_tree() -> Callable[..., None]:
    return write_voc_tree
