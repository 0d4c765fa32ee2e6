"""Per-class precision-recall curves: hand-worked points, thinning, the files, the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detection.evaluation.evaluator import VOCEvaluator
from detection.evaluation.pr_curves import (
    PR_CURVES,
    PR_CURVES_PNG,
    pr_curves_payload,
    read_pr_curves,
    thin_curve,
)
from detection.evaluation.voc import ClassDetections, evaluate_voc, to_voc_boxes
from detection.structures import Detections, ImageRecord
from engine.errors import UserError

GT_A, GT_B = [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 80.0, 80.0]  # 0-based xyxy


def two_objects() -> list[ImageRecord]:
    """One image with two objects of class "a" (class "b" has none)."""
    return [
        ImageRecord(
            "1", "1.jpg", 100, 100, np.array([GT_A, GT_B]), np.zeros(2, np.int64), np.zeros(2, bool)
        )
    ]


def test_three_detections_two_objects_give_the_devkits_points():
    # score order: a hit on A, a duplicate of A (false positive), a hit on B
    # tp = [1, 0, 1] -> recall [1/2, 1/2, 2/2]; precision [1/1, 1/2, 2/3]
    voc_boxes = to_voc_boxes(np.array([GT_A, GT_A, GT_B]))
    dets = {"a": ClassDetections(["1"] * 3, np.array([0.9, 0.8, 0.7]), voc_boxes)}
    result = evaluate_voc(two_objects(), dets, ["a", "b"], "voc07")
    curve = result.curves["a"]
    assert curve.recall.tolist() == [0.5, 0.5, 1.0]
    assert curve.precision.tolist() == [1.0, 0.5, 2 / 3]
    assert curve.num_positives == 2 and "b" not in result.curves
    payload = pr_curves_payload(result)
    assert payload["iou"] == 0.5 and payload["metric"] == "voc07"
    assert payload["classes"]["a"] == {
        "ap": pytest.approx(28 / 33),  # 11-point: 6 levels at precision 1, 5 at 2/3
        "num_positives": 2,
        "num_detections": 3,
        "recall": [0.5, 0.5, 1.0],
        "precision": [1.0, 0.5, 0.666667],
    }
    assert payload["classes"]["b"] == {
        "ap": None, "num_positives": 0, "num_detections": 0, "recall": [], "precision": []
    }  # fmt: skip


def test_a_long_curve_keeps_the_first_point_at_each_recall_level_and_the_last():
    recall = np.arange(1, 201) / 200  # 200 hits on 200 objects: 0.005, 0.01, ..., 1
    precision = np.linspace(1.0, 0.5, 200)
    thin_r, thin_p = thin_curve(recall, precision)
    keep = [0, *range(1, 200, 2)]  # level 0 -> 0.005 (index 0), level k/100 -> index 2k - 1
    assert thin_r.tolist() == recall[keep].tolist()
    assert thin_p.tolist() == precision[keep].tolist()
    # past the last recall level the tail (false positives) ends in the last point
    tail_r = np.concatenate([recall, np.ones(50)])
    tail_p = np.concatenate([precision, np.linspace(0.49, 0.4, 50)])
    thin_r, thin_p = thin_curve(tail_r, tail_p)
    assert len(thin_r) == 102 and thin_r[-1] == 1.0 and thin_p[-1] == 0.4
    assert thin_p[-2] == 0.5  # the first point at recall 1
    short_r, _ = thin_curve(recall[:101], precision[:101])
    assert short_r.tolist() == recall[:101].tolist()  # up to MAX_POINTS: all of them


def test_the_voc_evaluator_writes_the_curves_and_a_png(tmp_path: Path):
    boxes = torch.tensor([GT_A, GT_A, GT_B])
    dets = Detections(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.int64))
    evaluator = VOCEvaluator(["a", "b"], "voc07", curves_dir=tmp_path)
    evaluator.process(two_objects(), [dets])
    assert evaluator.evaluate()["per_class"]["a"] == pytest.approx(28 / 33)
    payload = read_pr_curves(tmp_path / PR_CURVES)
    assert payload["classes"]["a"]["recall"] == [0.5, 0.5, 1.0]
    assert payload["classes"]["a"]["precision"] == [1.0, 0.5, 0.666667]
    png = (tmp_path / PR_CURVES_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 900  # two panels of 4.5 in at 100 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == [PR_CURVES, PR_CURVES_PNG]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [([1, 2], "expected an object with 'classes'"),
     ({"classes": {"a": {"recall": [0.5], "precision": []}}},
      "class 'a': expected equal-length number lists"),
     ({"classes": {"a": {"recall": ["x"], "precision": [1]}}}, "class 'a'")],
)  # fmt: skip
def test_a_malformed_file_is_one_line_naming_it(tmp_path: Path, payload: object, problem: str):
    path = tmp_path / PR_CURVES
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match=problem) as info:
        read_pr_curves(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_class_name_with_dollars_is_drawn_as_written(tmp_path: Path):
    # "${$" would be matplotlib mathtext (not valid: an error at the end of training)
    dets = Detections(torch.tensor([GT_A]), torch.tensor([0.9]), torch.zeros(1, dtype=torch.int64))
    evaluator = VOCEvaluator(["${$", "b"], "voc07", curves_dir=tmp_path)
    evaluator.process(two_objects(), [dets])
    assert evaluator.evaluate()["per_class"]["${$"] == pytest.approx(6 / 11)
    assert read_pr_curves(tmp_path / PR_CURVES)["classes"]["${$"]["recall"] == [0.5]
    assert (tmp_path / PR_CURVES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
