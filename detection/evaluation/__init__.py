"""Evaluation and result files: VOC devkit AP, COCO AP, writers, readers, evaluators."""

from detection.evaluation.coco import (
    COCO_BACKENDS,
    COCO_STAT_NAMES,
    COCOResult,
    evaluate_coco,
)
from detection.evaluation.evaluator import (
    COCOEvaluator,
    DatasetEvaluator,
    VOCEvaluator,
    records_to_coco,
)
from detection.evaluation.pr_curves import (
    PR_CURVES,
    PR_CURVES_PNG,
    draw_pr_curves,
    read_pr_curves,
    write_pr_curves,
)
from detection.evaluation.results import (
    coco_results,
    load_coco_results,
    package_voc_results,
    read_voc_results,
    validate_coco_results,
    voc_result_filename,
    write_coco_results,
    write_voc_results,
)
from detection.evaluation.voc import VOC_METRICS, ClassDetections, VOCResult, evaluate_voc, voc_ap

__all__ = [
    "COCO_BACKENDS",
    "COCO_STAT_NAMES",
    "PR_CURVES",
    "PR_CURVES_PNG",
    "VOC_METRICS",
    "COCOEvaluator",
    "COCOResult",
    "ClassDetections",
    "DatasetEvaluator",
    "VOCEvaluator",
    "VOCResult",
    "coco_results",
    "draw_pr_curves",
    "evaluate_coco",
    "evaluate_voc",
    "load_coco_results",
    "package_voc_results",
    "read_pr_curves",
    "read_voc_results",
    "records_to_coco",
    "validate_coco_results",
    "voc_ap",
    "voc_result_filename",
    "write_coco_results",
    "write_pr_curves",
    "write_voc_results",
]
