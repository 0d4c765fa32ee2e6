"""Training metrics: ``metrics.jsonl``, optional TensorBoard, and a tqdm progress bar.

One JSON object per log step: ``iter``, the losses and other scalars averaged over the
iterations since the previous line, ``lr``, ``time`` (s/iter), ``data_time`` (s/iter spent
waiting for data), ``eta_seconds``, plus whatever else the loop passes (counts of skipped
images or batches, evaluation results). Only rank 0 writes or draws; the other ranks get a
logger that does nothing.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.io import is_json_number
from engine.runfolder import METRICS_FILE


class MetricsLogger:
    """Collects per-iteration scalars and writes window averages every ``log`` call.

    Args:
        output_dir: folder of ``metrics.jsonl`` (and TensorBoard events in ``tb/``).
        max_iter: last iteration (for the ETA and the progress bar).
        start_iter: finished iterations when the run (re)starts; on resume the lines of
            ``metrics.jsonl`` after it are dropped so the file reads as one run.
        enabled: False on ranks other than 0.
        tensorboard: also write TensorBoard events (one warning if it is not installed).
        progress: a tqdm bar on a terminal; elsewhere (a log file, a batch job) one line per
            ``metrics.jsonl`` line on stderr: iteration, losses, lr, s/iter, ETA.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        max_iter: int,
        start_iter: int = 0,
        enabled: bool = True,
        tensorboard: bool = False,
        progress: bool = True,
    ) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.max_iter = max_iter
        self.enabled = enabled
        self._window: dict[str, list[float]] = defaultdict(list)
        self._writer: Any = None
        self._bar: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_after(self.path, start_iter)
        if tensorboard:
            self._writer = _tensorboard_writer(self.path.parent / "tb")
        self._plain = progress and not sys.stderr.isatty()
        if progress and not self._plain:
            self._bar = tqdm(total=max_iter, initial=start_iter, dynamic_ncols=True)

    def put(self, scalars: dict[str, float]) -> None:
        """Record one iteration's scalars (averaged at the next :meth:`write`)."""
        for name, value in scalars.items():
            self._window[name].append(value)

    def write(self, iteration: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write one line: window means of the recorded scalars, ETA and ``extra`` as is.

        Returns:
            The line's object (also on disabled ranks, without writing).
        """
        line: dict[str, Any] = {"iter": iteration}
        line.update({k: sum(v) / len(v) for k, v in self._window.items() if v})
        self._window.clear()
        if "time" in line:
            line["eta_seconds"] = round(line["time"] * max(self.max_iter - iteration, 0), 1)
        line.update(extra or {})
        if self.enabled and self._plain:
            print(progress_line(line, self.max_iter), file=sys.stderr, flush=True)
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(line, allow_nan=True) + "\n")
            if self._writer is not None:
                for name, value in line.items():
                    if name != "iter" and isinstance(value, int | float):
                        self._writer.add_scalar(name, value, iteration)
        return line

    def progress(self, iteration: int, shown: dict[str, float]) -> None:
        """Move the bar to ``iteration`` and show ``shown`` (losses, lr, s/iter)."""
        if self._bar is None:
            return
        self._bar.update(iteration - self._bar.n)
        self._bar.set_postfix({k: _short(v) for k, v in shown.items()}, refresh=False)

    def close(self) -> None:
        """Flush and close the bar and the TensorBoard writer."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()


class Progress:
    """Progress of a pass over a known number of items (evaluation, inference).

    A tqdm bar on a terminal; elsewhere (a log file, a batch job) one line on stderr at most
    every ``every_seconds`` and at the end, like the training log's:
    ``eval 120/4952 images  0.31 s/image  eta 0:25:10``.

    Args:
        total: items in the pass (this rank's share).
        what: the pass, first word of each line (``eval``, ``infer``).
        unit: the items' name (``images``).
        enabled: False on ranks other than 0 (nothing is shown).
        every_seconds: least time between two plain lines.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "images",
        enabled: bool = True,
        every_seconds: float = 30.0,
    ) -> None:
        self.total, self.what, self.unit = total, what, unit
        self.done = 0
        self._every = every_seconds
        self._start = self._shown = time.perf_counter()
        self._plain = enabled and not sys.stderr.isatty()
        self._bar = None
        if enabled and not self._plain:
            self._bar = tqdm(total=total, desc=what, unit=unit.rstrip("s"), dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """``n`` more items are done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if self._plain and (now - self._shown >= self._every or self.done >= self.total):
            self._shown = now
            print(self.line(now - self._start), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """``eval 120/4952 images  0.31 s/image  eta 0:25:10`` after ``elapsed`` seconds."""
        per_item = elapsed / max(self.done, 1)
        eta = datetime.timedelta(seconds=int(per_item * max(self.total - self.done, 0)))
        rate = f"{per_item:.2f} s/{self.unit.rstrip('s')}"
        return f"{self.what} {self.done}/{self.total} {self.unit}  {rate}  eta {eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_line(line: dict[str, Any], max_iter: int) -> str:
    """One metrics line for a log file, like Detectron2's: ``iter 40/2000  total_loss 1.23
    loss_cls 0.456  lr 0.02  0.71 s/it  eta 0:23:11`` (an evaluation: its numbers)."""
    head = f"iter {line['iter']}/{max_iter}"
    if "eval" in line:
        flat = numeric_leaves(line["eval"], skip=("per_class",))
        shown = [
            f"{k} {_short(v)}" for k, v in flat.items() if not k.endswith(("images", "_seconds"))
        ]
        return f"{head}  eval: " + "  ".join(shown[:8])
    losses = [
        f"{k} {_short(v)}" for k, v in line.items() if k.endswith("loss") or k.startswith("loss")
    ]
    tail = [f"lr {line['lr']:.4g}"] if "lr" in line else []
    if "time" in line:
        tail.append(f"{line['time']:.2f} s/it")
    if "eta_seconds" in line:
        tail.append(f"eta {datetime.timedelta(seconds=int(line['eta_seconds']))}")
    return "  ".join([head, *losses, *tail])


def numeric_leaves(tree: Any, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The numbers of a nested dict keyed by dotted path (``eval.coco.AP``); keys in ``skip``
    (e.g. ``per_class`` tables) are left out with everything under them."""
    if is_json_number(tree):
        return {prefix: float(tree)}
    if not isinstance(tree, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in tree.items():
        if key not in skip:
            out.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key), skip))
    return out


def _short(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def _truncate_after(path: Path, start_iter: int) -> None:
    """Keep only the lines with ``iter <= start_iter`` (a fresh run keeps none)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iter", math.inf) <= start_iter:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    path.write_text("".join(line + "\n" for line in kept))


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboard: true, but TensorBoard is not installed (pip install 'resdet[tb]'); "
            "writing metrics.jsonl only",
            stacklevel=3,
        )
        return None
    return SummaryWriter(log_dir=str(folder))
