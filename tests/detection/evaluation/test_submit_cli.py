"""`resdet submit`: server file names, archive contents, and every kind of bad entry."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from tools.cli import main

IMAGE_INFO = {
    "images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in (1, 2, 9)],
    "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
}
GOOD = [
    {"image_id": 1, "category_id": 1, "bbox": [10.5, 20.0, 30.0, 40.25], "score": 0.98765},
    {"image_id": 9, "category_id": 90, "bbox": [0, 0, 0, 0], "score": 0},
    {"image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1},
]


def submit_coco(capsys, tmp_path: Path, entries: object, name: str = "resnet101") -> tuple:
    info, results = tmp_path / "image_info_test-dev2017.json", tmp_path / "coco_results.json"
    info.write_text(json.dumps(IMAGE_INFO))
    results.write_text(json.dumps(entries))
    argv = ["submit", "--results", results, "--annotations", info, "--name", name]
    code = main([*map(str, argv), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_coco_results_produce_the_server_file_names(capsys, tmp_path):
    code, out, err = submit_coco(capsys, tmp_path, GOOD)
    assert code == 0
    out_dir = tmp_path / "out"
    stem = "detections_test-dev2017_resnet101_results"
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{stem}.json", f"{stem}.zip"]
    assert json.loads((out_dir / f"{stem}.json").read_text()) == GOOD
    with zipfile.ZipFile(out_dir / f"{stem}.zip") as archive:
        assert archive.namelist() == [f"{stem}.json"]
        assert json.loads(archive.read(f"{stem}.json")) == GOOD
    assert f"wrote {out_dir / stem}.json" in out
    assert "1 images have no detection" in err  # image 2


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (1, {"image_id": 3}, "entry 1: field 'image_id': unknown image id 3"),
        (2, {"image_id": 1.0}, "entry 2: field 'image_id': expected an integer"),
        (0, {"category_id": 2}, "entry 0: field 'category_id': unknown category 2"),
        (2, {"bbox": [1, 2, 3]}, "entry 2: field 'bbox': expected [x, y, w, h] numbers"),
        (1, {"bbox": [1, 2, "Infinity", 4]}, "entry 1: field 'bbox': expected [x, y, w, h]"),
        (1, {"bbox": [1, 2, float("inf"), 4]}, "entry 1: field 'bbox': non-finite number"),
        (0, {"bbox": [1, 2, 3, -0.5]}, "entry 0: field 'bbox': width and height must be >= 0"),
        (2, {"score": 1.0001}, "entry 2: field 'score': expected a value in [0, 1]"),
        (2, {"score": -0.1}, "entry 2: field 'score': expected a value in [0, 1]"),
        (0, {"score": float("nan")}, "entry 0: field 'score': expected a finite number"),
        (1, {"score": "0.5"}, "entry 1: field 'score': expected a finite number"),
    ],
)
def test_each_kind_of_bad_coco_entry_is_named(capsys, tmp_path, index, change, message):
    entries = [dict(e) for e in GOOD]
    entries[index].update(change)
    code, out, err = submit_coco(capsys, tmp_path, entries)
    assert code == 2 and out == ""
    assert f"coco_results.json: {message}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written for a bad file


def test_missing_field_and_bad_structure(capsys, tmp_path):
    entries = [dict(e) for e in GOOD]
    del entries[2]["category_id"]
    assert "entry 2: field 'category_id' is missing" in submit_coco(capsys, tmp_path, entries)[2]
    assert "expected a JSON list" in submit_coco(capsys, tmp_path, {"x": GOOD})[2]


@pytest.mark.parametrize("name", ["my_method", "a b", ""])
def test_bad_method_name(capsys, tmp_path, name):
    code, _, err = submit_coco(capsys, tmp_path, GOOD, name=name)
    assert code == 2 and "--name: use letters, digits and '-' only" in err


def write_voc_results(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"comp4_det_test_{name}.txt").write_text(text)


def test_voc2012_package(capsys, tmp_path):
    write_voc_results(
        tmp_path / "res",
        {"cat": "2008_000001 0.900 1.0 2.0 30.0 40.0\n", "dog": "", "aeroplane": ""},
    )
    (tmp_path / "res" / "comp4_det_val_cat.txt").write_text("other split: not packed\n")
    argv = ["submit", "--voc-results", tmp_path / "res", "--name", "r101", "--out", tmp_path / "o"]
    assert main(list(map(str, argv))) == 0
    tar_path = tmp_path / "o" / "voc2012_test_r101_results.tar.gz"
    assert f"wrote {tar_path}" in capsys.readouterr().out
    with tarfile.open(tar_path) as tar:
        assert tar.getnames() == [  # VOC class order
            "results/VOC2012/Main/comp4_det_test_aeroplane.txt",
            "results/VOC2012/Main/comp4_det_test_cat.txt",
            "results/VOC2012/Main/comp4_det_test_dog.txt",
        ]
        member = tar.extractfile("results/VOC2012/Main/comp4_det_test_cat.txt")
        assert member is not None and member.read() == b"2008_000001 0.900 1.0 2.0 30.0 40.0\n"


def test_voc2012_package_checks_lines_and_image_ids(capsys, tmp_path):
    write_voc_results(tmp_path / "res", {"cat": "2008_000001 0.9 1 2 30 40\n2008_000002 0.9 1\n"})
    argv = ["submit", "--voc-results", tmp_path / "res", "--name", "r", "--out", tmp_path / "o"]
    assert main(list(map(str, argv))) == 2
    assert "comp4_det_test_cat.txt:2: expected 6 fields" in capsys.readouterr().err
    write_voc_results(
        tmp_path / "res", {"cat": "2008_000001 0.9 1 2 30 40\n2008_000777 0.9 1 2 3 4\n"}
    )
    voc_root = tmp_path / "VOC2012"
    (voc_root / "ImageSets" / "Main").mkdir(parents=True)
    (voc_root / "ImageSets" / "Main" / "test.txt").write_text("2008_000001\n")
    assert main([*map(str, argv), "--voc-root", str(voc_root)]) == 2
    assert "comp4_det_test_cat.txt:2: unknown image id '2008_000777'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_submit_needs_exactly_one_kind(capsys, tmp_path):
    assert main(["submit", "--name", "x", "--out", str(tmp_path)]) == 2
    assert "exactly one of --results (COCO) or --voc-results (VOC)" in capsys.readouterr().err
    assert main(["submit", "--name", "x", "--out", str(tmp_path), "--results", "r.json"]) == 2
    assert "--annotations" in capsys.readouterr().err
