"""`resdet make-dataset` through tools.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.cli import main


def test_voc_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    args = ["make-dataset", "--format", "voc", "--out", str(out), "--num-images", "10"]
    assert main([*args, "--seed", "2", "--size", "96"]) == 0
    voc = out / "VOC2007"
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 10
    assert len(list((voc / "Annotations").glob("*.xml"))) == 10
    lines = {s: (voc / f"ImageSets/Main/{s}.txt").read_text().split() for s in
             ("train", "val", "trainval", "test")}  # fmt: skip
    assert [len(lines[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert lines["trainval"] == sorted(lines["train"] + lines["val"])
    printed = capsys.readouterr().out
    assert f"wrote 10 images (train 6, val 2, test 2) to {voc}" in printed
    assert "circle, square, triangle, star, ring" in printed
    assert not (out / "crops").exists()


def test_coco_tree_with_crops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    args = ["make-dataset", "--format", "coco", "--out", str(out), "--num-images", "5"]
    assert main([*args, "--seed", "0", "--size", "96", "--crops"]) == 0
    assert len(list((out / "images").glob("*.jpg"))) == 5
    ids = []
    for split in ("train", "val", "test"):
        data = json.loads((out / f"annotations/instances_{split}.json").read_text())
        assert [c["name"] for c in data["categories"]] == [
            "circle", "square", "triangle", "star", "ring"
        ]  # fmt: skip
        ids += [image["id"] for image in data["images"]]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert (out / "crops/train/star").is_dir() and (out / "crops/val/ring").is_dir()
    assert "classification crops in" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--num-images", "2"], "--num-images must be at least 3 (train/val/test), got 2"),
        (["--size", "10"], "--size must be between 64 and 4096 pixels, got 10"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    assert main(["make-dataset", "--format", "voc", "--out", str(tmp_path), *option]) == 2
    assert capsys.readouterr().err.strip() == f"resdet make-dataset: error: {message}"
    assert not (tmp_path / "VOC2007").exists()
