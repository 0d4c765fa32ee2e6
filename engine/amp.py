"""Automatic mixed precision: the dtype names configs use, autocast, and the fp16 scaler."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, amp_dtype: str | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp_dtype`` ("bf16" / "fp16") on CUDA; a no-op otherwise."""
    if amp_dtype is None or device_type != "cuda":
        return nullcontext()
    return torch.autocast(device_type, dtype=AMP_DTYPES[amp_dtype])


def make_grad_scaler(amp_dtype: str | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 autocast on CUDA (bf16 needs none); None otherwise."""
    if amp_dtype == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
