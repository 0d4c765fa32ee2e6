"""VOC AP: hand-worked cases and a randomised cross-check against a loop-based devkit."""

from __future__ import annotations

import numpy as np
import pytest

from detection.evaluation.voc import (
    ClassDetections,
    best_overlaps,
    evaluate_voc,
    ground_truth_by_class,
    to_voc_boxes,
    voc_ap,
)
from detection.structures import ImageRecord


def record(image_id: str, voc_boxes: list[list[float]], difficult: list[bool] | None = None):
    """An ImageRecord from VOC 1-based boxes (loaded as xmin - 1, ymin - 1, xmax, ymax)."""
    boxes = np.array(voc_boxes, np.float64).reshape(-1, 4) - np.array([1, 1, 0, 0])
    n = len(boxes)
    return ImageRecord(
        image_id, f"{image_id}.jpg", 100, 100, boxes, np.zeros(n), difficult or [False] * n
    )


def dets(*rows: tuple[str, float, list[float]]) -> dict[str, ClassDetections]:
    """Detections of class "a" from (image_id, score, VOC 1-based box) rows."""
    ids = [r[0] for r in rows]
    return {
        "a": ClassDetections(ids, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
    }


def ap(records, detections, metric="voc07") -> float:
    return evaluate_voc(records, detections, ["a"], metric).per_class["a"]


GT_BOX = [1.0, 1.0, 10.0, 10.0]  # 10 x 10 pixels inclusive: area 100 under the +1 rule
# voc07 adds p/11 eleven times, in order, as the devkit does: a perfect AP is 1.0000000000000002.
ONE = pytest.approx(1.0, abs=1e-15)


# ---------------------------------------------------------------- hand-worked cases


@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_perfect_detector_has_ap_one(metric):
    records = [record("1", [GT_BOX, [20, 20, 40, 50]]), record("2", [[5, 5, 30, 30]])]
    d = dets(("1", 0.9, GT_BOX), ("1", 0.8, [20, 20, 40, 50]), ("2", 0.7, [5, 5, 30, 30]))
    result = evaluate_voc(records, d, ["a"], metric)
    assert result.per_class["a"] == ONE
    assert result.mAP == ONE
    assert result.mAP_50_95 == ONE  # exact boxes match at every IoU threshold


@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_all_misses_and_no_detections_give_ap_zero(metric):
    records = [record("1", [GT_BOX]), record("2", [])]
    assert ap(records, dets(("1", 0.9, [50, 50, 60, 60]), ("2", 0.8, GT_BOX)), metric) == 0.0
    assert ap(records, {}, metric) == 0.0


def test_duplicate_detection_is_a_false_positive():
    # Two objects; the first is detected twice. tp = [1, 0, 1], fp = [0, 1, 0]
    # recall = [.5, .5, 1], precision = [1, .5, 2/3].
    records = [record("1", [GT_BOX, [50, 50, 80, 80]])]
    d = dets(("1", 0.9, GT_BOX), ("1", 0.8, GT_BOX), ("1", 0.7, [50, 50, 80, 80]))
    # 11-point: t = 0 .. 0.5 (6 points) reach precision 1; t = 0.6 .. 1 (5 points) only 2/3.
    # AP = (6 * 1 + 5 * 2/3) / 11 = 28/33.
    assert ap(records, d, "voc07") == pytest.approx(28 / 33, abs=1e-15)
    # Area: envelope [1, 1, 2/3]; recall steps 0 -> .5 at precision 1, .5 -> 1 at 2/3:
    # AP = .5 * 1 + .5 * 2/3 = 5/6.
    assert ap(records, d, "voc") == pytest.approx(5 / 6, abs=1e-15)
    # Without the duplicate both objects are found at precision 1.
    assert ap(records, dets(("1", 0.9, GT_BOX), ("1", 0.7, [50, 50, 80, 80]))) == ONE


def test_match_to_difficult_object_is_neither_tp_nor_fp():
    # Object 1 is difficult, object 2 is not. The two best-scored detections hit the difficult
    # object (ignored, even the repeat), the third hits object 2: tp = [0, 0, 1],
    # fp = [0, 0, 0], npos = 1, recall = [0, 0, 1], precision = [0 (0/0 guarded), 0, 1] -> AP 1.
    # Counting them as false positives would give precision 1/3 at recall 1.
    records = [record("1", [GT_BOX, [50, 50, 80, 80]], [True, False])]
    d = dets(("1", 0.9, GT_BOX), ("1", 0.85, GT_BOX), ("1", 0.8, [50, 50, 80, 80]))
    assert ap(records, d, "voc07") == ONE
    assert ap(records, d, "voc") == ONE


def test_class_with_only_difficult_objects_is_nan_and_left_out_of_the_mean():
    records = [
        ImageRecord(
            "1", "1.jpg", 100, 100, [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [False, True]
        )
    ]
    d = {"a": ClassDetections(["1"], np.array([0.9]), np.array([GT_BOX]))}
    result = evaluate_voc(records, d, ["a", "b"])
    assert result.per_class["a"] == ONE
    assert np.isnan(result.per_class["b"])
    assert result.mAP == result.to_dict()["mAP"] == ONE


@pytest.mark.parametrize(
    ("shift", "iou", "is_tp"),
    [
        # GT (1,1,10,10) and the same box shifted right by dx, both 10 x 10 under the +1 rule:
        # intersection (10 - dx) * 10, union 200 - intersection.
        (3.2, 68 / 132, True),  # 0.51515: above 0.5 (without +1: 52.2 / 109.8 = 0.475, a miss)
        (3.4, 66 / 134, False),  # 0.49254: just below
    ],
)
def test_iou_threshold_under_the_plus_one_convention(shift, iou, is_tp):
    records = [record("1", [GT_BOX])]
    box = [1 + shift, 1.0, 10 + shift, 10.0]
    gt = ground_truth_by_class(records, 1)[0]
    ovmax, jmax = best_overlaps(gt.boxes, np.array([0]), np.array([box]))
    assert ovmax[0] == pytest.approx(iou, abs=1e-15)
    assert jmax[0] == 0
    assert ap(records, dets(("1", 0.9, box))) == (ONE if is_tp else 0.0)


def test_iou_exactly_one_half_is_not_a_match():
    # (1,1,10,5) covers 10 x 5 = 50 of the GT's 100 pixels: IoU = 0.5, and a match needs > 0.5.
    records = [record("1", [GT_BOX])]
    assert ap(records, dets(("1", 0.9, [1, 1, 10, 5]))) == 0.0
    assert ap(records, dets(("1", 0.9, [1, 1, 10, 6]))) == ONE  # 60 / 100


def test_bonus_ap_50_95_counts_the_thresholds_a_detection_passes():
    # IoU 72/100 = 0.72 > 0.5, 0.55, 0.6, 0.65, 0.7 but not 0.75 .. 0.95: AP 1 at 5 of 10.
    records = [record("1", [GT_BOX])]
    result = evaluate_voc(records, dets(("1", 0.9, [1, 1, 10, 7.2])), ["a"])
    assert result.per_class_50_95["a"] == pytest.approx(0.5, abs=1e-15)
    assert result.to_dict()["mAP@[.5:.95]"] == pytest.approx(0.5, abs=1e-15)


def small_pr_curve():
    """Five objects (one per image), seven detections in score order: TP FP TP TP FP FP TP.

    tp = [1, 1, 2, 3, 3, 3, 4], fp = [0, 1, 1, 1, 2, 3, 3]
    recall    = [.2, .2, .4, .6, .6, .6, .8]
    precision = [1, 1/2, 2/3, 3/4, 3/5, 1/2, 4/7]
    """
    objects = [[1 + 10 * i, 1, 10 + 10 * i, 10] for i in range(5)]
    records = [record(str(i), [objects[i]]) for i in range(5)]
    far = [60.0, 60.0, 90.0, 90.0]
    rows = [
        ("0", 0.9, objects[0]),
        ("0", 0.8, far),
        ("1", 0.7, objects[1]),
        ("2", 0.6, objects[2]),
        ("3", 0.5, far),
        ("4", 0.4, far),
        ("3", 0.3, objects[3]),
    ]
    return records, dets(*rows)


def test_eleven_point_ap_by_hand():
    # Suffix maxima of precision: [1, 3/4, 3/4, 3/4, 4/7, 4/7, 4/7].
    # Thresholds are py-faster-rcnn's np.arange(0, 1.1, 0.1):
    #   t = 0, .1, .2                -> first recall >= t is index 0     -> 1     (3 points)
    #   t = .30000000000000004, .4, .5 -> index 2 or 3                   -> 3/4   (3 points)
    #   t = .6000000000000001 (> recall 3/5 = 0.6 in floating point!), .7000000000000001, .8
    #                                  -> index 6                        -> 4/7   (3 points)
    #   t = .9, 1                      -> recall never reaches t         -> 0     (2 points)
    # AP = (3 * 1 + 3 * 3/4 + 3 * 4/7) / 11 = (195 / 28) / 11 = 195 / 308 = 0.63311...
    # (The MATLAB devkit's 0:0.1:1 holds 0.6 exactly and would give 3/4 at the 7th point.)
    records, d = small_pr_curve()
    assert ap(records, d, "voc07") == pytest.approx(195 / 308, abs=1e-15)


def test_area_ap_by_hand():
    # With sentinels: recall [0, .2, .2, .4, .6, .6, .6, .8, 1],
    # envelope [1, 1, 3/4, 3/4, 3/4, 4/7, 4/7, 4/7, 0]; recall steps of .2 at envelope values
    # 1, 3/4, 3/4, 4/7 and the last step (.8 -> 1) at 0:
    # AP = .2 * (1 + 3/4 + 3/4 + 4/7) = .2 * 43/14 = 43/70 = 0.61428...
    records, d = small_pr_curve()
    assert ap(records, d, "voc") == pytest.approx(43 / 70, abs=1e-15)


def test_voc_ap_on_raw_curves():
    recall = np.array([0.2, 0.2, 0.4, 0.6, 0.6, 0.6, 0.8])
    precision = np.array([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 1 / 2, 4 / 7])
    assert voc_ap(recall, precision, "voc07") == pytest.approx(195 / 308, abs=1e-15)
    assert voc_ap(recall, precision, "voc") == pytest.approx(43 / 70, abs=1e-15)
    assert voc_ap(np.zeros(0), np.zeros(0), "voc07") == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), "voc") == 0.0
    with pytest.raises(ValueError, match="voc07"):
        voc_ap(recall, precision, "voc12")


def test_to_voc_boxes_adds_one_to_the_top_left_corner():
    assert to_voc_boxes(np.array([[0.0, 4.0, 10.0, 20.0]])).tolist() == [[1.0, 5.0, 10.0, 20.0]]


def test_ties_keep_input_order():
    # Equal scores are taken in input order (a stable sort), so the listing decides.
    records = [record("1", [GT_BOX, [50, 50, 80, 80]])]
    # Miss listed before hit: FP, TP, TP -> precision [0, 1/2, 2/3] at recall [0, .5, 1];
    # every 11-point threshold reaches precision 2/3 at best -> AP = 11 * (2/3) / 11 = 2/3.
    d = dets(("1", 0.5, [60, 1, 70, 10]), ("1", 0.5, GT_BOX), ("1", 0.4, [50, 50, 80, 80]))
    assert ap(records, d, "voc07") == pytest.approx(2 / 3, abs=1e-15)
    # Hit listed first: TP, FP, TP -> precision [1, 1/2, 2/3] -> 28/33 (as the duplicate case).
    d = dets(("1", 0.5, GT_BOX), ("1", 0.5, [60, 1, 70, 10]), ("1", 0.4, [50, 50, 80, 80]))
    assert ap(records, d, "voc07") == pytest.approx(28 / 33, abs=1e-15)


def test_unknown_image_or_class_is_an_error():
    records = [record("1", [GT_BOX])]
    with pytest.raises(ValueError, match="unknown image id '7'"):
        evaluate_voc(records, dets(("7", 0.9, GT_BOX)), ["a"])
    with pytest.raises(ValueError, match="not in class_names"):
        evaluate_voc(records, {}, ["a"], classes=["zebra"])


# ---------------------------------------------------------------- randomised cross-check


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_matches_loop_reference_on_random_cases(voc_case, voc_reference, seed, metric):
    records, per_image = voc_case(seed, num_images=40, num_classes=3)
    names = ["a", "b", "c"]
    detections, rows = {}, {}
    for c, name in enumerate(names):
        rows[name] = [
            (image_id, float(s), list(b))
            for image_id, boxes, scores, labels in per_image
            for b, s in zip(to_voc_boxes(boxes[labels == c]), scores[labels == c])
        ]
        ids = [r[0] for r in rows[name]]
        detections[name] = ClassDetections(
            ids, np.array([r[1] for r in rows[name]]), np.array([r[2] for r in rows[name]])
        )
    result = evaluate_voc(records, detections, names, metric)
    objects = {
        str(r.image_id): [
            {"name": names[label], "bbox": [b[0] + 1, b[1] + 1, b[2], b[3]], "difficult": d}
            for b, label, d in zip(r.boxes.tolist(), r.labels, r.ignore)
        ]
        for r in records
    }
    for name in names:
        expected = voc_reference(objects, name, rows[name], metric == "voc07")
        assert result.per_class[name] == pytest.approx(expected, abs=1e-9, nan_ok=True)
    assert 0.0 < result.mAP < 1.0  # the generated cases are neither trivial nor hopeless
