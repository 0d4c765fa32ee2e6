"""A LabelImg folder of real photos (tests/data/raccoon) read as it comes, and split-dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from detection.data.loader import BadSample, DetectionDataset, Sample
from detection.data.splits import parse_fractions, split_ids
from detection.data.transforms import TestTransform
from detection.data.voc import VOCLayout, find_image, load_voc
from engine.errors import UserError
from engine.images import decode_image
from tools.cli import main

RACCOON = Path(__file__).resolve().parents[2] / "data" / "raccoon"
LAYOUT = VOCLayout(image_dir="images", ann_dir="annotations", split_dir="splits")
TRANSFORM = TestTransform(128, 192, "RGB", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


@pytest.fixture
def raccoon(tmp_path: Path) -> Path:
    """A writable copy of the photos with split files made by `resdet split-dataset`."""
    root = tmp_path / "raccoon"
    shutil.copytree(RACCOON, root)
    args = ["split-dataset", str(root), "--ann-dir", "annotations", "--out", str(root / "splits")]
    assert main([*args, "--fractions", "train=0.75,test=0.25", "--seed", "0"]) == 0
    return root


def test_split_dataset_is_deterministic_and_complete(raccoon: Path, capsys) -> None:
    train = (raccoon / "splits/train.txt").read_text().split()
    test = (raccoon / "splits/test.txt").read_text().split()
    assert (len(train), len(test)) == (9, 3) and not set(train) & set(test)
    assert sorted(train + test) == sorted(p.stem for p in (raccoon / "annotations").iterdir())
    ids = [p.stem for p in (RACCOON / "annotations").iterdir()]
    fractions = parse_fractions("train=0.75,test=0.25")
    assert split_ids(ids, fractions, 0) == {"train": train, "test": test}  # same seed, same split
    assert split_ids(list(reversed(ids)), fractions, 0)["test"] == test  # listing order is moot
    assert split_ids(ids, fractions, 1)["test"] != test
    args = [
        "split-dataset",
        str(raccoon),
        "--ann-dir",
        "annotations",
        "--out",
        str(raccoon / "splits"),
    ]
    capsys.readouterr()
    assert main([*args, "--fractions", "train=0.5,test=0.5"]) == 2  # would change the split
    assert "train.txt: exists with other ids; --force replaces it" in capsys.readouterr().err
    assert main([*args, "--fractions", "train=0.5,test=0.5", "--force"]) == 0
    assert len((raccoon / "splits/test.txt").read_text().split()) == 6


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ("train=0.8,test=0.3", "must sum to 1"),
        ("train=0.8,train=0.2", "is not name=fraction with a new name"),
        ("train=1.0,test=0", "is not name=fraction"),
        ("train", "is not name=fraction"),
    ],
)
def test_bad_fractions_are_one_line_errors(fractions: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_fractions(fractions)


def test_reader_gives_the_xml_boxes_of_real_photos(raccoon: Path) -> None:
    records = load_voc(str(raccoon), "train", ["raccoon"], layout=LAYOUT, check_images=True)
    records += load_voc(str(raccoon), "test", ["raccoon"], layout=LAYOUT, check_images=True)
    assert len(records) == 12 and sum(len(r.boxes) for r in records) == 13
    two = next(r for r in records if r.image_id == "raccoon-31")
    assert two.path == str(raccoon / "images/raccoon-31.jpg")
    assert (two.width, two.height) == (236, 214)
    np.testing.assert_array_equal(two.boxes, [[81, 20, 187, 197], [10, 54, 80, 145]])
    for record in records:  # every <size> matches the decoded JPEG
        assert decode_image(record.path).shape[:2] == (record.height, record.width)


def test_images_are_found_by_filename_then_by_stem(tmp_path: Path) -> None:
    (tmp_path / "photo one.JPG").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    assert find_image(str(tmp_path), "a", "photo one.JPG") == str(tmp_path / "photo one.JPG")
    assert find_image(str(tmp_path), "b", "b.jpg") == str(tmp_path / "b.png")  # name is stale
    assert find_image(str(tmp_path), "c", None) == str(
        tmp_path / "c.jpg"
    )  # missing: reported later


def test_a_size_that_differs_from_the_xml_is_reported_by_file(raccoon: Path) -> None:
    xml = raccoon / "annotations/raccoon-31.xml"
    xml.write_text(xml.read_text().replace("<width>236</width>", "<width>300</width>"))
    records = load_voc(str(raccoon), "train", ["raccoon"], layout=LAYOUT)
    records += load_voc(str(raccoon), "test", ["raccoon"], layout=LAYOUT)
    dataset = DetectionDataset(records, TRANSFORM)
    items = [dataset[i] for i in range(len(records))]
    bad = [item for item in items if isinstance(item, BadSample)]
    assert len(bad) == 1 and sum(isinstance(item, Sample) for item in items) == 11
    assert bad[0].reason == (
        f"{raccoon / 'images/raccoon-31.jpg'}: decoded size 236x214 differs from the annotated "
        "300x214"
    )
