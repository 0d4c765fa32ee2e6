"""Evaluation and result files: VOC devkit AP, COCO AP, writers, readers, evaluators."""

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {
    "detection.evaluation.coco": (
        "COCO_BACKENDS",
        "COCO_STAT_NAMES",
        "COCOResult",
        "evaluate_coco",
    ),
    "detection.evaluation.evaluator": (
        "COCOEvaluator",
        "DatasetEvaluator",
        "VOCEvaluator",
        "records_to_coco",
    ),
    "detection.evaluation.pr_curves": (
        "PR_CURVES",
        "PR_CURVES_PNG",
        "draw_pr_curves",
        "read_pr_curves",
        "write_pr_curves",
    ),
    "detection.evaluation.results": (
        "coco_results",
        "load_coco_results",
        "package_voc_results",
        "read_voc_results",
        "validate_coco_results",
        "voc_result_filename",
        "write_coco_results",
        "write_voc_results",
    ),
    "detection.evaluation.voc": (
        "VOC_METRICS",
        "ClassDetections",
        "VOCResult",
        "evaluate_voc",
        "voc_ap",
    ),
}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
