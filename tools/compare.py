"""`resdet compare RUN_DIR...`: the paper's Tables 7-11 with our numbers beside its own.

Each run directory holds the `config.yaml` and `eval_results.json` that `resdet train` /
`resdet eval` wrote. A run's table cell is found from its config: the backbone (vgg16 or a
ResNet-101), the test set (VOC 2007 test, VOC 2012 test, or COCO) and the system, i.e. what
the run adds to the baseline (`system`): box refinement, global context, multi-scale
testing, an ensemble (appendix B; Tables 9-11). Baseline runs fill Tables 7 and 8, the others
Table 9 (COCO) or Tables 10 / 11 (VOC). Runs on any other test set (your own photos, the
miniatures on raccoons or BCCD) go in a table per test set: mean and spread over the runs
given (one per seed) for VGG-16, ResNet-50 and ResNet-101, pretrained or from He init (a run
whose `model.backbone.weights` and `model.weights` are empty), the ResNet-101 minus VGG-16
gain with its spread next to the paper's, what pretraining adds to each network, and the
per-class AP@.5 where the set has several classes. Only pretrained runs fill the paper's
tables. Output is markdown.
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
OWN_ROWS = ("VGG-16", "ResNet-50", "ResNet-101")  # the paper's text adds depth: ResNet-50
BACKBONE_ROWS = {"vgg16": "VGG-16", "vgg16_bn": "VGG-16", "resnet50": "ResNet-50",
                 "resnet101": "ResNet-101"}  # fmt: skip
PRETRAINED, HE_INIT = "pretrained", "He init"

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
    init: str = PRETRAINED  # or HE_INIT: no backbone or detector weights to start from
    per_class: dict[str, float | None] | None = None  # own data, mAP@.5: class -> AP (%)


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
    init = PRETRAINED if cfg.model.backbone.weights or cfg.model.weights else HE_INIT
    voc = metrics.get("voc07") or metrics.get("voc") or {}
    coco = metrics.get("coco") or {}
    paper_column = _paper_column(cfg)
    if paper_column is None:
        own, where = f"own: {_test_set_name(cfg)}", str(run_dir)
        per_class = voc.get("per_class")
        classes = (
            {k: _percent(v) for k, v in per_class.items()} if isinstance(per_class, dict) else None
        )
        return [
            RunCell(row, own, _percent(voc.get("mAP")), where, "mAP@.5", name, init, classes),
            RunCell(row, own, _percent(coco.get("AP")), where, "mAP@[.5, .95]", name, init),
        ]
    if row not in ROWS or init == HE_INIT:
        return []  # the paper's tables hold its two networks, pretrained
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
    if name in BACKBONE_ROWS:
        return BACKBONE_ROWS[name]
    raise UserError(
        f"{run_dir / CONFIG_FILE}: model.backbone.name is {name!r}; the paper's comparison "
        "holds vgg16 (or vgg16_bn), resnet50 and resnet101"
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
    """Mean ± sample std over the runs (seeds) of each backbone and start on one non-paper
    test set; ResNet-101 minus VGG-16 (pretrained) beside the paper's gain (its VOC 07 and COCO
    mAP@[.5, .95]); pretrained minus He init per backbone; per-class AP@.5."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for c in cells:
        if c.value is not None:
            values[(c.row, c.init, c.metric)].append(c.value)
    lines = [
        f"Same networks on {column[5:]} (not the paper's data): mean ± std over runs (%).",
        "",
        "| backbone | runs | mAP@.5 (VOC07) | mAP@[.5, .95] (COCO) | paper: VOC 07 test | "
        "paper: COCO mAP@[.5, .95] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row, init in _own_rows(cells):
        runs = len({c.run_dir for c in cells if (c.row, c.init) == (row, init)})
        a, b = (_mean_std(values[(row, init, m)]) for m in ("mAP@.5", "mAP@[.5, .95]"))
        paper = [_paper_number(row, init, c) for c in ("VOC 07 test", "COCO mAP@[.5, .95]")]
        label = row if init == PRETRAINED else f"{row}, {init}"
        lines.append(f"| {label} | {runs} | {a} | {b} | {paper[0]} | {paper[1]} |")
    lines.append(_gain_row("ResNet-101 − VGG-16", values, ("ResNet-101", PRETRAINED),
                           ("VGG-16", PRETRAINED), _paper_gains()))  # fmt: skip
    for row in OWN_ROWS:
        if values[(row, PRETRAINED, "mAP@.5")] and values[(row, HE_INIT, "mAP@.5")]:
            lines.append(_gain_row(f"{row}: pretrained − He init", values, (row, PRETRAINED),
                                   (row, HE_INIT), ("", "")))  # fmt: skip
    lines += ["", "A difference is of the means, ± sqrt(s1²/n1 + s2²/n2) (its standard error)."]
    return lines + _per_class_table(cells)


def _own_rows(cells: list[RunCell]) -> list[tuple[str, str]]:
    """(backbone, start) rows in table order: VGG-16 and ResNet-101 pretrained always, the
    others where a run has them."""
    present = {(c.row, c.init) for c in cells}
    rows = [(row, init) for init in (PRETRAINED, HE_INIT) for row in OWN_ROWS]
    return [r for r in rows if r in present or (r[1] == PRETRAINED and r[0] in ROWS)]


def _paper_number(row: str, init: str, column: str) -> str:
    value = PAPER.get((row, column)) if init == PRETRAINED else None
    return "—" if value is None else f"{value:.1f}"


def _paper_gains() -> tuple[str, str]:
    gains = [
        PAPER[("ResNet-101", c)] - PAPER[("VGG-16", c)]
        for c in ("VOC 07 test", "COCO mAP@[.5, .95]")
    ]
    return f"{gains[0]:+.1f}", f"{gains[1]:+.1f}"


def _gain_row(
    label: str,
    values: dict[tuple[str, str, str], list[float]],
    first: tuple[str, str],
    second: tuple[str, str],
    paper: tuple[str, str],
) -> str:
    gains = [_gain(values[(*first, m)], values[(*second, m)]) for m in ("mAP@.5", "mAP@[.5, .95]")]
    return f"| {label} | | {gains[0]} | {gains[1]} | {paper[0]} | {paper[1]} |"


def _per_class_table(cells: list[RunCell]) -> list[str]:
    """AP@.5 per class (VOC07 metric), mean ± std over runs, when the set has 2+ classes."""
    runs = [c for c in cells if c.metric == "mAP@.5" and c.per_class]
    classes = list(dict.fromkeys(k for c in runs for k in c.per_class or {}))
    if len(classes) < 2:
        return []
    header = f"| backbone | {' | '.join(classes)} |"
    lines = ["", "AP@.5 per class (%), mean ± std over runs.", "", header]
    lines.append("| --- |" + " ---: |" * len(classes))
    for row, init in _own_rows(cells):
        ours = [c.per_class or {} for c in runs if (c.row, c.init) == (row, init)]
        if not ours:
            continue
        aps = [_mean_std([v for p in ours if (v := p.get(k)) is not None]) for k in classes]
        label = row if init == PRETRAINED else f"{row}, {init}"
        lines.append(f"| {label} | {' | '.join(aps)} |")
    return lines


def _mean_std(values: list[float]) -> str:
    """``71.3 ± 1.2`` (sample std; a single run: its value alone; none: —)."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _gain(first: list[float], second: list[float]) -> str:
    """Difference of two means, signed, ± its standard error when both have 2+ runs (— when
    either has none)."""
    if not first or not second:
        return "—"
    gain = f"{statistics.mean(first) - statistics.mean(second):+.1f}"
    if len(first) < 2 or len(second) < 2:
        return gain
    spread = math.sqrt(
        statistics.variance(first) / len(first) + statistics.variance(second) / len(second)
    )
    return f"{gain} ± {spread:.1f}"
