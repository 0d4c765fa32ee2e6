"""`resdet compare RUN_DIR...`: the paper's Tables 7 and 8 with our numbers beside its own.

Each run directory holds the `config.yaml` and `eval_results.json` that `resdet train` /
`resdet eval` wrote. A run's table cell is found from its config: the backbone (vgg16 or a
ResNet-101) and the test set (VOC 2007 test, VOC 2012 test, or COCO). Output is markdown.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from detection.config import Config, load_config
from engine.errors import UserError

# (backbone row, column) -> the paper's number, in percent (reference/NUMBERS.md)
PAPER = {
    ("VGG-16", "VOC 07 test"): 73.2,
    ("ResNet-101", "VOC 07 test"): 76.4,
    ("VGG-16", "VOC 12 test"): 70.4,
    ("ResNet-101", "VOC 12 test"): 73.8,
    ("VGG-16", "COCO mAP@.5"): 41.5,
    ("ResNet-101", "COCO mAP@.5"): 48.4,
    ("VGG-16", "COCO mAP@[.5, .95]"): 21.2,
    ("ResNet-101", "COCO mAP@[.5, .95]"): 27.2,
}
ROWS = ("VGG-16", "ResNet-101")


@dataclass
class RunCell:
    row: str  # "VGG-16" or "ResNet-101"
    column: str  # a column of PAPER
    value: float | None  # ours, percent; None when the run has no such metric (e.g. VOC12 test)
    run_dir: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output_dir of finished runs")


def run(args: argparse.Namespace) -> int:
    cells = [cell for run_dir in args.runs for cell in read_run(Path(run_dir))]
    print(render(cells))
    return 0


def read_run(run_dir: Path) -> list[RunCell]:
    """The table cells one run fills (VOC: one; COCO: two)."""
    cfg = load_config(run_dir / "config.yaml")
    results_path = run_dir / "eval_results.json"
    if not results_path.is_file():
        raise UserError(f"{results_path}: not found (run `resdet eval` for this run first)")
    try:
        metrics = json.loads(results_path.read_text())["metrics"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{results_path}: not an eval_results.json written by resdet") from None
    row = _row(cfg, run_dir)
    test = cfg.data.test
    if test.format == "coco":
        coco = metrics.get("coco") or {}
        return [
            RunCell(row, "COCO mAP@.5", _percent(coco.get("AP50")), str(run_dir)),
            RunCell(row, "COCO mAP@[.5, .95]", _percent(coco.get("AP")), str(run_dir)),
        ]
    splits = " ".join(test.splits)
    column = "VOC 12 test" if "2012" in splits or "12" in Path(test.root).name else "VOC 07 test"
    voc = metrics.get("voc07") or metrics.get("voc") or {}
    return [RunCell(row, column, _percent(voc.get("mAP")), str(run_dir))]


def _row(cfg: Config, run_dir: Path) -> str:
    name = cfg.model.backbone.name
    if name.startswith("vgg16"):
        return "VGG-16"
    if name == "resnet101":
        return "ResNet-101"
    raise UserError(
        f"{run_dir}/config.yaml: model.backbone.name is {name!r}; the paper's tables compare "
        "vgg16 and resnet101"
    )


def _percent(value: object) -> float | None:
    return None if value is None else 100.0 * float(value)  # type: ignore[arg-type]


def _cell(cells: list[RunCell], row: str, column: str) -> str:
    paper = PAPER[(row, column)]
    ours = [c.value for c in cells if c.row == row and c.column == column]
    if not ours:
        return f"— ({paper:.1f})"
    value = ours[-1]
    return f"n/a ({paper:.1f})" if value is None else f"{value:.1f} ({paper:.1f})"


def render(cells: list[RunCell]) -> str:
    """Markdown for Table 7 (VOC) and Table 8 (COCO): `ours (paper)` in every cell."""
    lines = [
        "Table 7. Faster R-CNN mAP (%) on PASCAL VOC: ours (paper).",
        "",
        "| training data | 07+12 | 07++12 |",
        "| --- | --- | --- |",
        "| test data | VOC 07 test | VOC 12 test |",
    ]
    for row in ROWS:
        lines.append(
            f"| {row} | {_cell(cells, row, 'VOC 07 test')} | {_cell(cells, row, 'VOC 12 test')} |"
        )
    lines += [
        "",
        "Table 8. Faster R-CNN on COCO val (%): ours (paper).",
        "",
        "| metric | mAP@.5 | mAP@[.5, .95] |",
        "| --- | --- | --- |",
    ]
    for row in ROWS:
        a, b = _cell(cells, row, "COCO mAP@.5"), _cell(cells, row, "COCO mAP@[.5, .95]")
        lines.append(f"| {row} | {a} | {b} |")
    lines += ["", "— : no run given; n/a : the run has no score (VOC 2012 test is server-scored)."]
    return "\n".join(lines)
