"""Detection data: VOC / COCO readers, the generated shapes data set, transforms, loaders.

Modules, one per stage: ``voc`` and ``coco`` (files -> ImageRecords), ``synthetic`` (the
shapes data set), ``transforms`` (resize / flip / normalise / pad and back), ``loader``
(decode, samplers, collate, bad images), ``build`` (config -> loaders).

Names are imported lazily (``from detection.data import load_voc`` does not import torch or
albumentations), so reading annotations stays cheap for tools such as ``resdet score``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VOC_CLASSES": "voc",
    "load_voc": "voc",
    "load_voc_splits": "voc",
    "CocoMeta": "coco",
    "load_coco": "coco",
    "read_coco_meta": "coco",
    "SHAPE_CLASSES": "synthetic",
    "write_voc_dataset": "synthetic",
    "write_coco_dataset": "synthetic",
    "TestTransform": "transforms",
    "TrainTransform": "transforms",
    "collate_images": "transforms",
    "detections_to_original": "transforms",
    "postprocess_detections": "transforms",
    "DetectionDataset": "loader",
    "DetectionLoader": "loader",
    "resolve_class_names": "build",
    "build_test_transform": "build",
    "build_detection_train_loader": "build",
    "build_detection_test_loader": "build",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'detection.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"detection.data.{_EXPORTS[name]}"), name)
