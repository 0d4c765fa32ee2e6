"""Per-class precision-recall curves of a VOC evaluation: ``pr_curves.json`` and its PNG.

Written beside ``eval_results.json`` by the evaluation (training's and ``resdet eval``'s)
when ``test.metrics`` has ``voc07`` or ``voc``, and read by ``resdet report``::

    {"iou": 0.5, "metric": "voc07",
     "classes": {name: {"ap": float | null, "num_positives": int, "num_detections": int,
                        "recall": [...], "precision": [...]}}}

``recall`` / ``precision`` are the devkit's curve (one point after each detection in score
order; a match needs IoU > 0.5). A class with more than :data:`MAX_POINTS` detections keeps
the first point reaching each recall level 0, 0.01, ..., 1 and its last point. A class
without non-difficult objects has ``ap`` null and no points.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detection.evaluation.voc import VOCResult
from engine.errors import UserError
from engine.io import atomic_write_json, atomic_write_png, is_json_number, read_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PR_CURVES = "pr_curves.json"
PR_CURVES_PNG = "pr_curves.png"
MAX_POINTS = 101
_NONE = np.zeros(0)
_LEVELS = np.arange(MAX_POINTS) / (MAX_POINTS - 1)  # 0, 0.01, ..., 1 (30 / 100 is exactly 0.3)


def thin_curve(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ~MAX_POINTS + 1 points of a (D,) curve: all of them when D <= MAX_POINTS,
    else the first point reaching each recall level and the last point."""
    if len(recall) <= MAX_POINTS:
        return recall, precision
    first = np.searchsorted(recall, _LEVELS, side="left")  # first index with recall >= level
    keep = np.unique(np.append(first[first < len(recall)], len(recall) - 1))
    return recall[keep], precision[keep]


def pr_curves_payload(result: VOCResult) -> dict[str, Any]:
    """The ``pr_curves.json`` object of one VOC evaluation (see the module docstring)."""
    classes: dict[str, Any] = {}
    for name, ap in result.per_class.items():
        curve = result.curves.get(name)
        recall, precision = thin_curve(curve.recall, curve.precision) if curve else (_NONE, _NONE)
        classes[name] = {
            "ap": ap if math.isfinite(ap) else None,
            "num_positives": curve.num_positives if curve else 0,
            "num_detections": len(curve.recall) if curve else 0,
            "recall": [round(float(v), 6) for v in recall],
            "precision": [round(float(v), 6) for v in precision],
        }
    return {"iou": 0.5, "metric": result.metric, "classes": classes}


def write_pr_curves(out_dir: str | Path, result: VOCResult) -> Path:
    """``pr_curves.json`` and ``pr_curves.png`` in ``out_dir``, each atomically."""
    payload = pr_curves_payload(result)
    atomic_write_png(Path(out_dir) / PR_CURVES_PNG, draw_pr_curves(payload))
    return atomic_write_json(Path(out_dir) / PR_CURVES, payload)


def read_pr_curves(path: str | Path) -> dict[str, Any]:
    """A ``pr_curves.json``, checked.

    Raises:
        UserError: missing, not JSON, or not the layout of the module docstring.
    """
    payload = read_json(path, "PR curves file")
    classes = payload.get("classes") if isinstance(payload, dict) else None
    if not isinstance(classes, dict):
        raise UserError(f"{path}: expected an object with 'classes' (see resdet eval)")
    for name, entry in classes.items():
        points = [entry.get(k) for k in ("recall", "precision")] if isinstance(entry, dict) else []
        lists = [p for p in points if isinstance(p, list) and all(map(is_json_number, p))]
        if len(lists) != 2 or len(lists[0]) != len(lists[1]):
            raise UserError(f"{path}: class {name!r}: expected equal-length number lists "
                            "'recall' and 'precision'")  # fmt: skip
    return payload


def draw_pr_curves(payload: dict[str, Any]) -> Figure:
    """One panel per class: precision against recall, titled with the class's AP."""
    from matplotlib.figure import Figure

    classes = payload["classes"]
    ncols = max(1, min(5, len(classes)))
    nrows = max(1, math.ceil(len(classes) / ncols))
    side = 4.5 if len(classes) <= 3 else 3.2  # inches per panel: a few classes get more
    figure = Figure(figsize=(side * ncols, 0.9 * side * nrows + 0.3), dpi=100, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, (name, entry) in zip(axes, classes.items()):
        ap = "no objects" if entry["ap"] is None else f"AP {100 * entry['ap']:.1f}"
        ax.plot(entry["recall"], entry["precision"], color="C0", lw=1.5)
        ax.set_title(f"{name}: {ap}", fontsize=10, parse_math=False)  # "$x$" is a name
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("precision")
    for ax in axes[-ncols:]:
        ax.set_xlabel("recall")
    figure.suptitle(f"{payload.get('metric', 'voc')} precision-recall, IoU > 0.5", fontsize=10)
    return figure
