"""A LabelImg folder of real photos (../shared/data/raccoon) read as it comes, and split-dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from detection.data.loader import BadSample, DetectionDataset, Sample
from detection.data.splits import parse_fractions, split_ids, write_split_files
from detection.data.transforms import TestTransform
from detection.data.voc import VOCLayout, find_image, load_voc, load_voc_splits
from engine.errors import UserError
from engine.images import decode_image
from tools.cli import main

LAYOUT = VOCLayout(image_dir="images", ann_dir="annotations", split_dir="splits")
TRANSFORM = TestTransform(128, 192, "RGB", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


@pytest.fixture
def raccoon(raccoon_photos: Path, tmp_path: Path) -> Path:
    """A writable copy of the photos with split files made by `resdet split-dataset`."""
    root = tmp_path / "raccoon"
    shutil.copytree(raccoon_photos, root)
    args = ["split-dataset", str(root), "--ann-dir", "annotations", "--out", str(root / "splits")]
    assert main([*args, "--fractions", "train=0.75,test=0.25", "--seed", "0"]) == 0
    return root


def test_split_dataset_is_deterministic_and_complete(
    raccoon: Path, raccoon_photos: Path, capsys
) -> None:
    train = (raccoon / "splits/train.txt").read_text().split()
    test = (raccoon / "splits/test.txt").read_text().split()
    assert (len(train), len(test)) == (9, 3) and not set(train) & set(test)
    assert sorted(train + test) == sorted(p.stem for p in (raccoon / "annotations").iterdir())
    ids = [p.stem for p in (raccoon_photos / "annotations").iterdir()]
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


def test_the_xml_filename_never_leads_out_of_the_image_folder(tmp_path: Path) -> None:
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    (tmp_path / "evil.jpg").write_bytes(b"x")  # where ../../evil.jpg would lead
    (images / "a b.jpg").write_bytes(b"x")
    assert find_image(str(images), "a", "../../evil.jpg") == str(images / "a.jpg")
    assert find_image(str(images), "a", "/abs/path/a b.jpg") == str(images / "a b.jpg")
    assert find_image(str(images), "a", "C:\\photos\\a b.jpg") == str(images / "a b.jpg")
    assert find_image(str(images), "a", "..") == str(images / "a.jpg")


def _labelimg_folder(root: Path, ids: list[str]) -> Path:
    """``root/annotations/<id>.xml`` (one raccoon box, a <size>, no image) for each id."""
    (root / "annotations").mkdir(parents=True)
    for image_id in ids:
        (root / "annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>40</width>"
            "<height>30</height></size><object><name>raccoon</name><bndbox><xmin>1</xmin>"
            "<ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
        )
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_split_dataset_writes_what_its_reader_reads_back(tmp_path: Path) -> None:
    ids = ["IMG_0001", "фото-2", "a.b.c", "x(1)", "2008_000001", "photo,3", "ünï'4"]
    root = _labelimg_folder(tmp_path / "photos", ids)
    argv = ["split-dataset", str(root), "--ann-dir", "annotations", "--fractions"]
    assert main([*argv, "train=0.6,test=0.4", "--seed", "3"]) == 0
    layout = VOCLayout(image_dir="images", ann_dir="annotations")
    records = load_voc_splits(str(root), ["train", "test"], ["raccoon"], layout=layout)
    assert sorted(r.image_id for r in records) == sorted(ids)
    assert all(r.path == str(root / "images" / f"{r.image_id}.jpg") for r in records)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("photo one.xml", "its id 'photo one' holds a space (split files separate columns by "
                          "spaces); rename the file (and its image)"),
        ("tab\tbed.xml", "its id 'tab\\tbed' holds a control character; rename the file (and "
                         "its image)"),
        ("C.XML", "the reader opens '<id>.xml'; rename it to 'C.xml'"),
        ("broken.xml", "malformed XML (no element found: line 1, column 12); fix or remove it"),
    ],
)  # fmt: skip
def test_split_dataset_refuses_what_its_reader_could_not_read(
    tmp_path: Path, bad: str, problem: str, capsys
) -> None:
    root = _labelimg_folder(tmp_path / "photos", ["a", "b", "c"])
    (root / "annotations" / bad).write_text("<annotation>")
    before = _files(tmp_path)
    argv = ["split-dataset", str(root), "--ann-dir", "annotations"]
    assert main([*argv, "--fractions", "train=0.5,test=0.5"]) == 2
    err = capsys.readouterr().err
    assert err == f"resdet split-dataset: error: {root / 'annotations' / bad}: {problem}\n"
    assert _files(tmp_path) == before  # no split file written


def test_split_dataset_counts_the_other_unreadable_annotations(tmp_path: Path, capsys) -> None:
    root = _labelimg_folder(tmp_path / "photos", ["a", "b c", "d e", "f"])
    assert main(["split-dataset", str(root), "--ann-dir", "annotations",
                 "--fractions", "train=0.5,test=0.5"]) == 2  # fmt: skip
    assert capsys.readouterr().err.endswith(
        "its id 'b c' holds a space (split files separate columns by spaces); rename the file "
        "(and its image) (1 more like it)\n"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../x", "holds a '/'"),
        ("TMP/x", "is an absolute path"),
        ("..", "holds a '.' or '..' part"),
        ("a\\b", "holds a backslash or a drive"),
    ],
)
def test_split_dataset_keeps_fraction_names_inside_out(
    tmp_path: Path, name: str, reason: str, capsys
) -> None:
    name = name.replace("TMP", str(tmp_path))  # an absolute name, still inside tmp_path
    root = _labelimg_folder(tmp_path / "data" / "photos", ["a", "b"])
    out = root / "splits"
    before = _files(tmp_path)
    assert main(["split-dataset", str(root), "--ann-dir", "annotations", "--out", str(out),
                 "--fractions", f"{name}=1.0"]) == 2  # fmt: skip
    assert capsys.readouterr().err == (
        f"resdet split-dataset: error: --fractions: {name!r} {reason}; expected a split name "
        "(it names the split file <name>.txt in the output folder)\n"
    )
    assert _files(tmp_path) == before


def test_split_files_are_written_only_with_ids_the_reader_reads(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        write_split_files(tmp_path, {"train": ["a", "../b"]}, force=False)
    assert str(info.value) == (
        f"{tmp_path / 'train.txt'}: '../b' holds a '/'; expected an image id: the stem of a file "
        "in the annotation folder"
    )
    with pytest.raises(UserError, match=r"^--fractions: '\.\./x\.txt' holds a '/'"):
        write_split_files(tmp_path, {"../x": ["a"]}, force=False)
    assert list(tmp_path.iterdir()) == []
