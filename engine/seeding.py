"""Explicit seeds, deterministic mode and the capture/restore of every RNG state.

Nothing here hides a global seed: the run seeds once at start (`seed + rank`, so processes
draw different dropout masks but the run as a whole is reproducible) and a checkpoint carries
the RNG states so that `--resume` continues the same random streams.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators with ``seed + rank``.

    Returns:
        The seed used.
    """
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)  # also seeds every CUDA device
    return value


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (bit-exact reruns and resumes on the same machine).

    cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before its first use to be deterministic; a value
    the user set is kept.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


@contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """:func:`set_deterministic` within the block; the previous flags come back after it.

    A run started in-process (tests, notebooks) does not leave the setting behind.
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    set_deterministic(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of Python's, NumPy's, torch's CPU and (if present) CUDA generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    state: dict[str, Any] = {
        "python": random.getstate(),
        # tensors and plain numbers only, so checkpoints load with torch.load(weights_only=True)
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back a snapshot taken by :func:`capture_rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
