"""`resdet score`: VOC against a loop-based devkit, COCO against pycocotools run directly."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from detection.evaluation.coco import COCO_STAT_NAMES
from detection.evaluation.results import write_voc_results
from detection.structures import Detections, ImageRecord
from tools.cli import main

NAMES = ["a", "b", "c"]


def score(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def write_voc_inputs(voc_case, voc_tree, tmp_path: Path, seed: int) -> tuple[Path, Path]:
    """A VOC tree (test split) and a folder of devkit result files for it."""
    records, per_image = voc_case(seed, num_images=40, num_classes=3)
    voc_tree(tmp_path / "VOC", records, NAMES, "test")
    dets = [
        Detections(torch.from_numpy(b).float(), torch.from_numpy(s).float(), torch.from_numpy(lab))
        for _, b, s, lab in per_image
    ]
    write_voc_results(tmp_path / "res", "test", [p[0] for p in per_image], dets, NAMES)
    return tmp_path / "VOC", tmp_path / "res"


def parse_rec(path: Path) -> list[dict]:
    """py-faster-rcnn's parse_rec: the objects of one annotation XML, VOC 1-based boxes."""
    objects = []
    for obj in ET.parse(path).findall("object"):
        box = obj.find("bndbox")
        assert box is not None
        objects.append(
            {
                "name": obj.findtext("name"),
                "difficult": int(obj.findtext("difficult") or 0),
                "bbox": [int(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax")],
            }
        )
    return objects


@pytest.mark.parametrize(("seed", "metric"), [(0, "voc07"), (1, "voc"), (2, "voc07")])
def test_voc_score_equals_loop_reference_reading_the_files(
    capsys, voc_case, voc_tree, voc_reference, tmp_path, seed, metric
):
    root, results = write_voc_inputs(voc_case, voc_tree, tmp_path, seed)
    code, out, _ = score(
        capsys, "--voc-root", root, "--split", "test", "--results", results,
        "--classes", "a,b,c", "--metric", metric, "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)
    # The reference reads the XML and the result files itself, as py-faster-rcnn does.
    ids = (root / "ImageSets/Main/test.txt").read_text().split()
    objects = {i: parse_rec(root / "Annotations" / f"{i}.xml") for i in ids}
    expected = {}
    for name in NAMES:
        lines = (results / f"comp4_det_test_{name}.txt").read_text().splitlines()
        rows = [(x[0], float(x[1]), [float(v) for v in x[2:]]) for x in map(str.split, lines)]
        expected[name] = voc_reference(objects, name, rows, metric == "voc07")
    assert summary["per_class"] == pytest.approx(expected, abs=1e-9)
    assert summary["mAP"] == pytest.approx(np.mean(list(expected.values())), abs=1e-9)
    assert 0.0 <= summary["mAP@[.5:.95]"] < summary["mAP"]


def test_voc_score_table_and_default_class_list(capsys, voc_case, voc_tree, tmp_path):
    records, per_image = voc_case(3, num_images=12, num_classes=2)
    voc_tree(tmp_path / "VOC", records, ["cat", "dog"], "test")
    dets = [
        Detections(torch.from_numpy(b).float(), torch.from_numpy(s).float(), torch.from_numpy(lab))
        for _, b, s, lab in per_image
    ]
    write_voc_results(tmp_path / "res", "test", [p[0] for p in per_image], dets, ["cat", "dog"])
    args = ["--voc-root", tmp_path / "VOC", "--results", tmp_path / "res"]
    code, out, err = score(capsys, *args)
    assert code == 0
    assert "VOC07 11-point AP (IoU > 0.5)" in out and "not an official VOC number" in out
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["cat", "dog", "mean"]
    assert "no result file for aeroplane, bicycle" in err  # the other 18 VOC classes
    code, out, _ = score(capsys, *args, "--json")
    assert set(json.loads(out)["per_class"]) == {"cat", "dog"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("comp4_det_test_b.txt", r"comp4_det_test_b\.txt:1: expected 6 fields"),
        ("comp4_det_test_zebra.txt", r"comp4_det_test_zebra\.txt: unknown class 'zebra'"),
    ],
)
def test_voc_score_errors_name_the_file(capsys, voc_case, voc_tree, tmp_path, edit, message):
    root, results = write_voc_inputs(voc_case, voc_tree, tmp_path, 0)
    (results / edit).write_text("000001 0.5 1 2 3\n")
    code, out, err = score(
        capsys, "--voc-root", root, "--results", results, "--classes", "a,b,c", "--json"
    )
    assert code == 2 and out == ""
    assert err.startswith("resdet score: error: ") and "Traceback" not in err
    assert re.search(message, err)


def test_voc_score_unknown_image_id(capsys, voc_case, voc_tree, tmp_path):
    root, results = write_voc_inputs(voc_case, voc_tree, tmp_path, 0)
    with open(results / "comp4_det_test_c.txt", "a") as f:
        f.write("999999 0.5 1 2 3 4\n")
    lines = (results / "comp4_det_test_c.txt").read_text().count("\n")
    code, _, err = score(capsys, "--voc-root", root, "--results", results, "--classes", "a,b,c")
    assert code == 2
    assert f"comp4_det_test_c.txt:{lines}: unknown image id '999999'" in err


def test_score_needs_exactly_one_data_set(capsys, tmp_path):
    code, _, err = score(capsys, "--results", tmp_path)
    assert code == 2 and "exactly one of --voc-root (VOC) or --coco-annotations" in err
    code, _, err = score(
        capsys, "--results", tmp_path, "--voc-root", tmp_path, "--coco-annotations", "x"
    )
    assert code == 2 and "exactly one of" in err


def write_coco_inputs(coco_case, tmp_path: Path, seed: int) -> tuple[dict, list, Path, Path]:
    dataset, results = coco_case(seed)
    ann, res = tmp_path / "instances.json", tmp_path / "results.json"
    ann.write_text(json.dumps(dataset))
    res.write_text(json.dumps(results))
    return dataset, results, ann, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_score_equals_pycocotools_run_directly(
    capsys, coco_case, pycocotools_reference, tmp_path, seed
):
    dataset, _, ann, res = write_coco_inputs(coco_case, tmp_path, seed)
    reference = pycocotools_reference(dataset, str(res)).stats.tolist()
    args = ["--coco-annotations", ann, "--results", res, "--json"]
    code, out, _ = score(capsys, *args, "--backend", "pycocotools")
    assert code == 0
    summary = json.loads(out)
    assert [summary[k] for k in COCO_STAT_NAMES] == reference  # all 12, exact
    assert set(summary) == {*COCO_STAT_NAMES, "per_class"}
    assert summary["per_class"]["c12"] == {"AP": None, "AP50": None}  # no ground truth
    # The default faster-coco-eval backend: the same up to its documented last-bit difference
    # (precision tp / (tp + fp) without pycocotools' + np.spacing(1); see test_coco_eval.py).
    code, out, _ = score(capsys, *args)
    fast = json.loads(out)
    np.testing.assert_allclose([fast[k] for k in COCO_STAT_NAMES], reference, rtol=0, atol=4e-16)


def test_coco_score_table(capsys, coco_case, tmp_path):
    _, results, ann, res = write_coco_inputs(coco_case, tmp_path, 0)
    code, out, _ = score(capsys, "--coco-annotations", ann, "--results", res)
    assert code == 0
    assert out.startswith(f"COCO box evaluation (faster), {len(results)} detections")
    assert "AP @[.50:.95] all" in out and "(ARl)" in out and "c7" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_id": 5}, "entry 3: field 'image_id': unknown image id 5"),
        ({"category_id": 2}, "entry 3: field 'category_id': unknown category 2"),
        ({"bbox": [0, 0, float("nan"), 1]}, "entry 3: field 'bbox': non-finite"),
        ({"bbox": "0 0 1 1"}, "entry 3: field 'bbox': expected [x, y, w, h]"),
    ],
)
def test_coco_score_errors_name_entry(capsys, coco_case, tmp_path, change, message):
    _, results, ann, res = write_coco_inputs(coco_case, tmp_path, 0)
    results[3].update(change)
    res.write_text(json.dumps(results))
    code, out, err = score(capsys, "--coco-annotations", ann, "--results", res)
    assert code == 2 and out == ""
    assert f"results.json: {message}" in err


def test_voc_score_of_an_image_record_tree_matches_hand_value(capsys, voc_tree, tmp_path):
    # One object, one detection at IoU 0.6 plus a false positive with a higher score:
    # precision [0, 1/2] at recall [0, 1] -> voc07 = 11 * (1/2) / 11 = 1/2.
    record = ImageRecord("img1", "img1.jpg", 50, 50, [[0, 0, 10, 10]], [0], [False])
    voc_tree(tmp_path / "VOC", [record], ["a"], "test")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "comp4_det_test_a.txt").write_text(
        "img1 0.9 30 30 40 40\nimg1 0.8 1 1 10 6\n"
    )
    code, out, _ = score(
        capsys, "--voc-root", tmp_path / "VOC", "--results", tmp_path / "res",
        "--classes", "a", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["mAP"] == pytest.approx(0.5, abs=1e-15)


def test_score_into_a_closed_pipe_ends_quietly(voc_case, voc_tree, tmp_path):
    """``resdet score ... | head``: the reader leaves early; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    root, results = write_voc_inputs(voc_case, voc_tree, tmp_path, 0)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = [sys.executable, "-m", "tools.cli", "score", "--voc-root", str(root),
                   "--results", str(results), "--classes", ",".join(NAMES)]  # fmt: skip
        result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=300)  # fmt: skip
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
