"""COCO evaluation: pycocotools equality, the faster-coco-eval backend, per-category table."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from detection.data.coco import read_coco_json
from detection.evaluation.coco import (
    COCO_STAT_NAMES,
    _run_cocoeval,
    evaluate_coco,
    per_category_ap,
)
from detection.evaluation.results import coco_results, write_coco_results
from detection.structures import Detections
from engine.errors import UserError

# pycocotools' precision of a first detection that is a true positive: 1 / (1 + np.spacing(1)).
PYCOCO_ONE = 1.0 / (1.0 + np.spacing(1))


def one_image(*categories: tuple[int, str]) -> dict:
    return {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": i, "name": n} for i, n in categories],
        "annotations": [],
    }


def add_gt(dataset: dict, category: int, bbox: list[float]) -> None:
    ann_id = len(dataset["annotations"]) + 1
    dataset["annotations"].append(
        {
            "id": ann_id,
            "image_id": 1,
            "category_id": category,
            "bbox": bbox,
            "area": bbox[2] * bbox[3],
            "iscrowd": 0,
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_pycocotools_backend_equals_pycocotools_run_directly(
    coco_case, pycocotools_reference, seed
):
    dataset, results = coco_case(seed)
    ours = evaluate_coco(dataset, results, "pycocotools")
    reference = pycocotools_reference(dataset, results)
    assert list(ours.stats) == list(COCO_STAT_NAMES)
    assert list(ours.stats.values()) == reference.stats.tolist()  # exact
    assert 0.1 < ours.stats["AP"] < 0.9  # crowd, misses and duplicates make it non-trivial
    assert ours.stats["APs"] > -1 and ours.stats["APl"] > -1  # every area range is populated


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("score_decimals", [5, 1])  # 1 decimal: many tied scores
def test_faster_backend_differs_from_pycocotools_only_by_its_eps(coco_case, seed, score_decimals):
    """faster-coco-eval == pycocotools, except for one documented last-bit difference.

    pycocotools computes precision as tp / (tp + fp + np.spacing(1)); faster-coco-eval's C++
    (Detectron2's fast_eval_api lineage) as tp / (tp + fp). Those agree except where
    tp + fp == 1 and tp == 1 (the first counted detection is a hit): 1 / (1 + 2**-52) vs 1.0.
    Every other entry of the (T, R, K, A, M) precision array must be bit-identical.
    """
    dataset, results = coco_case(seed)
    for entry in results:
        entry["score"] = round(entry["score"], score_decimals)
    fast_stats, fast_precision = _run_cocoeval(dataset, results, "faster", None)
    ref_stats, ref_precision = _run_cocoeval(dataset, results, "pycocotools", None)
    differ = fast_precision != ref_precision
    assert np.all(fast_precision[differ] == 1.0)
    assert np.all(ref_precision[differ] == PYCOCO_ONE)
    # Means of arrays that differ by 1 ulp in a few entries: a few 1e-16 at most.
    np.testing.assert_allclose(fast_stats, ref_stats, rtol=0, atol=4e-16)


def test_the_eps_difference_on_a_single_perfect_detection():
    dataset = one_image((1, "a"))
    add_gt(dataset, 1, [10, 10, 50, 50])
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}]
    # pycocotools: one true positive has precision 1 / (1 + eps) at every recall threshold.
    assert evaluate_coco(dataset, results, "pycocotools").stats["AP"] == PYCOCO_ONE
    assert evaluate_coco(dataset, results, "faster").stats["AP"] == 1.0
    # A second hit (2 / (2 + eps) rounds to exactly 1) lifts the envelope to 1 in both.
    add_gt(dataset, 1, [60, 60, 30, 30])
    results.append({"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.8})
    for backend in ("faster", "pycocotools"):
        assert evaluate_coco(dataset, results, backend).stats["AP"] == 1.0


def test_per_category_table_by_hand():
    dataset = one_image((1, "perfect"), (2, "offset"), (5, "no-gt"))
    add_gt(dataset, 1, [0, 0, 40, 40])
    add_gt(dataset, 1, [50, 50, 40, 40])
    add_gt(dataset, 2, [0, 0, 50, 50])
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.8},
        # 50 x 31 inside the 50 x 50 object: IoU 0.62, a hit at IoU .5, .55, .6 (3 of 10)
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 31], "score": 0.7},
        {"image_id": 1, "category_id": 5, "bbox": [0, 0, 50, 31], "score": 0.6},
    ]
    table = evaluate_coco(dataset, results, "pycocotools").per_class
    assert table["perfect"] == {"AP": 1.0, "AP50": 1.0}
    # One hit: precision 1/(1+eps) at all 101 recall thresholds at 3 IoUs, 0 at the other 7.
    assert table["offset"]["AP"] == pytest.approx(0.3, abs=1e-15)
    assert table["offset"]["AP50"] == pytest.approx(1.0, abs=1e-15)
    assert np.isnan(table["no-gt"]["AP"]) and np.isnan(table["no-gt"]["AP50"])
    assert list(table) == ["perfect", "offset", "no-gt"]  # category id order


def test_per_category_ap_ignores_minus_one_entries():
    precision = -np.ones((10, 101, 2, 4, 3))
    precision[:, :50, 0, 0, -1] = 0.5  # half of the recall thresholds measured
    precision[:, 50:, 0, 0, -1] = -1  # the rest: "no data" (skipped, not zero)
    precision[0, :, 0, 0, -1] = 1.0  # IoU 0.5 row
    table = per_category_ap(precision, ["x", "y"])
    # Valid entries: 101 ones (IoU .5) + 9 * 50 halves -> (101 + 225) / 551.
    assert table["x"]["AP"] == pytest.approx(326 / 551, abs=1e-15)
    assert table["x"]["AP50"] == 1.0
    assert np.isnan(table["y"]["AP"])


def test_written_results_json_loads_in_pycocotools_and_scores_the_same(
    coco_case, pycocotools_reference, tmp_path
):
    dataset, results = coco_case(3)
    # Turn the generated results into per-image Detections, then write them with our writer.
    category_ids = [1, 3, 7, 12]
    image_ids = [image["id"] for image in dataset["images"]]
    per_image = []
    for image_id in image_ids:
        mine = [r for r in results if r["image_id"] == image_id]
        xywh = torch.tensor([r["bbox"] for r in mine], dtype=torch.float64).reshape(-1, 4)
        per_image.append(
            Detections(
                torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).float(),
                torch.tensor([r["score"] for r in mine], dtype=torch.float32),
                torch.tensor([category_ids.index(r["category_id"]) for r in mine]),
            )
        )
    entries = coco_results(image_ids, per_image, category_ids)
    path = write_coco_results(tmp_path / "coco_results.json", entries)
    loaded = COCO()
    loaded.dataset = dataset
    loaded.createIndex()
    assert len(loaded.loadRes(str(path)).getAnnIds()) == len(results)
    reference = pycocotools_reference(dataset, str(path))
    assert list(evaluate_coco(dataset, entries, "pycocotools").stats.values()) == (
        reference.stats.tolist()
    )


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_no_detections_at_all_scores_zero(coco_case, backend):
    dataset, _ = coco_case(0)
    stats = evaluate_coco(dataset, [], backend).stats
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_image_subset(coco_case, pycocotools_reference):
    dataset, results = coco_case(1)
    subset = [image["id"] for image in dataset["images"][:10]]
    ours = evaluate_coco(dataset, results, "pycocotools", image_ids=subset)
    reference = pycocotools_reference(dataset, results, image_ids=subset)
    assert list(ours.stats.values()) == reference.stats.tolist()
    assert ours.stats != evaluate_coco(dataset, results, "pycocotools").stats


def test_unknown_backend_and_bad_annotation_files(tmp_path):
    with pytest.raises(UserError, match="unknown COCO backend 'fast'; valid: faster, pycocotools"):
        evaluate_coco(one_image((1, "a")), [], "fast")
    with pytest.raises(UserError, match="annotation file not found"):
        read_coco_json(tmp_path / "none.json")
    (tmp_path / "a.json").write_text('{"images": []}')
    with pytest.raises(UserError, match=r"a.json: missing the 'categories' list"):
        read_coco_json(tmp_path / "a.json")


def test_garbage_collector_state_is_restored(coco_case):
    dataset, results = coco_case(0, num_images=5)
    evaluate_coco(dataset, results)
    assert gc.isenabled()
    gc.disable()
    try:
        evaluate_coco(dataset, results)
        assert not gc.isenabled()
    finally:
        gc.enable()
