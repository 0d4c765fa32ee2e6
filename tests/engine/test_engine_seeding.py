"""Seeds (seed + rank), deterministic mode and RNG state capture/restore."""

from __future__ import annotations

import random

import numpy as np
import torch

from engine.seeding import (
    capture_rng_state,
    restore_rng_state,
    seed_everything,
    set_deterministic,
)


def _draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(2).tolist()


def test_seed_plus_rank() -> None:
    assert seed_everything(7, rank=0) == 7
    first = _draw()
    seed_everything(7)
    assert _draw() == first
    assert seed_everything(6, rank=1) == 7
    assert _draw() == first  # rank r of seed s draws what seed s + r draws
    seed_everything(7, rank=1)
    assert _draw() != first


def test_capture_restore_round_trip_through_a_checkpoint(tmp_path) -> None:
    seed_everything(3)
    _draw()
    torch.save(capture_rng_state(), tmp_path / "rng.pth")
    expected = _draw()
    restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True))  # tensors/numbers only
    assert _draw() == expected


def test_deterministic_flags() -> None:
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
