"""The generated shapes data set: determinism, VOC == COCO, content, crops, speed."""

from __future__ import annotations

import filecmp
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.data.coco import load_coco
from detection.data.synthetic import (
    SHAPE_CLASSES,
    _draw,
    _mask_box,
    _unit_polygons,
    image_shape,
    iter_scenes,
    render_scene,
    split_indices,
    write_coco_dataset,
    write_voc_dataset,
)
from detection.data.voc import load_voc


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_voc_dataset(str(tmp_path / run), num_images=8, seed=5, size=96, crops=True)
        write_coco_dataset(str(tmp_path / run), num_images=8, seed=5, size=96)
    write_voc_dataset(str(tmp_path / "c"), num_images=8, seed=6, size=96)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    assert len(files) == 8 * 3 + 4 + 3 + len(list((tmp_path / "a/crops").rglob("*.jpg")))
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert (len(match), mismatch, errors) == (len(files), [], [])
    image = Path("VOC2007/JPEGImages/000001.jpg")
    assert not filecmp.cmp(tmp_path / "a" / image, tmp_path / "c" / image, shallow=False)


def test_image_depends_only_on_seed_and_index() -> None:
    first = render_scene(1, 4, 96, 128)
    again = render_scene(1, 4, 96, 128)
    np.testing.assert_array_equal(first.image, again.image)
    assert first.objects == again.objects
    assert image_shape(0, 0, 256) in [(192, 256), (256, 192), (256, 256)]


def test_splits_partition_the_images() -> None:
    splits = split_indices(10, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(i for part in splits.values() for i in part) == list(range(10))
    assert [len(v) for v in split_indices(3, seed=0).values()] == [1, 1, 1]
    with pytest.raises(ValueError, match="at least 3"):
        split_indices(2, seed=0)


def test_voc_and_coco_trees_read_back_to_the_generated_objects(
    shapes_voc: Path, shapes_coco: Path
) -> None:
    truth = {index + 1: scene for index, _, scene in iter_scenes(40, seed=3, size=128)}
    seen_hard = seen_empty = 0
    for split in ("train", "val", "test"):
        voc = load_voc(str(shapes_voc), split, SHAPE_CLASSES)
        ann = str(shapes_coco / f"annotations/instances_{split}.json")
        coco, meta = load_coco(ann, str(shapes_coco / "images"), check_images=True)
        assert meta.class_names == SHAPE_CLASSES and meta.label_to_category_id == [1, 2, 3, 4, 5]
        assert [int(r.image_id) for r in voc] == [r.image_id for r in coco]
        for v, c in zip(voc, coco):
            scene = truth[int(c.image_id)]
            expected = np.array([o.box for o in scene.objects], np.float32).reshape(-1, 4)
            for record in (v, c):
                assert (record.height, record.width) == scene.image.shape[:2]
                np.testing.assert_array_equal(record.boxes, expected)
                np.testing.assert_array_equal(record.labels, [o.label for o in scene.objects])
                np.testing.assert_array_equal(record.ignore, [o.hard for o in scene.objects])
            seen_hard += int(c.ignore.sum())
            seen_empty += len(c.boxes) == 0
    assert seen_hard > 0 and seen_empty > 0  # difficult/iscrowd and empty images are covered


def test_objects_fill_all_coco_size_buckets_at_256() -> None:
    counts = [0, 0, 0]
    objects = 0
    for _, _, scene in iter_scenes(60, seed=0, size=256):
        for obj in scene.objects:
            area = (obj.box[2] - obj.box[0]) * (obj.box[3] - obj.box[1])
            counts[(area >= 32**2) + (area > 96**2)] += 1
            objects += 1
    assert min(counts) >= 0.1 * objects, counts  # small, medium and large all populated
    assert counts[1] + counts[2] > 0.7 * objects  # mostly medium and large: learnable


def test_boxes_are_the_tight_extent_of_the_drawn_pixels() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:8, 3:6] = True  # rows 2..7, columns 3..5
    assert _mask_box(mask) == (3, 2, 6, 8)
    assert _mask_box(np.zeros((20, 30), bool)) is None
    # an upright square drawn into the box x0=10, y0=20, w=30, h=20 covers exactly it
    drawn = np.zeros((64, 64), np.uint8)
    _draw(drawn, _unit_polygons(np.random.default_rng(0), 1), (10, 20, 30, 20))
    assert _mask_box(drawn.astype(bool)) == (10, 20, 40, 40)
    assert drawn[20:40, 10:40].all() and drawn.sum() == 30 * 20


def test_crops_are_an_imagefolder_tree(tmp_path: Path) -> None:
    summary = write_voc_dataset(str(tmp_path), num_images=12, seed=1, size=128, crops=True)
    for split in ("train", "val"):
        assert sorted(p.name for p in (tmp_path / "crops" / split).iterdir()) == sorted(
            SHAPE_CLASSES
        )
    crops = sorted((tmp_path / "crops").rglob("*.jpg"))
    expected = sum(not o.hard for _, _, s in iter_scenes(12, 1, 128) for o in s.objects)
    assert len(crops) == summary.crops == expected
    image = cv2.imread(str(crops[0]))
    assert image is not None and image.shape == (64, 64, 3)


def test_generation_takes_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    write_coco_dataset(str(tmp_path), num_images=60, seed=0, size=256, crops=True)
    assert time.perf_counter() - start < 10  # ~0.3 s on a 2-core sandbox
