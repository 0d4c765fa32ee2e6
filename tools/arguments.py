"""Argument helpers shared by the config-driven commands (pretrain, train, eval, infer)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from engine.errors import UserError


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


def is_main_process() -> bool:
    """True on torchrun's rank 0 (and without torchrun), so only one copy is printed."""
    return os.environ.get("RANK", "0") == "0"


def print_json(results: dict[str, Any]) -> None:
    if is_main_process():
        print(json.dumps(results, indent=2))


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
