"""detection/data/coco.py on the hand-written JSON files in fixtures/coco."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from detection.data.cleaning import DataWarning
from detection.data.coco import (
    coco_image_root,
    load_coco,
    read_coco_json,
    read_coco_meta,
    resolve_ann_file,
)
from engine.errors import UserError


def test_records_labels_and_mapping(coco_tree: Path) -> None:
    with pytest.warns(DataWarning) as caught:
        (a, b, c), meta = load_coco(
            str(coco_tree / "instances_tiny.json"), str(coco_tree / "images")
        )
    # categories sorted by id: person(1) -> 0, cat(3) -> 1, dog(18) -> 2
    assert meta.class_names == ["person", "cat", "dog"]
    assert meta.label_to_category_id == [1, 3, 18]
    assert meta.category_id_to_label == {1: 0, 3: 1, 18: 2}
    assert (a.image_id, a.path, a.width, a.height) == (1, str(coco_tree / "images/a.jpg"), 40, 30)
    # [2,3,10,5] -> (2,3,12,8); [30,20,15,20] -> (30,20,45,40) clipped to (30,20,40,30)
    np.testing.assert_array_equal(a.boxes, [[2, 3, 12, 8], [30, 20, 40, 30]])
    np.testing.assert_array_equal(a.labels, [2, 0])
    np.testing.assert_array_equal(a.ignore, [False, False])
    # image 2 has no annotations and is kept
    assert b.image_id == 2 and b.boxes.shape == (0, 4)
    # image 7: the zero-width cat is dropped, the crowd person is an ignore region
    np.testing.assert_array_equal(c.boxes, [[0, 0, 30, 30], [1.5, 2.5, 4.5, 6.5]])
    np.testing.assert_array_equal(c.labels, [0, 1])
    np.testing.assert_array_equal(c.ignore, [True, False])
    messages = sorted(str(w.message) for w in caught)
    assert "clipped 1 box(es)" in messages[0] and "image 1" in messages[0]
    assert "dropped 1 degenerate box(es)" in messages[1] and "image 7" in messages[1]


def test_class_names_choose_the_label_order(coco_tree: Path) -> None:
    ann = str(coco_tree / "instances_tiny.json")
    with pytest.warns(DataWarning):
        (a, _, _), meta = load_coco(ann, str(coco_tree / "images"), ["dog", "cat", "person"])
    assert meta.label_to_category_id == [18, 3, 1]
    np.testing.assert_array_equal(a.labels, [0, 2])
    with pytest.raises(UserError, match=r"instances_tiny\.json: unknown class 'dog'"):
        read_coco_meta(ann, ["person", "cat"])
    with pytest.raises(UserError, match=r"instances_tiny\.json: no category named 'horse'"):
        read_coco_meta(ann, ["person", "cat", "dog", "horse"])


def test_image_info_file_without_annotations(coco_tree: Path) -> None:
    (record,), meta = load_coco(str(coco_tree / "image_info_test.json"), str(coco_tree))
    assert (record.image_id, record.width, record.height) == (4, 10, 12)
    assert meta.class_names == ["person"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.json", "malformed.json: malformed JSON (line 3, column 1): Expecting ','"),
        ("unknown_category.json", "unknown_category.json: annotation 5 has unknown category_id 2"),
        ("unknown_image.json", "unknown_image.json: annotation 6 refers to unknown image 9"),
        ("no_images.json", "no_images.json: missing the 'images' list"),
        ("bad_bbox.json", "bad_bbox.json: annotation 8 bbox is not [x, y, w, h] numbers"),
        ("absent.json", "absent.json: annotation file not found"),
    ],
)
def test_bad_input_names_the_file(coco_tree: Path, name: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_coco(str(coco_tree / name), str(coco_tree / "images"))
    assert "\n" not in str(info.value)


def test_missing_image_is_an_error_only_when_checked(coco_tree: Path) -> None:
    (coco_tree / "images/b.jpg").unlink()
    ann = str(coco_tree / "instances_tiny.json")
    with pytest.warns(DataWarning):
        assert len(load_coco(ann, str(coco_tree / "images"))[0]) == 3
    with pytest.raises(UserError, match=r"b\.jpg: image file not found \(listed in .*tiny"):
        load_coco(ann, str(coco_tree / "images"), check_images=True)


def test_2014_and_2017_layouts(tmp_path: Path) -> None:
    for folder in ("val2017", "val2014", "test2017", "annotations"):
        (tmp_path / folder).mkdir()
    (tmp_path / "annotations/instances_val2017.json").write_text("{}")
    root = str(tmp_path)
    assert coco_image_root(root, "annotations/instances_val2017.json") == f"{root}/val2017"
    assert coco_image_root(root, "instances_minival2014.json") == f"{root}/val2014"
    assert coco_image_root(root, "instances_valminusminival2014.json") == f"{root}/val2014"
    assert coco_image_root(root, "image_info_test-dev2017.json") == f"{root}/test2017"
    assert coco_image_root(root, "instances_train2017.json") == root  # no train2017/ here
    assert coco_image_root(root, "instances_train.json") == root
    ann = f"{root}/annotations/instances_val2017.json"
    # as given, under root (coco/), or under root's parent (coco/val2017 -> coco/)
    assert resolve_ann_file(root, ann) == ann
    assert resolve_ann_file(root, "annotations/instances_val2017.json") == ann
    assert resolve_ann_file(f"{root}/val2017", "annotations/instances_val2017.json") == ann
    with pytest.raises(UserError, match=r"instances_x\.json: annotation file not found"):
        resolve_ann_file(root, "annotations/instances_x.json")
    with pytest.raises(UserError, match="needs ann_file"):
        resolve_ann_file(root, "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"].append(dict(d["images"][0])), r"images\[\d\] repeats image id 1"),
        (lambda d: d["images"][0].update(width=0), "image 1 needs positive integer width"),
        (lambda d: d["images"][0].update(height=-3), "needs positive integer width and height"),
        (lambda d: d["images"][0].update(id=[1]), r"images\[0\] has id \[1\]; expected an integer"),
        (lambda d: d.update(annotations=[7]), r"annotations\[0\] is 7; expected an object"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "inf", 3]), "bbox is not"),
    ],
)
def test_malformed_entries_are_named(coco_tree: Path, change, message: str) -> None:
    data = json.loads((coco_tree / "instances_tiny.json").read_text())
    change(data)
    path = coco_tree / "changed.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        load_coco(str(path), str(coco_tree / "images"))


def test_null_annotations_and_infinity(coco_tree: Path) -> None:
    data = json.loads((coco_tree / "instances_tiny.json").read_text())
    data["annotations"] = None  # a test-set file written carelessly: no boxes, no crash
    (coco_tree / "null.json").write_text(json.dumps(data))
    records, _ = load_coco(str(coco_tree / "null.json"), str(coco_tree / "images"))
    assert all(len(r.boxes) == 0 for r in records)
    text = (
        (coco_tree / "instances_tiny.json").read_text().replace('"width": 40', '"width": Infinity')
    )
    (coco_tree / "inf.json").write_text(text)
    with pytest.raises(UserError, match=r"inf.json: Infinity is not a JSON number"):
        load_coco(str(coco_tree / "inf.json"), str(coco_tree / "images"))


def test_a_category_without_a_name_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [], "categories": [{"id": 1}]}))
    with pytest.raises(UserError, match=r"categories\[0\] needs an integer 'id' and a 'name'"):
        read_coco_json(path)


@pytest.mark.parametrize(
    ("file_name", "reason"),
    [
        ("../outside.jpg", "holds a '.' or '..' part"),
        ("sub/../../outside.jpg", "holds a '.' or '..' part"),
        ("/tmp/outside.jpg", "is an absolute path"),
        ("..\\outside.jpg", "holds a backslash or a drive"),
        ("", "is empty or has leading/trailing spaces"),
    ],
)
def test_a_file_name_that_leaves_the_image_root_is_refused(
    coco_tree: Path, file_name: str, reason: str
) -> None:
    (coco_tree / "outside.jpg").write_bytes((coco_tree / "images/b.jpg").read_bytes())
    data = json.loads((coco_tree / "instances_tiny.json").read_text())
    data["images"][1]["file_name"] = file_name
    path = coco_tree / "changed.json"
    path.write_text(json.dumps(data))
    images = coco_tree / "images"
    with pytest.raises(UserError) as info:
        load_coco(str(path), str(images), check_images=True)
    assert str(info.value) == (
        f"{path}: images[1] file_name: {file_name!r} {reason}; expected a file name inside {images}"
    )


def test_file_names_may_hold_sub_folders_but_must_be_strings(coco_tree: Path) -> None:
    (coco_tree / "images/val").mkdir()
    (coco_tree / "images/b.jpg").rename(coco_tree / "images/val/b.jpg")
    data = json.loads((coco_tree / "instances_tiny.json").read_text())
    data["images"][1]["file_name"] = "val/b.jpg"
    path = coco_tree / "nested.json"
    path.write_text(json.dumps(data))
    with pytest.warns(DataWarning):
        records, _ = load_coco(str(path), str(coco_tree / "images"), check_images=True)
    assert records[1].path == str(coco_tree / "images/val/b.jpg")
    data["images"][1]["file_name"] = 5
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        load_coco(str(path), str(coco_tree / "images"))
    assert (
        str(info.value) == f"{path}: images[1] file_name: 5 is not a string; expected a file name"
    )


def test_an_absurd_image_size_is_refused(coco_tree: Path) -> None:
    data = json.loads((coco_tree / "instances_tiny.json").read_text())
    data["images"][0]["width"] = 10**20
    (coco_tree / "huge.json").write_text(json.dumps(data))
    image_id = data["images"][0]["id"]
    with pytest.raises(
        UserError, match=rf"huge.json: image {image_id}: image size 10{'0' * 19} x "
    ):
        load_coco(str(coco_tree / "huge.json"), str(coco_tree / "images"))
