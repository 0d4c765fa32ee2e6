"""Argument helpers shared by the config-driven commands (pretrain, train, eval, infer)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import UserError

if TYPE_CHECKING:  # engine.config pulls in torch: not at `resdet --help`
    from engine.config import RunConfig

C = TypeVar("C", bound="RunConfig")


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """``--config FILE`` and any number of ``--set dotted.key=value``."""
    parser.add_argument(
        "--config",
        required=True,
        type=config_path,
        help=f"YAML config, e.g. {example} (configs/... also finds the shipped copy)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="extend",
        nargs="+",
        default=[],
        help="override a config key (dotted), e.g. --set solver.max_iter=1000",
    )


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--restart`` of a training command (``engine.rundir``'s claim)."""
    parser.add_argument(
        "--resume", action="store_true", help="continue from output_dir/last_checkpoint"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start over in an output_dir that holds a run (its files move to previous/)",
    )


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: what runs a detector (`resdet infer`, `resdet eval`)."""
    from detection.config import RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="torch (default), or the detector exported as one graph and run on the CPU by "
        "openvino (test.precision fp32 or bf16) or onnxruntime (fp32); needs the export extra",
    )


def add_nproc_argument(parser: argparse.ArgumentParser) -> None:
    """``--nproc N|auto``: data-parallel ranks on this machine (engine.launch)."""
    parser.add_argument(
        "--nproc",
        metavar="N|auto",
        help="train as N data-parallel processes on this machine (gloo on the CPU, one per "
        "GPU on CUDA), sharing solver.ims_per_batch; auto: one per idle core (per GPU on "
        "CUDA). Default: this one process. Pays for small models on the CPU (docs/PERFORMANCE.md)",
    )


def launched_ranks(args: argparse.Namespace, ims_per_batch: int, device: str) -> int | None:
    """Run this command as the ranks ``--nproc`` asks for and return their exit code; None
    when it runs in this process (one rank, or already a rank of torchrun or of this)."""
    from engine.launch import launch, ranks_to_start

    nproc = ranks_to_start(args.nproc, ims_per_batch, device)
    if nproc == 1:
        return None
    return launch([sys.executable, "-m", "tools.cli", *args.argv], nproc)


def add_trust_weights_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-weights``: the only way to let a weights file be unpickled fully (it sets the
    config's ``trust_weights``, which no config file and no ``--set`` can)."""
    parser.add_argument(
        "--trust-weights",
        action="store_true",
        help="unpickle weights files fully if they need it: this can run code from them, so "
        "only for files you made (never set by a config file)",
    )


def trusted(cfg: C, args: argparse.Namespace) -> C:
    """``cfg`` with ``trust_weights`` from the command line's ``--trust-weights`` (off when
    the command has no such flag)."""
    cfg.trust_weights = bool(getattr(args, "trust_weights", False))
    return cfg


def is_main_process() -> bool:
    """True on torchrun's rank 0 (and without torchrun), so only one copy is printed."""
    return os.environ.get("RANK", "0") == "0"


def print_json(results: dict[str, Any]) -> None:
    """``results`` as indented strict JSON on stdout (NaN as null), rank 0 only."""
    from engine.io import json_safe

    if is_main_process():
        print(json.dumps(json_safe(results), indent=2, allow_nan=False))


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1] (a score threshold); NaN and others are refused."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (how many images, ...)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def parse_class_names(text: str | None) -> list[str]:
    """``--classes a,b,c`` in label order; VOC's 20 classes when the flag is absent.

    Raises:
        UserError: an empty list or a name given twice.
    """
    from detection.data.voc import VOC_CLASSES

    if text is None:
        return list(VOC_CLASSES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes: expected distinct comma-separated names, got {text!r}")
    return names


def config_path(path: str) -> str:
    """``path`` itself when it exists, else the shipped copy of a ``configs/...`` path.

    So the documented commands work from any folder after a non-editable install.
    """
    if Path(path).exists():
        return path
    from configs import shipped

    found = shipped(path)
    return str(found) if found is not None else path
