"""Config -> data objects: the one place where ``data.*`` and ``input.*`` are read.

* :func:`resolve_class_names`: ``data.class_names``, else VOC's 20, else COCO's categories.
* :func:`load_dataset_records`: a ``data.train`` / ``data.test`` section -> ImageRecords.
* :func:`build_train_transform` / :func:`build_test_transform`: ``input.*`` -> transforms.
* :func:`build_detection_train_loader`: an infinite iterator of DetectionBatches for this
  process (sharded by rank, aspect-ratio grouped, resumable at ``start_iter``).
* :func:`load_test_split`: ``data.test`` read once (records, class names, COCO ground truth),
  for an evaluation's loader and evaluators alike.
* :func:`build_detection_test_loader`: (loader, records, class_names) for evaluation.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import BatchSampler

from detection.config import Config, DatasetConfig, InputConfig, TestConfig, check_class_names
from detection.data.coco import (
    coco_image_root,
    coco_meta,
    coco_records,
    read_coco_json,
    resolve_ann_file,
)
from detection.data.loader import DetectionDataset, DetectionLoader, collate_detection
from detection.data.transforms import TestTransform, TrainTransform
from detection.data.voc import VOC_CLASSES, VOCLayout, load_voc_splits
from detection.structures import ImageRecord
from engine import distributed as dist
from engine.errors import DataWarning, UserError
from engine.samplers import InferenceSampler, ResumableBatchSampler, seed_worker
from engine.stops import StopSafeLoader

DETECTION_FORMATS = ("voc", "coco")

CocoReader = Callable[[str], dict[str, Any]]  # ann_file -> parsed JSON (read_coco_json)


@dataclass(frozen=True)
class EvalSplit:
    """``data.test`` as read once (:func:`load_test_split`): what an evaluation's loader and
    its evaluators share."""

    records: list[ImageRecord]  # every image of the split in file order, missing files too
    class_names: list[str]  # label order
    coco: dict[str, Any] | None = None  # COCO format: the parsed JSON (the COCO metric's truth)
    label_to_category_id: list[int] = field(default_factory=list)  # COCO: label -> its id


def load_test_split(cfg: Config) -> EvalSplit:
    """Read ``data.test`` once: its records, the class names and, for a COCO-format split,
    the parsed annotation JSON its COCO evaluator scores against (one parse serves all).

    Raises:
        UserError: as :func:`resolve_class_names` and :func:`load_dataset_records`.
    """
    read = functools.cache(read_coco_json)  # this split's files, parsed once each
    class_names = resolve_class_names(cfg, read)
    test = cfg.data.test
    records = load_dataset_records(test, class_names, "data.test", read)
    if test.format != "coco":
        return EvalSplit(records, class_names)
    ann_file = resolve_ann_file(test.root, test.ann_file)
    coco = read(ann_file)
    mapping = coco_meta(coco, ann_file, class_names).label_to_category_id
    return EvalSplit(records, class_names, coco, mapping)


def resolve_class_names(cfg: Config, read: CocoReader = read_coco_json) -> list[str]:
    """Class names in label order: ``data.class_names``, else by the data sets' format.

    VOC data sets use the 20 VOC classes; COCO ones their JSON's categories sorted by id
    (the test file is read first: it is the smaller one), parsed by ``read``.

    Raises:
        UserError: nothing to resolve them from, or, with VOC metrics, a name that cannot name
            its VOC result file (:func:`~detection.config.check_class_names`; a COCO
            category's names the JSON).
    """
    if cfg.data.class_names:
        check_class_names(cfg.data.class_names, "key 'data.class_names'", cfg.test.metrics)
        return list(cfg.data.class_names)
    for ds in (cfg.data.test, cfg.data.train):
        if ds.format == "voc" and ds.root:
            return list(VOC_CLASSES)
        if ds.format == "coco" and ds.ann_file:
            ann_file = resolve_ann_file(ds.root, ds.ann_file)
            names = coco_meta(read(ann_file), ann_file).class_names
            check_class_names(names, f"{ann_file}: categories", cfg.test.metrics)
            return names
    raise UserError(
        "data.class_names is empty and neither data.test nor data.train names a VOC root or "
        "a COCO ann_file to take the class names from"
    )


def load_dataset_records(
    ds: DatasetConfig, class_names: Sequence[str], section: str, read: CocoReader = read_coco_json
) -> list[ImageRecord]:
    """Read every record of a data set section (all images, empty ones included).

    Args:
        ds: the ``data.train`` or ``data.test`` section.
        class_names: class names in label order.
        section: "data.train" or "data.test", for messages.
        read: the COCO JSON reader (:func:`load_test_split` parses each file once).

    Raises:
        UserError: wrong format, empty root, or any reader error.
    """
    if ds.format not in DETECTION_FORMATS:
        raise UserError(
            f"{section}.format '{ds.format}' is not a detection format "
            f"(expected one of {', '.join(DETECTION_FORMATS)})"
        )
    if not ds.root:
        raise UserError(f"{section}.root is empty: set it to the data set folder")
    if not os.path.isdir(ds.root):
        raise UserError(f"{section}.root: folder {ds.root} not found")
    if ds.format == "voc":
        layout = VOCLayout(ds.image_dir, ds.ann_dir, ds.split_dir)
        return load_voc_splits(ds.root, ds.splits, class_names, layout=layout)
    ann_file = resolve_ann_file(ds.root, ds.ann_file)
    image_root = coco_image_root(ds.root, ann_file)
    records, _ = coco_records(read(ann_file), ann_file, image_root, class_names)
    return records


def build_train_transform(input_cfg: InputConfig) -> TrainTransform:
    return TrainTransform(
        min_sizes=input_cfg.min_size_train,
        max_size=input_cfg.max_size_train,
        flip_prob=input_cfg.flip_prob,
        color_jitter=input_cfg.color_jitter,
        format=input_cfg.format,
        pixel_mean=input_cfg.pixel_mean,
        pixel_std=input_cfg.pixel_std,
        reduced_decode=input_cfg.reduced_decode,
    )


def build_test_transform(
    input_cfg: InputConfig, test_cfg: TestConfig | None = None
) -> TestTransform:
    """The test-time transform; with ``test_cfg``, its multi-scale pyramid too."""
    return TestTransform(
        min_size=input_cfg.min_size_test,
        max_size=input_cfg.max_size_test,
        format=input_cfg.format,
        pixel_mean=input_cfg.pixel_mean,
        pixel_std=input_cfg.pixel_std,
        reduced_decode=input_cfg.reduced_decode,
        pyramid_sizes=test_cfg.pyramid_sizes if test_cfg else (),
        pyramid_max_size=test_cfg.pyramid_max_size if test_cfg else 2000,
    )


def build_detection_train_loader(
    cfg: Config, images_per_process: int, start_iter: int = 0
) -> DetectionLoader:
    """The training stream of this process: infinite, seeded, sharded by rank.

    Images without a non-ignored box are dropped unless ``data.train.include_empty``.
    Batch ``i`` (counting from 0 at the run's start) is the same whatever ``start_iter``,
    ``data.num_workers`` or interruption, so resuming at ``start_iter`` is exact.

    Args:
        cfg: the run config (data.*, input.*, seed, model.num_classes).
        images_per_process: batch size on this process.
        start_iter: first iteration to produce.

    Returns:
        An iterable of DetectionBatch (never ends).
    """
    class_names = _checked_class_names(cfg)
    records = load_dataset_records(cfg.data.train, class_names, "data.train")
    if not cfg.data.train.include_empty:
        records = [r for r in records if (~r.ignore).any()]
    records = existing_images(records, cfg.data.skip_bad_images, "data.train")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    groups = aspect_groups(records) if cfg.data.aspect_ratio_grouping else None
    batch_sampler = ResumableBatchSampler(
        len(records), images_per_process, cfg.seed, rank, world_size, start_iter, groups
    )
    loader = StopSafeLoader(
        DetectionDataset(records, build_train_transform(cfg.input)),
        batch_sampler=batch_sampler,
        collate_fn=functools.partial(
            collate_detection, size_divisibility=cfg.input.size_divisibility
        ),
        num_workers=cfg.data.num_workers,
        worker_init_fn=functools.partial(seed_worker, seed=cfg.seed, rank=rank),
        # its own generator: starting the iterator must not draw from the global RNG, or a
        # resumed run's random streams (RoI sampling) would drift from an uninterrupted run's
        generator=torch.Generator().manual_seed(cfg.seed + rank),
    )
    return DetectionLoader(loader, cfg.data.skip_bad_images, len(records))


def build_detection_test_loader(
    cfg: Config, split: EvalSplit | None = None
) -> tuple[DetectionLoader, list[ImageRecord], list[str]]:
    """The evaluation loader over ``data.test``: every image, in order, sharded by rank.

    Args:
        cfg: the run config (data.*, input.*, test.ims_per_batch, model.num_classes).
        split: ``data.test`` as already read (default: :func:`load_test_split` reads it).

    Returns:
        (loader of DetectionBatch with ``test.ims_per_batch`` images, all records of the test
        set (every rank's) whose image files exist, class names in label order).
    """
    split = split or load_test_split(cfg)
    class_names = _check_num_classes(cfg, split.class_names)
    records = existing_images(split.records, cfg.data.skip_bad_images, "data.test")
    sampler = InferenceSampler(len(records), dist.get_rank(), dist.get_world_size())
    loader = StopSafeLoader(
        DetectionDataset(records, build_test_transform(cfg.input, cfg.test)),
        batch_sampler=BatchSampler(sampler, cfg.test.ims_per_batch, drop_last=False),
        collate_fn=functools.partial(
            collate_detection, size_divisibility=cfg.input.size_divisibility
        ),
        num_workers=cfg.data.num_workers,
    )
    return DetectionLoader(loader, cfg.data.skip_bad_images, len(records)), records, class_names


def aspect_groups(records: Sequence[ImageRecord]) -> list[int]:
    """Per record 0 if landscape (w >= h) else 1."""
    return [int(r.width < r.height) for r in records]


def _checked_class_names(cfg: Config) -> list[str]:
    return _check_num_classes(cfg, resolve_class_names(cfg))


def _check_num_classes(cfg: Config, class_names: list[str]) -> list[str]:
    if len(class_names) != cfg.model.num_classes:
        raise UserError(
            f"model.num_classes is {cfg.model.num_classes} but the data has {len(class_names)} "
            f"classes ({', '.join(class_names[:8])}{', ...' if len(class_names) > 8 else ''}); "
            f"set model.num_classes={len(class_names)}"
        )
    return class_names


def existing_images(
    records: list[ImageRecord], skip_bad_images: bool, section: str
) -> list[ImageRecord]:
    """Check the image files exist: drop missing ones with one warning (``skip_bad_images``),
    or raise a UserError naming the first."""
    missing = [r for r in records if not os.path.isfile(r.path)]
    if not missing:
        if not records:
            raise UserError(f"{section}: no images to load")
        return records
    summary = f"{len(missing)} of the {len(records)} images of {section} are missing"
    if not skip_bad_images or len(missing) == len(records):
        raise UserError(f"{missing[0].path}: image file not found ({summary})")
    warnings.warn(f"{summary}, skipped (first: {missing[0].path})", DataWarning, stacklevel=3)
    missing_ids = {id(r) for r in missing}
    return [r for r in records if id(r) not in missing_ids]
