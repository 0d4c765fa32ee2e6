"""A run folder's files: their names, the writer of ``eval_results.json``, and the one reader.

A run writes into its ``output_dir``: ``config.yaml`` (``engine.config.save_config``),
``metrics.jsonl`` (``engine.metrics.MetricsLogger``: one JSON object per log step), the
weights and ``eval_results.json`` (:func:`write_eval_results`, in one layout)::

    {"iteration": int, "weights": str (or [str] for an ensemble), "headline": {name: float},
     "metrics": {evaluator or test mode: {...}}, ...scalars such as "num_images"}

:class:`RunFolder` reads them back for the tools (``resdet compare``, ``report``, ``plot``,
``demo``): each file when it is asked for, and a missing or malformed one is a UserError of
one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import read_yaml
from engine.errors import UserError
from engine.io import atomic_write_json, is_json_integer, is_json_number, read_json, read_text

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
EVAL_RESULTS = "eval_results.json"
MODEL_FINAL = "model_final.pth"

# what a message about a missing file says writes it
WRITTEN_BY = {
    CONFIG_FILE: "written by resdet train or resdet pretrain into its output_dir",
    METRICS_FILE: "expected the metrics.jsonl a training run writes",
    EVAL_RESULTS: "written by resdet train or resdet pretrain, or later by resdet eval",
}


@dataclass(frozen=True)
class RunFolder:
    """A run's ``output_dir``, read as engine wrote it; each file when it is asked for.

    Raises:
        UserError: (on creation) ``path`` is not a folder.
    """

    path: Path

    def __post_init__(self) -> None:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: run directory not found")

    def file(self, name: str, missing: str = "") -> Path:
        """``path / name``, which must exist.

        Raises:
            UserError: it does not; the message says what writes it (``missing``, else
                ``WRITTEN_BY``).
        """
        found = self.path / name
        if not found.is_file():
            raise UserError(f"{found}: not found ({missing or WRITTEN_BY.get(name, 'a run')})")
        return found

    def config_tree(self) -> dict[str, Any] | None:
        """``config.yaml`` as plain values (no task's schema applied); None without one."""
        path = self.path / CONFIG_FILE
        return read_yaml(path) if path.is_file() else None

    def eval_results(self, missing: str = "") -> dict[str, Any]:
        """``eval_results.json``, checked (:func:`read_eval_results`)."""
        return read_eval_results(self.file(EVAL_RESULTS, missing))

    def metrics(self, missing: str = "") -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl`` (:func:`read_metrics`)."""
        return read_metrics(self.file(METRICS_FILE, missing))


def write_eval_results(
    out: Path,
    results: dict[str, Any],
    headline: dict[str, float],
    iteration: int,
    weights: str | list[str],
) -> Path:
    """``eval_results.json`` in the one layout (see the module docstring), atomically."""
    payload = {
        "iteration": iteration,
        "weights": weights,
        "headline": headline,
        "metrics": {k: v for k, v in results.items() if isinstance(v, dict)},
        **{k: v for k, v in results.items() if not isinstance(v, dict)},
    }
    return atomic_write_json(out / EVAL_RESULTS, payload)


def read_eval_results(path: str | Path) -> dict[str, Any]:
    """An ``eval_results.json``, checked against the one layout (``"metrics"``: an object of
    objects; ``"headline"``, if there: numbers or null). NaN, which older versions wrote for
    a class without test objects, is read as well as null.

    Raises:
        UserError: missing, not JSON, or not that layout (one line naming the file).
    """
    payload = read_json(path, EVAL_RESULTS, allow_nan=True)
    what = f"{path}: not an {EVAL_RESULTS} written by resdet"
    if not isinstance(payload, dict):
        raise UserError(f"{what} (expected an object, got {type(payload).__name__})")
    metrics, headline = payload.get("metrics"), payload.get("headline", {})
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise UserError(f'{what} ("metrics" must be an object of objects)')
    if not isinstance(headline, dict) or not all(
        v is None or is_json_number(v) for v in headline.values()
    ):
        raise UserError(f'{what} ("headline" must map names to numbers)')
    return payload


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``metrics.jsonl``, in file order; a torn last line (a killed
    run) is dropped. A resumed run may repeat iterations: the reader decides which wins.

    Raises:
        UserError: a line other than the last is not JSON, a line has no integer ``iter``,
            or there is no line at all.
    """
    text_lines = read_text(path, METRICS_FILE).splitlines()
    lines = [(n, s) for n, s in enumerate(text_lines, 1) if s.strip()]
    records = []
    for n, text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            if n == lines[-1][0]:
                break  # torn by a killed run
            raise UserError(f"{path}:{n}: malformed line (expected one JSON object)") from None
        if not isinstance(record, dict) or not is_json_integer(record.get("iter")):
            raise UserError(f"{path}:{n}: expected a JSON object with an integer 'iter'")
        records.append(record)
    if not records:
        raise UserError(f"{path}: no metric lines (expected JSON objects with an 'iter')")
    return records
