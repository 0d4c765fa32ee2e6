"""engine.amp: which dtype autocast runs in where, CPU bf16, weights cast once for inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.layers import FrozenBatchNorm2d
from engine import amp
from engine.config import SolverConfig
from engine.run import amp_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_cuda_keeps_the_asked_dtype() -> None:
    assert amp.resolve_amp("fp16", CUDA, "solver.amp_dtype") == "fp16"
    assert amp.resolve_amp("bf16", CUDA, "solver.amp_dtype") == "bf16"
    assert amp.resolve_amp(None, CUDA, "solver.amp_dtype") is None


def test_cpu_runs_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    assert amp.resolve_amp("bf16", CPU, "test.precision") == "bf16"
    with pytest.warns(UserWarning, match=r"solver.amp_dtype: fp16 needs CUDA; running in fp32"):
        assert amp.resolve_amp("fp16", CPU, "solver.amp_dtype") is None
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"test.precision: bf16 needs CUDA or a CPU with AVX"):
        assert amp.resolve_amp("bf16", CPU, "test.precision") is None


def test_solver_amp_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype(SolverConfig(amp=True, amp_dtype="bf16"), CPU) == "bf16"
    assert amp_dtype(SolverConfig(amp=False, amp_dtype="bf16"), CPU) is None
    assert amp_dtype(SolverConfig(amp=True, amp_dtype="fp16"), CUDA) == "fp16"


def test_autocast_on_cpu() -> None:
    layer, x = nn.Linear(4, 2), torch.randn(3, 4)
    with amp.autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with amp.autocast("cpu", None):
        assert layer(x).dtype == torch.float32


def test_cast_for_autocast_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), FrozenBatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(2, 3, 3, 3)
    with torch.no_grad(), amp.autocast("cpu", "bf16"):
        before = model(x)
        amp.cast_for_autocast(model, "bf16")
        after = model(x)
    assert model[0].weight.dtype == model[3].bias.dtype == torch.bfloat16
    assert model[1].running_var.dtype == torch.float32  # not a convolution or linear layer
    assert torch.equal(before, after)
    assert amp.cast_for_autocast(model, None) is model
