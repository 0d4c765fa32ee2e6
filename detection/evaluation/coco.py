"""COCO box AP: pycocotools' COCOeval numbers, computed by faster-coco-eval by default.

``faster`` (faster-coco-eval's C++ ``COCOeval_faster``, ~8x faster) and ``pycocotools`` (the
reference) give the same 12 summary numbers up to the last bit or two: pycocotools computes
precision as ``tp / (tp + fp + np.spacing(1))``, the C++ code (inherited from Detectron2's
fast_eval_api) as ``tp / (tp + fp)``. The two differ only where ``tp + fp == 1`` (the first
counted detection is a true positive): ``1 / (1 + 2**-52)`` vs ``1.0``, which moves a stat by
at most ~1e-16. Tests pin exactly that difference on randomised cases; use
``backend="pycocotools"`` for bit-identical numbers. The per-category
table (AP and AP50 per class) comes from COCOeval's precision array, averaging the entries
that are not -1, as Detectron2 does.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import UserError

# COCOeval.stats[:12], in pycocotools' order; all fractions in 0..1 (-1: nothing to measure).
COCO_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
COCO_BACKENDS = ("faster", "pycocotools")


@dataclass
class COCOResult:
    """Summary and per-category numbers of one COCO box evaluation."""

    stats: dict[str, float]  # COCO_STAT_NAMES -> value, exactly COCOeval.stats[:12]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> AP, AP50

    def to_dict(self) -> dict[str, object]:
        """The 12 stats plus ``per_class``: what evaluators and ``resdet score`` report."""
        return {**self.stats, "per_class": {k: dict(v) for k, v in self.per_class.items()}}


def per_category_ap(
    precision: np.ndarray, category_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """AP and AP50 per category from ``COCOeval.eval["precision"]``.

    Args:
        precision: (T, R, K, A, M) precision over IoU thresholds (T, first is 0.5), recall
            thresholds (R), categories (K), area ranges (A, first "all") and max detections
            (M, last 100); -1 where a category has no ground truth.
        category_names: (K,) names in COCOeval's (sorted id) category order.

    Returns:
        name -> {"AP": ..., "AP50": ...}; NaN for a category without ground truth.
    """
    table = {}
    for k, name in enumerate(category_names):
        all_ious = precision[:, :, k, 0, -1]  # (T, R)
        at_50 = all_ious[0]  # (R,)
        table[name] = {"AP": _mean_valid(all_ious), "AP50": _mean_valid(at_50)}
    return table


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _ground_truth_copy(dataset: dict[str, Any]) -> dict[str, Any]:
    """COCOeval writes ``ignore`` into annotation dicts; give it copies, not the caller's."""
    out = dict(dataset)
    out["annotations"] = [dict(a) for a in dataset.get("annotations", [])]
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector (restoring its previous state afterwards).

    Both libraries build ~10 Python objects per detection; with 500k detections the collector
    rescans them over and over, ~30% of faster-coco-eval's time. Evaluation makes no cycles
    worth collecting early.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_cocoeval(
    dataset: dict[str, Any],
    entries: list[dict[str, Any]],
    backend: str,
    image_ids: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs evaluate / accumulate / summarize; returns (stats[:12], precision array)."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Evaluator
    # Both libraries print progress; --json output must stay one clean object.
    with contextlib.redirect_stdout(io.StringIO()), _gc_paused():
        gt = COCO()
        gt.dataset = _ground_truth_copy(dataset)
        gt.createIndex()
        if entries:
            dt = gt.loadRes([dict(e) for e in entries])  # loadRes adds fields: copy
        else:  # loadRes cannot take an empty list in pycocotools; build the empty set here
            dt = COCO()
            dt.dataset = {"images": list(dataset["images"]), "annotations": []}
            dt.dataset["categories"] = copy.deepcopy(dataset["categories"])
            dt.createIndex()
        evaluator = Evaluator(gt, dt, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats[:12], np.float64), np.asarray(evaluator.eval["precision"])


def evaluate_coco(
    dataset: dict[str, Any],
    entries: list[dict[str, Any]],
    backend: str = "faster",
    image_ids: Sequence[int] | None = None,
) -> COCOResult:
    """COCO box evaluation of results entries against an annotation set.

    Args:
        dataset: the parsed annotation JSON (``images``, ``annotations``, ``categories``).
        entries: results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in
            original pixels and COCO ids (checked beforehand, see ``results``).
        backend: "faster" (faster-coco-eval, default) or "pycocotools" (the reference).
        image_ids: evaluate only these images (default: every image of ``dataset``).

    Returns:
        The 12 summary stats and the per-category AP / AP50 table.
    """
    if backend not in COCO_BACKENDS:
        raise UserError(f"unknown COCO backend {backend!r}; valid: {', '.join(COCO_BACKENDS)}")
    stats, precision = _run_cocoeval(dataset, entries, backend, image_ids)
    names_by_id = {c["id"]: c["name"] for c in dataset["categories"]}
    names = [names_by_id[i] for i in sorted(names_by_id)]  # COCOeval sorts category ids
    return COCOResult(dict(zip(COCO_STAT_NAMES, stats.tolist())), per_category_ap(precision, names))
