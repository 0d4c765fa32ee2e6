"""detection/data/build.py: config -> records, class names and loaders."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from detection.config import Config
from detection.data.build import (
    build_detection_test_loader,
    build_detection_train_loader,
    resolve_class_names,
)
from detection.data.cleaning import DataWarning
from detection.data.synthetic import SHAPE_CLASSES
from detection.data.voc import VOC_CLASSES, load_voc
from engine.errors import UserError


def _shapes_cfg(voc_root: Path, workers: int = 0) -> Config:
    cfg = Config(seed=11)
    cfg.model.num_classes = 5
    cfg.data.class_names = list(SHAPE_CLASSES)
    cfg.data.num_workers = workers
    for section, split in ((cfg.data.train, "trainval"), (cfg.data.test, "test")):
        section.root, section.splits = str(voc_root), [split]
    cfg.input.min_size_train, cfg.input.max_size_train = [64, 96], 160
    cfg.input.min_size_test, cfg.input.max_size_test = 96, 160
    cfg.input.color_jitter = 0.2
    return cfg


def test_class_names_by_format(coco_tree: Path, voc_devkit: Path) -> None:
    cfg = Config()
    with pytest.raises(UserError, match=r"data\.class_names is empty"):
        resolve_class_names(cfg)
    cfg.data.test.root = str(voc_devkit)
    assert resolve_class_names(cfg) == VOC_CLASSES
    cfg.data.test.format, cfg.data.test.root = "coco", str(coco_tree)
    cfg.data.test.ann_file = "instances_tiny.json"
    assert resolve_class_names(cfg) == ["person", "cat", "dog"]
    cfg.data.class_names = ["a", "b"]
    assert resolve_class_names(cfg) == ["a", "b"]


def test_train_stream_is_resumable_and_worker_independent(shapes_voc: Path) -> None:
    cfg = _shapes_cfg(shapes_voc)
    stream = list(itertools.islice(iter(build_detection_train_loader(cfg, 2)), 5))
    cfg.data.num_workers = 2
    resumed = list(itertools.islice(iter(build_detection_train_loader(cfg, 2, start_iter=3)), 2))
    for a, b in zip(stream[3:], resumed):
        assert a.images.image_ids == b.images.image_ids
        assert torch.equal(a.images.tensor, b.images.tensor)
        assert all(torch.equal(x.boxes, y.boxes) for x, y in zip(a.targets, b.targets))
    for batch in stream:
        assert len(batch.images) == 2
        orientation = {h <= w for h, w in batch.images.original_sizes}
        assert len(orientation) == 1  # aspect-ratio grouping
        assert tuple(batch.images.tensor.shape[2:]) == tuple(
            -(-max(s[i] for s in batch.images.image_sizes) // 32) * 32 for i in (0, 1)
        )
        assert all((~r.ignore).any() for r in batch.records)  # empty images left out


def test_train_records_include_empty_only_on_request(shapes_voc: Path) -> None:
    records = load_voc(str(shapes_voc), "trainval", SHAPE_CLASSES)
    trainable = {r.image_id for r in records if (~r.ignore).any()}
    assert len(trainable) < len(records)  # the fixture has empty / all-difficult images
    cfg = _shapes_cfg(shapes_voc)
    cfg.data.aspect_ratio_grouping = False
    for include_empty, expected in ((False, trainable), (True, {r.image_id for r in records})):
        cfg.data.train.include_empty = include_empty
        loader = build_detection_train_loader(cfg, 4)
        first_pass = -(-len(expected) // 4)  # batches that cover one shuffled pass
        seen = {i for b in itertools.islice(iter(loader), first_pass) for i in b.images.image_ids}
        assert seen == expected


def test_test_loader_covers_every_image_in_order(shapes_voc: Path) -> None:
    cfg = _shapes_cfg(shapes_voc)
    cfg.test.ims_per_batch = 3
    loader, records, class_names = build_detection_test_loader(cfg)
    assert class_names == SHAPE_CLASSES
    assert [r.image_id for r in records] == (
        shapes_voc / "ImageSets/Main/test.txt"
    ).read_text().split()
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(records) // 3)
    assert [i for b in batches for i in b.images.image_ids] == [r.image_id for r in records]
    first = batches[0]
    assert min(first.images.image_sizes[0]) == 96 and not any(first.images.flipped)
    sy, sx = first.images.scales[0]
    expected = torch.from_numpy(first.records[0].boxes) * torch.tensor([sx, sy, sx, sy])
    torch.testing.assert_close(first.targets[0].boxes, expected)
    assert first.targets[0].ignore.tolist() == first.records[0].ignore.tolist()


def test_coco_config(shapes_coco: Path) -> None:
    cfg = Config()
    cfg.model.num_classes = 5
    cfg.data.num_workers = 0
    cfg.data.test.format, cfg.data.test.root = "coco", str(shapes_coco / "images")
    cfg.data.test.ann_file = "annotations/instances_val.json"  # found under root's parent
    cfg.input.min_size_test = 64
    loader, records, class_names = build_detection_test_loader(cfg)
    assert class_names == SHAPE_CLASSES
    assert sum(len(b.images) for b in loader) == len(records) == 8


def test_config_errors(shapes_voc: Path, voc_devkit: Path) -> None:
    cfg = _shapes_cfg(shapes_voc)
    cfg.model.num_classes = 20
    with pytest.raises(UserError, match=r"model\.num_classes is 20 but the data has 5 classes"):
        build_detection_test_loader(cfg)
    cfg = _shapes_cfg(shapes_voc)
    cfg.data.test.format = "imagefolder"
    with pytest.raises(UserError, match=r"data\.test\.format 'imagefolder' is not a detection"):
        build_detection_test_loader(cfg)
    cfg = _shapes_cfg(shapes_voc)
    cfg.data.train.root = str(shapes_voc / "absent")
    with pytest.raises(UserError, match=r"data\.train\.root: folder .*absent not found"):
        build_detection_train_loader(cfg, 2)


def test_missing_images_are_dropped_or_an_error(voc_devkit: Path) -> None:
    cfg = Config()
    cfg.data.num_workers = 0
    cfg.data.test.root, cfg.data.test.splits = str(voc_devkit / "VOC2007"), ["trainval"]
    (voc_devkit / "VOC2007/JPEGImages/000003.jpg").unlink()
    with pytest.warns(DataWarning) as caught:
        _, records, _ = build_detection_test_loader(cfg)
    assert "1 of the 3 images of data.test are missing, skipped" in str(caught[-1].message)
    assert [r.image_id for r in records] == ["000001", "000002"]
    cfg.data.skip_bad_images = False
    with pytest.warns(DataWarning), pytest.raises(UserError, match=r"000003\.jpg: image file not"):
        build_detection_test_loader(cfg)


def test_class_names_that_cannot_name_a_file_are_refused_from_any_source(
    coco_tree: Path,
) -> None:
    ann = coco_tree / "instances_tiny.json"
    ann.write_text(ann.read_text().replace('"name": "cat"', '"name": "cat/kitten"'))
    cfg = Config()
    cfg.data.test.format, cfg.data.test.root = "coco", str(coco_tree)
    cfg.data.test.ann_file = "instances_tiny.json"
    with pytest.raises(UserError) as info:
        resolve_class_names(cfg)  # the preflight's first step: before any training
    assert str(info.value) == (
        f"{ann}: categories: 'cat/kitten' holds a '/'; expected a class name that can name a "
        "file of its own (test.metrics voc07 writes voc_results/comp4_det_<split>_<name>.txt)"
    )
    cfg.test.metrics = ["coco"]  # no VOC result files: any name will do
    assert resolve_class_names(cfg) == ["person", "cat/kitten", "dog"]
    cfg.test.metrics = ["voc"]
    cfg.data.class_names = ["a", "..", "b"]  # set in code, not loaded: still checked
    with pytest.raises(UserError, match=r"^key 'data.class_names': '\.\.' holds a '\.' or"):
        resolve_class_names(cfg)
