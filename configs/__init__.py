"""The configs resdet ships (YAML package data), found from any working directory.

``resdet train --config configs/detection/quickstart.yaml`` names a file relative to the
checkout; after ``pip install resdet`` there is no checkout, so a ``configs/...`` path that
does not exist where the command runs is looked up here.
"""

# Exports: ROOT and shipped, defined here (configs is data, imports no package: no _EXPORTS).
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def shipped(path: str) -> Path | None:
    """The shipped copy of ``configs/<rest>`` (or of ``<rest>``), or None if there is none."""
    parts = Path(path).parts
    rest = Path(*parts[1:]) if parts[:1] == ("configs",) and len(parts) > 1 else Path(path)
    candidate = ROOT / rest
    return candidate if candidate.is_file() and not Path(path).is_absolute() else None
