"""`resdet plot RUN_DIR...`: training curves from each run's ``metrics.jsonl``, as a PNG.

    resdet plot output/pretrain/resnet56 [--metrics loss_cls eval.center.top1_error]
    resdet plot output/pretrain/plain20 output/pretrain/resnet20 --layout fig6 --out fig6.png

``--layout curves`` (default) draws one panel per metric with the runs overlaid;
``--layout fig6`` draws the paper's Fig. 6: plain nets left, ResNets right, training error
dashed and test error bold, in percent. A run's label is its ``model.backbone.name`` from
``config.yaml`` (else the folder name). In ``metrics.jsonl`` the last line for an iteration
wins (a resumed run may repeat some), and a torn last line (a killed run) is skipped.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine.errors import UserError
from engine.io import atomic_write_png
from engine.metrics import numeric_leaves
from engine.runfolder import METRICS_FILE, RunFolder

HELP = "draw training curves (or the paper's Fig. 6) from runs' metrics.jsonl"

DPI = 100
COUNT_KEYS = {"images", "skipped_images", "num_images"}  # eval counters, not curves
Series = tuple[list[int], list[float]]


@dataclass
class RunLog:
    """One run's metrics: the last training and evaluation line per iteration, flattened."""

    path: Path  # the run directory
    name: str  # model.backbone.name from config.yaml, else the folder name
    train: dict[int, dict[str, float]] = field(default_factory=dict)
    evals: dict[int, dict[str, float]] = field(default_factory=dict)  # keys "eval.<mode>.<k>"

    def metrics(self) -> list[str]:
        """Every metric name in this run, in order of first appearance."""
        names: dict[str, None] = {}
        for table in (self.train, self.evals):
            for values in table.values():
                names.update(dict.fromkeys(values))
        return list(names)

    def series(self, metric: str) -> Series:
        """``(iterations, values)`` of one metric, sorted by iteration."""
        table = self.evals if metric.startswith("eval.") else self.train
        points = sorted((i, v[metric]) for i, v in table.items() if metric in v)
        return [i for i, _ in points], [v for _, v in points]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="output_dir of runs (with metrics.jsonl)"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="curves layout: metrics to draw, e.g. loss_cls lr eval.center.top1_error "
        "(default: every loss* key, lr and the eval metrics); give it after the RUN_DIRs",
    )
    parser.add_argument(
        "--layout",
        choices=("curves", "fig6"),
        default="curves",
        help="curves: one panel per metric; fig6: the paper's Fig. 6 (plain vs ResNet error)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        help="PNG to write (default: curves.png in the first RUN_DIR; fig6: ./fig6.png)",
    )


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not str(args.out).lower().endswith(".png"):
        raise UserError(f"--out: {args.out!r} is not a .png path")
    runs = [read_log(Path(run_dir)) for run_dir in args.runs]
    if args.layout == "fig6":
        if args.metrics:
            raise UserError("--metrics: applies to --layout curves only (fig6 draws error)")
        figure = draw_fig6(runs)
        out = Path(args.out or "fig6.png")
    else:
        figure = draw_curves(runs, pick_metrics(runs, args.metrics))
        out = Path(args.out) if args.out else runs[0].path / "curves.png"
    atomic_write_png(out, figure, DPI)
    print(out)
    return 0


# ---------------------------------------------------------------------------- reading


def read_log(run_dir: Path) -> RunLog:
    """A run's ``metrics.jsonl`` (the last line per iteration wins) and its label from
    ``config.yaml``, through ``engine.runfolder``.

    Raises:
        UserError: the folder or its metrics.jsonl is missing, or a line is malformed.
    """
    run = RunFolder(run_dir)
    log = RunLog(run_dir, backbone_name(run))
    for record in run.metrics():
        iteration = record.pop("iter")
        if "eval" in record:
            log.evals[iteration] = numeric_leaves(record["eval"], "eval")
        else:
            log.train[iteration] = numeric_leaves(record)
    return log


def backbone_name(run: RunFolder) -> str:
    """``model.backbone.name`` from the run's ``config.yaml``; the folder name without one."""
    name = _get(_get(_get(run.config_tree(), "model"), "backbone"), "name")
    return name if isinstance(name, str) and name else run.path.resolve().name


def _get(mapping: object, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, dict) else None


def labels(runs: Sequence[RunLog], rename: Callable[[str], str] = str) -> list[str]:
    """Legend labels: the (renamed) run names, with the folder added where two are equal."""
    names = [rename(r.name) for r in runs]
    return [f"{n} ({r.path})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


# ---------------------------------------------------------------------------- curves


def default_metrics(runs: Sequence[RunLog]) -> list[str]:
    """Every ``loss*`` key, ``lr``, then the ``eval.<mode>.<metric>`` scores."""
    names = list(dict.fromkeys(m for r in runs for m in r.metrics()))
    losses = [m for m in names if m.startswith("loss")]
    lr = [m for m in names if m == "lr"]
    scores = [m for m in names if m.startswith("eval.") and m.count(".") == 2]
    return losses + lr + [m for m in scores if m.rsplit(".", 1)[1] not in COUNT_KEYS]


def pick_metrics(runs: Sequence[RunLog], wanted: Sequence[str] | None) -> list[str]:
    """The ``--metrics`` names (checked against the runs), or the defaults.

    Raises:
        UserError: a name no run has, or (without ``--metrics``) nothing to draw.
    """
    available = list(dict.fromkeys(m for r in runs for m in r.metrics()))
    for name in wanted or ():
        if name not in available:
            raise UserError(f"--metrics: no run has {name!r}; available: {', '.join(available)}")
    metrics = list(dict.fromkeys(wanted)) if wanted else default_metrics(runs)
    if not metrics:
        raise UserError(
            f"no loss*, lr or eval metrics in the runs; available: {', '.join(available)}"
        )
    return metrics


def draw_curves(runs: Sequence[RunLog], metrics: Sequence[str]) -> Figure:
    """One panel per metric, the runs overlaid in one colour each, one legend on top."""
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    figure = Figure(figsize=(4 * ncols, 3 * nrows + 0.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    names = labels(runs)
    for ax, metric in zip(axes, metrics):
        for index, (log, name) in enumerate(zip(runs, names)):
            iters, values = log.series(metric)
            marker = "o" if metric.startswith("eval.") else None
            ax.plot(iters, values, color=f"C{index % 10}", marker=marker, ms=3, label=name)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("iter.")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, texts = axes[0].get_legend_handles_labels()
    figure.legend(handles, texts, loc="outside upper center", ncols=min(len(runs), 6))
    return figure


# ---------------------------------------------------------------------------- fig6


def network_name(name: str) -> str:
    """The paper's spelling: ``plain20`` -> ``plain-20``, ``resnet56`` -> ``ResNet-56``."""
    match = re.match(r"(plain|resnet)-?(\d+)(.*)", name, re.IGNORECASE)
    if match is None:
        return name
    kind = "plain" if match[1].lower() == "plain" else "ResNet"
    return f"{kind}-{match[2]}{match[3]}"


def split_fig6(runs: Sequence[RunLog]) -> tuple[list[RunLog], list[RunLog]]:
    """``(plain nets, ResNets)`` by backbone name, each in the given order.

    Raises:
        UserError: a run is neither a ``plain*`` nor a ``resnet*`` network.
    """
    plain, resnets = [], []
    for log in runs:
        if log.name.lower().startswith("plain"):
            plain.append(log)
        elif log.name.lower().startswith("resnet"):
            resnets.append(log)
        else:
            raise UserError(
                f"{log.path}: backbone {log.name!r} is not a plain* or resnet* network "
                "(fig6 compares plain nets with ResNets)"
            )
    return plain, resnets


def eval_error_metric(log: RunLog) -> str | None:
    """``eval.center.top1_error``, else the first eval mode's top-1 error; None without."""
    modes = [m for m in log.metrics() if m.startswith("eval.") and m.endswith(".top1_error")]
    if "eval.center.top1_error" in modes:
        return "eval.center.top1_error"
    return modes[0] if modes else None


def fig6_series(log: RunLog) -> tuple[Series, Series]:
    """``(training error, test error)`` of a run, each ``(iterations, percent)``.

    Raises:
        UserError: the run has neither ``train_error`` nor an eval top-1 error.
    """
    metric = eval_error_metric(log)
    train, test = log.series("train_error"), log.series(metric) if metric else ([], [])
    if not train[0] and not test[0]:
        raise UserError(
            f"{log.path / METRICS_FILE}: no 'train_error' or 'eval.<mode>.top1_error' "
            "(fig6 plots classification runs)"
        )
    return (train[0], [100 * v for v in train[1]]), (test[0], [100 * v for v in test[1]])


def draw_fig6(runs: Sequence[RunLog]) -> Figure:
    """The paper's Fig. 6: plain nets left, ResNets right (only the sides that have runs)."""
    sides = [side for side in split_fig6(runs) if side]
    figure = Figure(figsize=(6 * len(sides), 4.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, len(sides), sharey=True, squeeze=False)[0]
    tops = [_draw_fig6_panel(ax, side) for ax, side in zip(axes, sides)]
    axes[0].set_ylim(0, max(tops))
    axes[0].set_ylabel("error (%)")
    figure.suptitle("dashed: training error, bold: test error", fontsize=10)
    return figure


def _draw_fig6_panel(ax: Axes, runs: Sequence[RunLog]) -> float:
    """Draw one side's runs; returns the y limit that shows them past the first iterations."""
    late: list[float] = []
    for index, (log, name) in enumerate(zip(runs, labels(runs, network_name))):
        (train_x, train_y), (test_x, test_y) = fig6_series(log)
        color = f"C{index % 10}"
        ax.plot(train_x, train_y, color=color, lw=0.9, ls="--")
        ax.plot(test_x, test_y, color=color, lw=2.4, label=name)
        start = 0.05 * max(train_x + test_x)  # the paper's 0-20 % view skips the first drop
        late += [v for x, v in zip(train_x + test_x, train_y + test_y) if x >= start]
    ax.set_xlabel("iter.")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    finite = [v for v in late if math.isfinite(v)]
    return min(100.0, max(20.0, 1.15 * max(finite, default=20.0)))
