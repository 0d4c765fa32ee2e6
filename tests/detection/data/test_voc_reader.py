"""detection/data/voc.py on the hand-written tree in fixtures/VOCdevkit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from detection.data.cleaning import DataWarning
from detection.data.voc import (
    VOC_CLASSES,
    load_voc,
    load_voc_splits,
    read_split_file,
    split_id_reason,
)
from engine.errors import UserError

DOG, PERSON, CAR, BICYCLE = (VOC_CLASSES.index(n) for n in ("dog", "person", "car", "bicycle"))


def _load(root: Path, split: str, **kw: object) -> list:
    return load_voc(str(root / "VOC2007"), split, **kw)  # type: ignore[arg-type]


def test_trainval_records_match_the_hand_converted_boxes(voc_devkit: Path) -> None:
    with pytest.warns(DataWarning) as caught:
        first, second, third = _load(voc_devkit, "trainval")
    # 000001: (xmin-1, ymin-1, xmax, ymax); the person is difficult -> ignore
    assert first.image_id == "000001"
    assert first.path == str(voc_devkit / "VOC2007" / "JPEGImages" / "000001.jpg")
    assert (first.width, first.height) == (40, 30)
    np.testing.assert_array_equal(first.boxes, [[0, 0, 10, 20], [4, 5, 40, 30]])
    np.testing.assert_array_equal(first.labels, [DOG, PERSON])
    np.testing.assert_array_equal(first.ignore, [False, True])
    # 000002: no <size> -> the 24x16 image header; (0,3.5,30,12) -> (-1,2.5,30,12) clipped
    # to (0,2.5,24,12); the second car (xmax < xmin) is dropped
    assert (second.width, second.height) == (24, 16)
    np.testing.assert_array_equal(second.boxes, [[0, 2.5, 24, 12]])
    np.testing.assert_array_equal(second.labels, [CAR])
    np.testing.assert_array_equal(second.ignore, [False])
    # 000003: no objects, kept
    assert third.boxes.shape == (0, 4) and third.labels.shape == (0,)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "clipped 1 box(es)" in messages[0] and "000002.xml" in messages[0]
    assert "dropped 1 degenerate box(es)" in messages[1] and "000002.xml" in messages[1]


def test_class_specific_split_file_and_custom_class_names(voc_devkit: Path) -> None:
    assert read_split_file(str(voc_devkit / "VOC2007/ImageSets/Main/dog_trainval.txt")) == [
        "000001",
        "000003",
    ]
    (record,) = _load(voc_devkit, "test", class_names=["person", "dog"])
    np.testing.assert_array_equal(record.labels, [1, 0])


def test_07_plus_12_concatenates_in_split_order(voc_devkit: Path) -> None:
    with pytest.warns(DataWarning):
        records = load_voc_splits(str(voc_devkit), ["VOC2007/trainval", "VOC2012/trainval"])
    assert [r.image_id for r in records] == ["000001", "000002", "000003", "2008_000001"]
    last = records[-1]
    assert last.path == str(voc_devkit / "VOC2012" / "JPEGImages" / "2008_000001.jpg")
    np.testing.assert_array_equal(last.boxes, [[10, 20, 30, 60]])
    np.testing.assert_array_equal(last.labels, [BICYCLE])
    # a VOC20xx root takes plain split names
    assert [r.image_id for r in load_voc_splits(str(voc_devkit / "VOC2007"), ["test"])] == [
        "000001"
    ]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("empty", "empty.txt: split file lists no images"),
        ("nonexistent", "nonexistent.txt: split file not found (found: dog_trainval, empty"),
        ("unknown_class", "000010.xml: object 0 has unknown class 'unicorn'"),
        ("missing_coordinate", "000011.xml: object 0 has no numeric bndbox/xmax (got None)"),
        ("not_a_number", "000013.xml: object 0 has no numeric bndbox/xmax (got 'five')"),
        ("malformed", "000012.xml: malformed XML"),
        ("missing_annotation", "000099.xml: annotation file not found"),
    ],
)
def test_bad_input_names_the_file(voc_devkit: Path, split: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as info:
        _load(voc_devkit, split)
    assert "\n" not in str(info.value)


def test_missing_image_is_an_error_only_when_checked(voc_devkit: Path) -> None:
    (voc_devkit / "VOC2007/JPEGImages/000001.jpg").unlink()
    assert _load(voc_devkit, "test")[0].image_id == "000001"  # annotations alone are fine
    with pytest.raises(UserError, match=r"000001\.jpg: image file not found \(listed in .*test"):
        _load(voc_devkit, "test", check_images=True)


def test_missing_size_and_missing_image_is_an_error(voc_devkit: Path) -> None:
    (voc_devkit / "VOC2007/JPEGImages/000002.jpg").unlink()
    with pytest.raises(UserError, match=r"000002\.xml: no valid <size>, and the image header"):
        _load(voc_devkit, "trainval")


def test_split_config_errors(voc_devkit: Path) -> None:
    with pytest.raises(UserError, match=r"ImageSets/Main: no split folder for split 'trainval'"):
        load_voc_splits(str(voc_devkit), ["trainval"])  # a VOCdevkit root needs VOC20xx/
    with pytest.raises(UserError, match="'000001' is listed by both split 'VOC2007/test'"):
        load_voc_splits(str(voc_devkit), ["VOC2007/test", "VOC2007/test"])
    with pytest.raises(UserError, match="no VOC splits given"):
        load_voc_splits(str(voc_devkit), [])


@pytest.mark.parametrize(
    ("image_id", "reason"),
    [
        ("../../../outside/evil", "holds a '/'"),
        ("/tmp/evil", "is an absolute path"),
        ("..", "holds a '.' or '..' part"),
        ("..\\..\\outside\\evil", "holds a backslash or a drive"),
        ("C:evil", "holds a backslash or a drive"),
        ("evil\x01", "holds a control character"),
    ],
)
def test_an_id_that_leaves_the_root_is_refused_with_file_and_line(
    voc_devkit: Path, image_id: str, reason: str
) -> None:
    # a valid annotation where the id points (from Annotations/): opened, it would load
    outside = voc_devkit.parent / "outside"
    outside.mkdir()
    (outside / "evil.xml").write_text((voc_devkit / "VOC2007/Annotations/000001.xml").read_text())
    split = voc_devkit / "VOC2007/ImageSets/Main/evil.txt"
    split.write_text(f"000001\n\n{image_id}  1\n")
    with pytest.raises(UserError) as info:
        _load(voc_devkit, "evil")
    assert str(info.value) == (
        f"{split}:3: {image_id!r} {reason}; expected an image id: the stem of a file in the "
        "annotation folder"
    )
    with pytest.raises(UserError, match=re.escape(f"{split}:3: ")):
        read_split_file(str(split))  # `resdet submit` reads test.txt through it too


def test_an_id_with_a_space_cannot_come_from_a_split_file(voc_devkit: Path) -> None:
    assert split_id_reason("photo one") == "holds a space (split files separate columns by spaces)"
    assert split_id_reason("2008_000001") is None and split_id_reason("фото.1") is None
    split = voc_devkit / "VOC2007/ImageSets/Main/spaced.txt"
    split.write_text("000001\u00a0x\n")  # a no-break space splits the line as any other
    assert read_split_file(str(split)) == ["000001"]


@pytest.mark.parametrize("width", ["99999999999999999999", "100001"])
def test_an_absurd_size_is_refused_naming_the_file(
    voc_devkit: Path, tmp_path: Path, width: str
) -> None:
    root = tmp_path / "VOC2007"
    shutil.copytree(voc_devkit / "VOC2007", root)
    xml = root / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("<width>40</width>", f"<width>{width}</width>"))
    message = r"000001.xml: <size>: image size \d+ x 30 is beyond 100000 pixels a side; expected"
    with pytest.raises(UserError, match=message):
        load_voc(str(root), "trainval")
