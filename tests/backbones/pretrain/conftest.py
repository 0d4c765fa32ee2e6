"""Fixtures of the pretraining tests (generators live in pretrain_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml
from pretrain_helpers import SMALL_RUN, merge


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML run config: SMALL_RUN + data roots + ``extra`` (nested dict, merged)."""

    def write(data: dict, extra: dict | None = None, name: str = "run.yaml") -> Path:
        tree = merge(SMALL_RUN, {"data": data, **(extra or {})})
        tree.setdefault("output_dir", str(tmp_path / "out"))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tree))
        return path

    return write


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared 2-core machine two spinning OpenMP threads make a
    busy run many times slower (measured: 8 s vs 4 min for the learning test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
