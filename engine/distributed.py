"""Thin wrappers around torch.distributed for runs launched by ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process
(single node or multi-node); a plain ``python``/``resdet`` run has none of them and stays a
single process without a process group. Every helper here works in both cases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from engine.errors import UserError


def resolve_device(device: str) -> torch.device:
    """Turn the config's ``device`` (auto|cpu|cuda) into this process's torch device.

    Under torchrun each process takes the GPU numbered by its LOCAL_RANK.

    Raises:
        UserError: ``cuda`` asked for on a machine without CUDA, or an unknown name.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"device: expected auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but CUDA is not available here")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device, timeout_min: float = 30.0) -> None:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); no-op otherwise.

    Args:
        device: this process's device, from :func:`resolve_device`.
        timeout_min: collective timeout in minutes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_min), **kwargs)


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the only process that writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank; a one-element list in a single process."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_scalars(values: Mapping[str, Tensor | float]) -> dict[str, float]:
    """Average scalars over all ranks (one all-reduce); the result is the same on every rank.

    Used for logging and for decisions every rank must take alike (a non-finite loss, leaving
    warm-up), so NaN on one rank shows up everywhere.

    Args:
        values: name -> 0-dim tensor or float.

    Returns:
        name -> mean over ranks, as Python floats (in the input's key order).
    """
    if not values:
        return {}
    names = list(values)
    # stack where the values live, so a CUDA run syncs with the host once, not once per value
    world = get_world_size()
    if world > 1:  # nccl reduces CUDA tensors, gloo CPU tensors
        nccl = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    else:
        tensors = [v for v in values.values() if isinstance(v, Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
    stacked = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in names]
    )
    if world > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / world
    return dict(zip(names, stacked.cpu().tolist()))


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when there are several processes."""
    if get_world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
