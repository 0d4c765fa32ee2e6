"""Fixtures for the detection data tests: hand-written VOC/COCO trees and generated shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.data.synthetic import write_coco_dataset, write_voc_dataset

FIXTURES = Path(__file__).parent / "fixtures"

# image files the hand-written annotations refer to: path -> (height, width)
_VOC_IMAGES = {
    "VOC2007/JPEGImages/000001.jpg": (30, 40),
    "VOC2007/JPEGImages/000002.jpg": (16, 24),
    "VOC2007/JPEGImages/000003.jpg": (30, 40),
    "VOC2012/JPEGImages/2008_000001.jpg": (60, 50),
}
_COCO_IMAGES = {"a.jpg": (30, 40), "b.jpg": (20, 20), "c.jpg": (30, 30)}


def write_image(path: Path, height: int, width: int, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))


@pytest.fixture
def voc_devkit(tmp_path: Path) -> Path:
    """A copy of fixtures/VOCdevkit with its images written (a fresh copy per test)."""
    root = tmp_path / "VOCdevkit"
    shutil.copytree(FIXTURES / "VOCdevkit", root)
    for name, (height, width) in _VOC_IMAGES.items():
        write_image(root / name, height, width)
    return root


@pytest.fixture
def coco_tree(tmp_path: Path) -> Path:
    """A copy of fixtures/coco (JSON files) with an images/ folder for instances_tiny.json."""
    root = tmp_path / "coco"
    shutil.copytree(FIXTURES / "coco", root)
    for name, (height, width) in _COCO_IMAGES.items():
        write_image(root / "images" / name, height, width)
    return root


@pytest.fixture(scope="session")
def shapes_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated shapes, VOC layout: 40 images of 128 px, seed 3 (returns the VOC2007 folder)."""
    out = tmp_path_factory.mktemp("shapes_voc")
    write_voc_dataset(str(out), num_images=40, seed=3, size=128)
    return out / "VOC2007"


@pytest.fixture(scope="session")
def shapes_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 40 images in COCO layout (returns the tree's root)."""
    out = tmp_path_factory.mktemp("shapes_coco")
    write_coco_dataset(str(out), num_images=40, seed=3, size=128)
    return out
