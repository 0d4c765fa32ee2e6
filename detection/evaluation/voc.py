"""PASCAL VOC average precision, as the devkit (and py-faster-rcnn's ``voc_eval``) define it.

Per class, detections are sorted by score (descending; ties keep their input order) and each
is compared with the ground truth of its image on 1-based inclusive pixel boxes (the ``+1`` in
widths and heights). A detection whose best IoU is strictly greater than the threshold and
whose best ground truth is

* not difficult and not yet taken -> true positive (the object is now taken);
* not difficult but already taken -> false positive (a duplicate);
* difficult -> neither true nor false positive (ignored).

Any other detection is a false positive. Recall counts non-difficult objects only. Two ways
to turn the precision/recall curve into AP: ``voc07`` (VOC2007's 11-point interpolation, what
the ResNet paper's Table 7 reports) and ``voc`` (VOC2010+: area under the monotone envelope).

The matching is vectorised per class: a detection's best ground truth does not depend on what
was matched before it, so "taken" reduces to "first hit of this (image, object) in score
order", which ``np.unique(..., return_index=True)`` finds without a Python loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detection.structures import ImageRecord

VOC_METRICS = ("voc07", "voc")
# AP@[.5:.95] in VOC style: a bonus column, not an official VOC number.
COCO_STYLE_IOUS = np.linspace(0.5, 0.95, 10)
_MATCH_CHUNK = 8192  # detections per IoU block: bounds memory at chunk x max objects per image


@dataclass
class ClassDetections:
    """All detections of one class over a data set, in the VOC devkit frame."""

    image_ids: list[str]  # (D,) image id (file stem) of each detection
    scores: np.ndarray  # (D,) float64 confidence
    boxes: np.ndarray  # (D, 4) float64 xyxy, VOC 1-based inclusive pixels

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        if not (len(self.image_ids) == len(self.scores) == len(self.boxes)):
            raise ValueError(
                f"image_ids, scores and boxes differ in length "
                f"({len(self.image_ids)}, {len(self.scores)}, {len(self.boxes)})"
            )


@dataclass
class PRCurve:
    """One class's precision/recall after each detection in score order (the devkit's)."""

    recall: np.ndarray  # (D,) float64, non-decreasing
    precision: np.ndarray  # (D,) float64
    num_positives: int  # non-difficult objects: the recall denominator


@dataclass
class VOCResult:
    """Per-class and mean AP of one evaluation."""

    metric: str  # "voc07" or "voc"
    per_class: dict[str, float]  # class name -> AP at IoU > 0.5 (NaN: no non-difficult object)
    per_class_50_95: dict[str, float] = field(default_factory=dict)  # AP@[.5:.95], VOC style
    curves: dict[str, PRCurve] = field(default_factory=dict)  # IoU > 0.5; classes with objects

    @property
    def mAP(self) -> float:
        return _nanmean(self.per_class.values())

    @property
    def mAP_50_95(self) -> float:
        return _nanmean(self.per_class_50_95.values())

    def to_dict(self) -> dict[str, object]:
        """The summary that evaluators and ``resdet score --json`` report."""
        return {
            "mAP": self.mAP,
            "per_class": dict(self.per_class),
            "mAP@[.5:.95]": self.mAP_50_95,
        }


def _nanmean(values: object) -> float:
    """Mean over the finite entries; NaN when there are none (classes without objects)."""
    array = np.fromiter(values, np.float64)  # type: ignore[call-overload]
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else float("nan")


def to_voc_boxes(boxes: np.ndarray) -> np.ndarray:
    """0-based continuous xyxy -> VOC 1-based inclusive xyxy: (x1 + 1, y1 + 1, x2, y2).

    Args:
        boxes: (N, 4) xyxy in 0-based continuous pixels.

    Returns:
        (N, 4) float64 xyxy in VOC 1-based inclusive pixels.
    """
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, :2] += 1.0
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray, metric: str = "voc07") -> float:
    """AP from a precision/recall curve, as the VOC devkit computes it.

    Args:
        recall: (D,) non-decreasing recall after each detection in score order.
        precision: (D,) precision after each detection.
        metric: "voc07" (mean of the best precision at recall >= 0, 0.1, ..., 1) or "voc"
            (area under the monotone precision envelope, VOC2010+).

    Returns:
        The average precision.
    """
    if metric not in VOC_METRICS:
        raise ValueError(f"unknown VOC metric {metric!r}; valid: {', '.join(VOC_METRICS)}")
    if metric == "voc07":
        if not len(recall):
            return 0.0
        # Suffix maximum: best precision at any recall from index i on (recall is sorted).
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        # The same thresholds as py-faster-rcnn, float quirks included (0.30000000000000004).
        thresholds = np.arange(0.0, 1.1, 0.1)
        first = np.searchsorted(recall, thresholds, side="left")  # first index with rec >= t
        reached = first < len(recall)
        best = np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0)
        ap = 0.0
        for p in best:  # summed in order, like the devkit, so the last bit agrees too
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class ClassGroundTruth:
    """The objects of one class, padded to the same count per image."""

    boxes: np.ndarray  # (I, G, 4) float64 xyxy, VOC 1-based inclusive; NaN where padded
    difficult: np.ndarray  # (I, G) bool; True for difficult objects (and padding)
    num_positives: int  # number of non-difficult objects: the recall denominator


def ground_truth_by_class(
    records: Sequence[ImageRecord], num_classes: int
) -> list[ClassGroundTruth]:
    """Gathers each class's objects from all images, in record order.

    Args:
        records: the data set's images; ``labels`` index the class list, ``ignore`` marks
            VOC ``difficult`` objects; boxes are 0-based continuous xyxy.
        num_classes: length of the class list.

    Returns:
        One entry per class; row ``i`` of each belongs to ``records[i]``.
    """
    sizes = [len(r.labels) for r in records]
    image = np.repeat(np.arange(len(records)), sizes)  # (N,) record row of every object
    boxes = to_voc_boxes(np.concatenate([r.boxes for r in records] or [np.zeros((0, 4))]))
    labels = np.concatenate([r.labels for r in records] or [np.zeros(0, np.int64)])
    ignore = np.concatenate([r.ignore for r in records] or [np.zeros(0, bool)])
    out = []
    for c in range(num_classes):
        keep = labels == c
        out.append(_pad_per_image(image[keep], boxes[keep], ignore[keep], len(records)))
    return out


def _pad_per_image(
    image: np.ndarray, boxes: np.ndarray, difficult: np.ndarray, num_images: int
) -> ClassGroundTruth:
    """(N,) objects sorted by image -> (I, G) padded per-image arrays."""
    counts = np.bincount(image, minlength=num_images)
    padded = np.full((num_images, int(counts.max(initial=0)), 4), np.nan)
    padded_difficult = np.ones(padded.shape[:2], bool)
    # Position of each object within its image: running index minus the image's start.
    slot = np.arange(len(image)) - (np.cumsum(counts) - counts)[image]
    padded[image, slot] = boxes
    padded_difficult[image, slot] = difficult
    return ClassGroundTruth(padded, padded_difficult, int(np.sum(~difficult)))


def best_overlaps(
    gt_boxes: np.ndarray, det_image: np.ndarray, det_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each detection's best IoU with the objects of its image (VOC ``+1`` convention).

    Args:
        gt_boxes: (I, G, 4) VOC 1-based boxes per image, NaN where padded.
        det_image: (D,) int row of ``gt_boxes`` each detection belongs to.
        det_boxes: (D, 4) VOC 1-based detection boxes.

    Returns:
        ``ovmax`` (D,) float64, -inf where the image has no object of the class, and
        ``jmax`` (D,) int64, the first object reaching it.
    """
    ovmax = np.full(len(det_image), -np.inf)
    jmax = np.zeros(len(det_image), np.int64)
    if gt_boxes.shape[1] == 0:
        return ovmax, jmax
    for start in range(0, len(det_image), _MATCH_CHUNK):
        part = slice(start, start + _MATCH_CHUNK)
        gt = gt_boxes[det_image[part]]  # (d, G, 4)
        bb = det_boxes[part, None, :]  # (d, 1, 4)
        # Same operations in the same order as the devkit, so IoUs agree to the last bit.
        iw = np.maximum(
            np.minimum(gt[..., 2], bb[..., 2]) - np.maximum(gt[..., 0], bb[..., 0]) + 1.0, 0.0
        )
        ih = np.maximum(
            np.minimum(gt[..., 3], bb[..., 3]) - np.maximum(gt[..., 1], bb[..., 1]) + 1.0, 0.0
        )
        inters = iw * ih
        union = (
            (bb[..., 2] - bb[..., 0] + 1.0) * (bb[..., 3] - bb[..., 1] + 1.0)
            + (gt[..., 2] - gt[..., 0] + 1.0) * (gt[..., 3] - gt[..., 1] + 1.0)
            - inters
        )
        overlaps = np.where(np.isnan(gt[..., 0]), -np.inf, inters / union)  # (d, G)
        ovmax[part] = overlaps.max(axis=1)
        jmax[part] = overlaps.argmax(axis=1)
    return ovmax, jmax


def true_false_positives(
    ovmax: np.ndarray,
    jmax: np.ndarray,
    det_image: np.ndarray,
    difficult: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Marks detections (already in score order) as true or false positives.

    Args:
        ovmax: (D,) best IoU of each detection, from :func:`best_overlaps`.
        jmax: (D,) index of the best object within its image.
        det_image: (D,) image row of each detection.
        difficult: (I, G) difficult flags of the objects.
        iou_threshold: a match needs IoU strictly greater than this.

    Returns:
        ``tp`` and ``fp``, (D,) float64 0/1 each; a detection matching a difficult object is 0
        in both.
    """
    matched = ovmax > iou_threshold
    on_difficult = np.zeros_like(matched)
    on_difficult[matched] = difficult[det_image[matched], jmax[matched]]
    hits = np.flatnonzero(matched & ~on_difficult)
    # Only the first (highest-scored) hit of an object counts; later ones are duplicates.
    object_key = det_image[hits] * difficult.shape[1] + jmax[hits]
    _, first = np.unique(object_key, return_index=True)
    tp = np.zeros(len(ovmax))
    tp[hits[first]] = 1.0
    fp = (~on_difficult).astype(np.float64) - tp
    return tp, fp


def class_pr_curves(
    gt: ClassGroundTruth,
    det_image: np.ndarray,
    det_scores: np.ndarray,
    det_boxes: np.ndarray,
    iou_thresholds: Sequence[float] | np.ndarray = (0.5,),
) -> list[PRCurve]:
    """One class's precision/recall curve at each IoU threshold, as the devkit builds it.

    Args:
        gt: the class's ground truth (at least one non-difficult object).
        det_image: (D,) image row of each detection.
        det_scores: (D,) confidences.
        det_boxes: (D, 4) VOC 1-based boxes.
        iou_thresholds: (T,) thresholds; a match needs IoU strictly above.

    Returns:
        (T,) curves, each with (D,) recall and precision after each detection in score order.
    """
    order = np.argsort(-det_scores, kind="stable")
    det_image, det_boxes = det_image[order], det_boxes[order]
    ovmax, jmax = best_overlaps(gt.boxes, det_image, det_boxes)
    curves = []
    for threshold in iou_thresholds:
        tp, fp = true_false_positives(ovmax, jmax, det_image, gt.difficult, threshold)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / float(gt.num_positives)
        # A first detection on a difficult object gives 0/0; Detectron2 guards it the same way.
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        curves.append(PRCurve(recall, precision, gt.num_positives))
    return curves


def evaluate_voc(
    records: Sequence[ImageRecord],
    detections: Mapping[str, ClassDetections],
    class_names: Sequence[str],
    metric: str = "voc07",
    classes: Sequence[str] | None = None,
) -> VOCResult:
    """Per-class VOC AP (IoU > 0.5) plus the VOC-style AP@[.5:.95] bonus column.

    Args:
        records: ground truth; ``str(record.image_id)`` is the devkit image id and ``labels``
            index ``class_names``.
        detections: class name -> that class's detections (missing class: no detections).
        class_names: the class list the records' labels index.
        metric: "voc07" (11-point) or "voc" (VOC2010+ area).
        classes: the classes to evaluate (default: all of ``class_names``).

    Returns:
        The per-class APs; ``mAP`` averages the classes that have non-difficult objects.
    """
    if metric not in VOC_METRICS:
        raise ValueError(f"unknown VOC metric {metric!r}; valid: {', '.join(VOC_METRICS)}")
    unknown_classes = sorted(set(classes or ()) - set(class_names))
    if unknown_classes:
        raise ValueError(f"classes {unknown_classes} are not in class_names {list(class_names)}")
    row = {str(r.image_id): i for i, r in enumerate(records)}
    ground_truth = ground_truth_by_class(records, len(class_names))
    result = VOCResult(metric, {}, {})
    for c, name in enumerate(class_names):
        if classes is not None and name not in classes:
            continue
        dets = detections.get(name, ClassDetections([], np.zeros(0), np.zeros((0, 4))))
        unknown = next((i for i in dets.image_ids if i not in row), None)
        if unknown is not None:
            raise ValueError(f"class {name!r}: detection on unknown image id {unknown!r}")
        det_image = np.array([row[i] for i in dets.image_ids], np.int64)
        gt = ground_truth[c]
        aps = np.full(len(COCO_STYLE_IOUS), np.nan)
        if gt.num_positives:
            # COCO_STYLE_IOUS[0] is exactly 0.5: the official column is the first threshold.
            curves = class_pr_curves(gt, det_image, dets.scores, dets.boxes, COCO_STYLE_IOUS)
            aps = np.array([voc_ap(k.recall, k.precision, metric) for k in curves])
            result.curves[name] = curves[0]
        result.per_class[name] = float(aps[0])
        result.per_class_50_95[name] = float(np.mean(aps))
    return result
