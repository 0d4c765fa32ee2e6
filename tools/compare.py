"""`resdet compare RUN_DIR...`: the paper's Tables 7-11 with our numbers beside its own.

Each run directory holds the `config.yaml` and `eval_results.json` that `resdet train` /
`resdet eval` wrote. A run's table cell is found from its config: the backbone (vgg16 or a
ResNet-101), the test set (VOC 2007 test, VOC 2012 test, or COCO) and the system, i.e. what
the run adds to the baseline (`system`): box refinement, global context, multi-scale
testing, an ensemble (appendix B; Tables 9-11). Baseline runs fill Tables 7 and 8, the others
Table 9 (COCO) or Tables 10 / 11 (VOC). Runs on any other test set (your own photos, the
miniature comparison on raccoons) go in a table per test set: mean and spread over the runs
given (one per seed), with the ResNet-101 minus VGG-16 gain next to the paper's. Output is
markdown.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from detection.config import Config, load_config
from detection.data.voc import VOC_CLASSES
from engine.errors import UserError
from engine.io import is_json_number
from engine.runfolder import CONFIG_FILE, RunFolder

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

# The paper's appendix B, ResNet-101 only: (system, column) -> percent. Table 9 (COCO val; the
# rows add up in this order; its ensemble is on test-dev), Tables 10 / 11 (VOC 07 / 12 test;
# "baseline+++": the three additions, initialised from the COCO model).
SWITCHES = ("box refinement", "context", "multi-scale testing")
PAPER_SYSTEMS = {
    ("baseline", "COCO mAP@.5"): 48.4,
    ("baseline", "COCO mAP@[.5, .95]"): 27.2,
    ("+ box refinement", "COCO mAP@.5"): 49.9,
    ("+ box refinement", "COCO mAP@[.5, .95]"): 29.9,
    ("+ context", "COCO mAP@.5"): 51.1,
    ("+ context", "COCO mAP@[.5, .95]"): 30.0,
    ("+ multi-scale testing", "COCO mAP@.5"): 53.8,
    ("+ multi-scale testing", "COCO mAP@[.5, .95]"): 32.5,
    ("ensemble", "COCO mAP@.5"): 59.0,
    ("ensemble", "COCO mAP@[.5, .95]"): 37.4,
    ("baseline", "VOC 07 test"): 76.4,
    ("baseline+++", "VOC 07 test"): 85.6,
    ("baseline", "VOC 12 test"): 73.8,
    ("baseline+++", "VOC 12 test"): 83.8,
}


@dataclass
class RunCell:
    row: str  # "VGG-16" or "ResNet-101"
    column: str  # a column of PAPER, or "own: <test set>" for a run on other data
    value: float | None  # ours, percent; None when the run has no such metric (e.g. VOC12 test)
    run_dir: str
    metric: str = ""  # own data: "mAP@.5" (VOC07 metric) or "mAP@[.5, .95]" (COCO's)
    system: str = "baseline"  # what the run adds to the baseline (`system`)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output_dir of finished runs")


def run(args: argparse.Namespace) -> int:
    cells = [cell for run_dir in args.runs for cell in run_cells(Path(run_dir))]
    print(render(cells))
    return 0


def run_cells(run_dir: Path) -> list[RunCell]:
    """The table cells one run fills (VOC: one; COCO: two; other data: two)."""
    run = RunFolder(run_dir)
    cfg = load_config(run.file(CONFIG_FILE))
    # a class without test objects has AP null (NaN in files of older versions): both read
    results = run.eval_results("run `resdet eval` for this run first")
    metrics = results["metrics"]
    row, name = _row(cfg, run_dir), system(cfg, results.get("weights"))
    voc = metrics.get("voc07") or metrics.get("voc") or {}
    coco = metrics.get("coco") or {}
    paper_column = _paper_column(cfg)
    if paper_column is None:
        own = f"own: {_test_set_name(cfg)}"
        return [
            RunCell(row, own, _percent(voc.get("mAP")), str(run_dir), "mAP@.5", name),
            RunCell(row, own, _percent(coco.get("AP")), str(run_dir), "mAP@[.5, .95]", name),
        ]
    if paper_column == "COCO":
        return [
            RunCell(row, "COCO mAP@.5", _percent(coco.get("AP50")), str(run_dir), system=name),
            RunCell(row, "COCO mAP@[.5, .95]", _percent(coco.get("AP")), str(run_dir), system=name),
        ]
    return [RunCell(row, paper_column, _percent(voc.get("mAP")), str(run_dir), system=name)]


def system(cfg: Config, weights: object = None) -> str:
    """What a run adds to the baseline, in the paper's words: "baseline", "+ box
    refinement", "+ context", "+ multi-scale testing" (Table 9's rows, each adding to the
    ones above), "baseline+++" (all three, from a detector checkpoint such as COCO's: Tables
    10 / 11), "ensemble" (``weights`` lists several members); any other mix is named by its
    parts ("baseline + context")."""
    if isinstance(weights, list) and len(weights) > 1:
        return "ensemble"
    on = (cfg.test.box_refinement, cfg.model.roi_heads.global_context, bool(cfg.test.pyramid_sizes))
    count = sum(on)
    if all(on) and cfg.model.weights:
        return "baseline+++"
    if list(on) == [True] * count + [False] * (len(on) - count):  # a prefix: a Table 9 row
        return "+ " + SWITCHES[count - 1] if count else "baseline"
    return "baseline + " + ", ".join(s for s, flag in zip(SWITCHES, on) if flag)


def _paper_column(cfg: Config) -> str | None:
    """ "VOC 07 test", "VOC 12 test" or "COCO" for the paper's test sets; None for others."""
    test = cfg.data.test
    if test.format == "coco":
        return "COCO" if cfg.model.num_classes == 80 else None
    if cfg.data.class_names and list(cfg.data.class_names) != list(VOC_CLASSES):
        return None
    splits = " ".join(test.splits)
    if "VOC2012" in splits:
        return "VOC 12 test"
    return "VOC 07 test" if "VOC2007" in splits else None


def _test_set_name(cfg: Config) -> str:
    """``data/raccoon test``: the test set of a run on other data, as the table names it."""
    test = cfg.data.test
    return f"{test.root} {'+'.join(test.splits)}".strip()


def _row(cfg: Config, run_dir: Path) -> str:
    name = cfg.model.backbone.name
    if name.startswith("vgg16"):
        return "VGG-16"
    if name == "resnet101":
        return "ResNet-101"
    raise UserError(
        f"{run_dir / CONFIG_FILE}: model.backbone.name is {name!r}; the paper's tables compare "
        "vgg16 and resnet101"
    )


def _percent(value: object) -> float | None:
    """A fraction in percent; None for null, NaN (older files: no test objects) or a non-number."""
    return 100.0 * value if is_json_number(value) and math.isfinite(value) else None


def _cell(
    cells: list[RunCell], row: str, column: str, system: str = "baseline", paper: str = ""
) -> str:
    """``ours (paper)``: the last run of that row, column and system (— if none); the
    paper's number is Tables 7 / 8's unless given (as text: "—" where it has none)."""
    paper = paper or f"{PAPER[(row, column)]:.1f}"
    ours = [c.value for c in cells if (c.row, c.column, c.system) == (row, column, system)]
    if not ours:
        return f"— ({paper})"
    value = ours[-1]
    return f"n/a ({paper})" if value is None else f"{value:.1f} ({paper})"


def _systems_tables(cells: list[RunCell]) -> list[str]:
    """Tables 9 (COCO) and 10 / 11 (VOC) when ResNet-101 runs go beyond the baseline: the
    paper's systems first, then any other mix the runs have."""
    beyond = [c for c in cells if c.row == "ResNet-101" and c.system != "baseline"]
    tables = (
        ("Table 9. ResNet-101 Faster R-CNN beyond the baseline, COCO val (%): ours (paper; "
         "its ensemble row is on test-dev).",
         ("COCO mAP@.5", "COCO mAP@[.5, .95]")),
        ("Tables 10 / 11. ResNet-101 Faster R-CNN beyond the baseline, VOC (%): ours (paper).",
         ("VOC 07 test", "VOC 12 test")),
    )  # fmt: skip
    lines: list[str] = []
    for title, columns in tables:
        extra = {c.system for c in beyond if c.column in columns}
        if not extra:
            continue
        known = list(dict.fromkeys(name for name, column in PAPER_SYSTEMS if column in columns))
        lines += ["", title, "", f"| system | {' | '.join(columns)} |", "| --- | --- | --- |"]
        for name in known + sorted(extra - set(known)):
            row = [
                _cell(cells, "ResNet-101", column, name, _paper_text(name, column))
                for column in columns
            ]
            lines.append(f"| {name} | {' | '.join(row)} |")
    return lines


def _paper_text(system: str, column: str) -> str:
    value = PAPER_SYSTEMS.get((system, column))
    return "—" if value is None else f"{value:.1f}"


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
    lines += _systems_tables(cells)
    lines += ["", "— : no run given; n/a : the run has no score (VOC 2012 test is server-scored)."]
    own_sets = sorted({c.column for c in cells if c.column.startswith("own: ")})
    for column in own_sets:
        own = [c for c in cells if c.column == column and c.system == "baseline"]
        lines += ["", *_own_data_table(column, own)]
    return "\n".join(lines)


def _own_data_table(column: str, cells: list[RunCell]) -> list[str]:
    """Mean ± sample std over the runs (seeds) of each backbone on one non-paper test set, and
    ResNet-101 minus VGG-16 beside the paper's gain (its VOC 07 and COCO mAP@[.5, .95])."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in cells:
        if c.value is not None:
            values[(c.row, c.metric)].append(c.value)
    runs = {row: len({c.run_dir for c in cells if c.row == row}) for row in ROWS}
    lines = [
        f"Same two networks on {column[5:]} (not the paper's data): mean ± std over runs (%).",
        "",
        "| backbone | runs | mAP@.5 (VOC07) | mAP@[.5, .95] (COCO) | paper: VOC 07 test | "
        "paper: COCO mAP@[.5, .95] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        a, b = (_mean_std(values[(row, m)]) for m in ("mAP@.5", "mAP@[.5, .95]"))
        paper_voc, paper_coco = PAPER[(row, "VOC 07 test")], PAPER[(row, "COCO mAP@[.5, .95]")]
        lines.append(f"| {row} | {runs[row]} | {a} | {b} | {paper_voc:.1f} | {paper_coco:.1f} |")
    gains = [_gain(values, m) for m in ("mAP@.5", "mAP@[.5, .95]")]
    paper_gains = [
        PAPER[("ResNet-101", c)] - PAPER[("VGG-16", c)]
        for c in ("VOC 07 test", "COCO mAP@[.5, .95]")
    ]
    lines.append(
        f"| ResNet-101 − VGG-16 | | {gains[0]} | {gains[1]} | "
        f"{paper_gains[0]:+.1f} | {paper_gains[1]:+.1f} |"
    )
    return lines


def _mean_std(values: list[float]) -> str:
    """``71.3 ± 1.2`` (sample std; a single run: its value alone; none: —)."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _gain(values: dict[tuple[str, str], list[float]], metric: str) -> str:
    """Difference of the two backbones' means, signed (— when either has no run)."""
    resnet, vgg = values[("ResNet-101", metric)], values[("VGG-16", metric)]
    if not resnet or not vgg:
        return "—"
    return f"{statistics.mean(resnet) - statistics.mean(vgg):+.1f}"
