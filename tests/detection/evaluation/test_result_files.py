"""Result writers and readers: VOC devkit files, the VOC2012 tarball, COCO results JSON."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

from detection.evaluation.results import (
    coco_results,
    find_voc_result_files,
    load_coco_results,
    package_voc_results,
    parse_voc_lines,
    read_voc_results,
    validate_coco_results,
    voc_result_filename,
    write_coco_results,
    write_voc_lines,
    write_voc_results,
)
from detection.structures import Detections
from engine.errors import UserError


def detections(boxes, scores, labels) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
    )


def two_images() -> tuple[list[str], list[Detections]]:
    return ["000005", "000007"], [
        detections([[0, 4, 10.25, 20], [5, 5, 9, 9]], [0.9, 0.12345], [1, 0]),
        detections([[1.5, 2.5, 30, 40]], [0.5], [1]),
    ]


# ---------------------------------------------------------------- VOC devkit files


def test_voc_writer_uses_one_based_pixels_and_devkit_precision(tmp_path):
    ids, dets = two_images()
    paths = write_voc_results(tmp_path, "test", ids, dets, ["cat", "dog"])
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    # (x1 + 1, y1 + 1, x2, y2); score %.3f; coordinates %.1f (10.25 -> "10.2", round-half-even)
    assert paths[0].read_text() == "000005 0.123 6.0 6.0 9.0 9.0\n"
    assert paths[1].read_text() == (
        "000005 0.900 1.0 5.0 10.2 20.0\n000007 0.500 2.5 3.5 30.0 40.0\n"
    )


def test_voc_writer_writes_empty_files_for_classes_without_detections(tmp_path):
    write_voc_results(tmp_path, "val", ["1"], [Detections.empty()], ["a", "b"])
    assert (tmp_path / voc_result_filename("val", "a")).read_text() == ""
    assert read_voc_results(tmp_path, "val", ["a", "b"])["b"].scores.shape == (0,)


def test_voc_round_trip(tmp_path):
    ids, dets = two_images()
    write_voc_results(tmp_path, "test", ids, dets, ["cat", "dog"])
    read = read_voc_results(tmp_path, "test", ["cat", "dog"], known_image_ids=set(ids))
    assert list(read) == ["cat", "dog"]
    assert read["dog"].image_ids == ["000005", "000007"]
    np.testing.assert_array_equal(read["dog"].scores, [0.9, 0.5])
    np.testing.assert_array_equal(read["dog"].boxes, [[1, 5, 10.2, 20], [2.5, 3.5, 30, 40]])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("000005 0.5 1 2 3", r"f\.txt:2: expected 6 fields .* got 5"),
        ("000005 0.5 1 2 3 four", r"f\.txt:2: 'four' is not a number"),
        ("000005 nan 1 2 3 4", r"f\.txt:2: non-finite number"),
        ("000005 0.5 1 2 inf 4", r"f\.txt:2: non-finite number"),
        ("999999 0.5 1 2 3 4", r"f\.txt:2: unknown image id '999999'"),
    ],
)
def test_voc_reader_names_file_and_line_of_bad_input(line, message):
    lines = ["000005 0.9 1 2 3 4", line, "", "000005 0.1 1 2 3 4"]
    with pytest.raises(UserError, match=message):
        parse_voc_lines(lines, "f.txt", known_image_ids={"000005"})


def test_voc_reader_skips_blank_lines_and_accepts_any_ids_without_a_list():
    parsed = parse_voc_lines(["", "x 0.5 1 2 3 4", "   "], "f.txt")
    assert parsed.image_ids == ["x"]


def test_voc_result_folder_errors(tmp_path):
    with pytest.raises(UserError, match="results folder not found"):
        find_voc_result_files(tmp_path / "nope", "test", ["cat"])
    with pytest.raises(UserError, match=r"no comp4_det_test_<class>\.txt result files"):
        find_voc_result_files(tmp_path, "test", ["cat"])
    (tmp_path / "comp4_det_test_zebra.txt").write_text("")
    with pytest.raises(UserError, match=r"comp4_det_test_zebra\.txt: unknown class 'zebra'"):
        find_voc_result_files(tmp_path, "test", ["cat"])


def test_voc2012_package_layout(tmp_path):
    ids, dets = two_images()
    write_voc_results(tmp_path / "res", "test", ids, dets, ["cat", "dog"])
    out = package_voc_results(tmp_path / "res", tmp_path / "x.tar.gz", ["cat", "dog"], set(ids))
    with tarfile.open(out) as tar:
        assert tar.getnames() == [
            "results/VOC2012/Main/comp4_det_test_cat.txt",
            "results/VOC2012/Main/comp4_det_test_dog.txt",
        ]
        member = tar.extractfile("results/VOC2012/Main/comp4_det_test_cat.txt")
        assert member is not None and member.read() == b"000005 0.123 6.0 6.0 9.0 9.0\n"
    with pytest.raises(UserError, match="unknown image id '000007'"):
        package_voc_results(tmp_path / "res", tmp_path / "y.tar.gz", ["cat", "dog"], {"000005"})


# ---------------------------------------------------------------- COCO results JSON


def test_coco_entries_order_rounding_and_category_ids():
    dets = [
        detections([[1.004, 2.125, 11.0, 22.5]], [0.123456], [0]),  # image 42
        Detections.empty(),  # image 7: no detections, no entries
        detections([[0, 0, 5, 5], [10, 10, 20, 30]], [0.2, 0.8], [1, 0]),  # image 3
    ]
    entries = coco_results([42, 7, 3], dets, label_to_category_id=[18, 90])
    # image 3 first (score descending), then image 42; w = x2 - x1, h = y2 - y1; 2 decimals
    # (2.125 and 22.5 - 2.125 = 20.375 are exact binary halves: round-half-even -> 2.12, 20.38)
    assert entries == [
        {"image_id": 3, "category_id": 18, "bbox": [10.0, 10.0, 10.0, 20.0], "score": 0.8},
        {"image_id": 3, "category_id": 90, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.2},
        {"image_id": 42, "category_id": 18, "bbox": [1.0, 2.12, 10.0, 20.38], "score": 0.12346},
    ]
    assert entries[1]["score"] == round(float(np.float32(0.2)), 5)
    with pytest.raises(ValueError, match=r"labels outside 0\.\.1"):
        coco_results([1], [detections([[0, 0, 1, 1]], [0.5], [2])], [18, 90])


def test_coco_results_file_round_trip(tmp_path):
    entries = coco_results([1], [detections([[0, 0, 5, 5]], [0.5], [0])], [3])
    path = write_coco_results(tmp_path / "sub" / "r.json", entries)
    assert load_coco_results(path, {1}, {3}) == entries
    assert json.loads(path.read_text()) == entries


GOOD = {"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_id": 2}, "entry 1: field 'image_id': unknown image id 2"),
        ({"image_id": "1"}, "entry 1: field 'image_id': expected an integer"),
        ({"category_id": 4}, "entry 1: field 'category_id': unknown category 4"),
        ({"bbox": [0, 0, 5]}, r"entry 1: field 'bbox': expected \[x, y, w, h\]"),
        ({"bbox": [0, 0, "5", 5]}, r"entry 1: field 'bbox': expected \[x, y, w, h\]"),
        ({"bbox": [0, float("nan"), 5, 5]}, "entry 1: field 'bbox': non-finite"),
        ({"bbox": [0, 0, -1, 5]}, "entry 1: field 'bbox': width and height must be >= 0"),
        ({"score": 1.5}, r"entry 1: field 'score': expected a value in \[0, 1\]"),
        ({"score": float("inf")}, "entry 1: field 'score': expected a finite number"),
        ({"score": True}, "entry 1: field 'score': expected a finite number"),
        ({"score": None}, "entry 1: field 'score': expected a finite number"),
    ],
)
def test_coco_validation_names_entry_and_field(change, message):
    entries = [GOOD, {**GOOD, **change}]
    with pytest.raises(UserError, match=f"r.json: {message}"):
        validate_coco_results(entries, "r.json", {1}, {3})


def test_coco_validation_structure_errors(tmp_path):
    with pytest.raises(UserError, match="entry 0: field 'score' is missing"):
        validate_coco_results(
            [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}], "r", {1}, {3}
        )
    with pytest.raises(UserError, match="entry 0: expected an object"):
        validate_coco_results([[1, 3]], "r", {1}, {3})
    with pytest.raises(UserError, match="expected a JSON list of detections, got a dict"):
        validate_coco_results({"a": 1}, "r", {1}, {3})
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(UserError, match=r"bad\.json: malformed JSON \(line 1, column 3\)"):
        load_coco_results(bad, {1}, {3})
    with pytest.raises(UserError, match="results file not found"):
        load_coco_results(tmp_path / "none.json", {1}, {3})


def test_lenient_validation_for_scoring_allows_odd_but_finite_values():
    odd = {**GOOD, "bbox": [0, 0, -1, 5], "score": 3.0}
    assert validate_coco_results([odd], "r", {1}, {3}, strict=False) == [odd]


def test_class_names_that_are_file_names_round_trip(tmp_path):
    names = ["traffic light", "${$", "ünï", "a.b"]  # spaces, dollars (mathtext), accents, dots
    ids, dets = two_images()
    dets = [detections([[0, 4, 10, 20]], [0.9], [3]), dets[1]]
    paths = write_voc_results(tmp_path, "test", ids, dets, names)
    assert [p.name for p in paths] == [voc_result_filename("test", n) for n in names]
    read = read_voc_results(tmp_path, "test", names, known_image_ids=set(ids))
    assert list(read) == names and read["a.b"].image_ids == ["000005"]
    assert read["${$"].image_ids == ["000007"]


def test_a_class_name_that_leaves_the_results_folder_is_refused(tmp_path):
    out = tmp_path / "voc_results"
    with pytest.raises(UserError) as info:
        write_voc_lines(out, "test", {"cat": [], "../../evil": ["000005 0.5 1 2 3 4"]})
    assert str(info.value) == (
        "class name: 'comp4_det_test_../../evil.txt' holds a '/'; expected a file name inside "
        f"{out}"
    )
    assert list(tmp_path.iterdir()) == []  # not even the valid class's file
