"""Detection data: VOC / COCO readers, the generated shapes data set, transforms, loaders.

Modules, one per stage: ``voc`` and ``coco`` (files -> ImageRecords), ``synthetic`` (the
shapes data set), ``transforms`` (resize / flip / normalise / pad and back), ``loader``
(decode, samplers, collate, bad images), ``build`` (config -> loaders).

Names are imported lazily (``from detection.data import load_voc`` does not import torch or
albumentations), so reading annotations stays cheap for tools such as ``resdet score``.
"""

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {
    "detection.data.voc": ("VOC_CLASSES", "load_voc", "load_voc_splits"),
    "detection.data.coco": ("CocoMeta", "load_coco", "read_coco_meta"),
    "detection.data.synthetic": ("SHAPE_CLASSES", "write_voc_dataset", "write_coco_dataset"),
    "detection.data.transforms": (
        "TestTransform",
        "TrainTransform",
        "collate_images",
        "detections_to_original",
        "postprocess_detections",
    ),
    "detection.data.loader": ("DetectionDataset", "DetectionLoader"),
    "detection.data.build": (
        "resolve_class_names",
        "build_test_transform",
        "build_detection_train_loader",
        "build_detection_test_loader",
    ),
}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
