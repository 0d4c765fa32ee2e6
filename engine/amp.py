"""Automatic mixed precision: the dtype names configs use, autocast, and the fp16 scaler.

bf16 autocast runs on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX);
elsewhere a CPU would emulate it, slower than fp32, so :func:`resolve_amp` falls back to fp32
with a warning. fp16 autocast is for CUDA only.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_amp(amp_dtype: str | None, device: torch.device, key: str) -> str | None:
    """The autocast dtype name to run with on ``device``: None means fp32.

    Args:
        amp_dtype: "bf16", "fp16" or None (fp32), as the config asks.
        device: where the model runs.
        key: the config key that asked, named in the warning.

    On CUDA the dtype is kept. On CPU bf16 is kept where the CPU has it natively; fp16, or
    bf16 on a CPU without it, runs in fp32 with a warning.
    """
    if amp_dtype is None or device.type == "cuda":
        return amp_dtype
    if device.type == "cpu" and amp_dtype == "bf16" and cpu_has_native_bf16():
        return amp_dtype
    need = "CUDA" if amp_dtype == "fp16" else "CUDA or a CPU with AVX512-BF16 / AMX"
    warnings.warn(f"{key}: {amp_dtype} needs {need}; running in fp32 on {device}", stacklevel=2)
    return None


def autocast(device_type: str, amp_dtype: str | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp_dtype`` ("bf16" / "fp16", see :func:`resolve_amp`); a
    no-op for None."""
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type, dtype=AMP_DTYPES[amp_dtype])


def cast_for_autocast(model: nn.Module, amp_dtype: str | None) -> nn.Module:
    """Inference only: store every convolution and linear layer in the autocast dtype.

    Autocast casts these weights on every call (for R50-FPN on CPU ~1 s of copies per
    image); cast once, the result is the same. The model then runs under
    :func:`autocast` only. A no-op for None.
    """
    if amp_dtype is not None:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(AMP_DTYPES[amp_dtype])
    return model


def make_grad_scaler(amp_dtype: str | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast on CUDA (bf16 needs none); None otherwise."""
    if amp_dtype == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
