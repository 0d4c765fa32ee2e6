"""Atomic checkpoints: ``checkpoint_<iter>.pth`` plus a ``last_checkpoint`` text file.

A checkpoint is written to a temporary file in the same folder, fsynced and renamed over its
final name, its SHA-256 recorded beside it (``checkpoint_<iter>.pth.sha256``), then
``last_checkpoint`` is replaced the same way; a crash at any moment leaves the previous
checkpoint readable. If the newest file is damaged anyway (a truncated copy, a flipped bit, a
full disk), loading it fails, a warning names it and the next older checkpoint is used.
Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import distributed as dist
from engine.errors import UserError
from engine.io import atomic_torch_save, atomic_write_text
from engine.seeding import capture_rng_state, restore_rng_state

LAST_CHECKPOINT = "last_checkpoint"
_NAME = re.compile(r"^checkpoint_(\d+)\.pth$")


def list_checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint_<iter>.pth`` files in ``output_dir``, newest (highest iteration) first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def checksum_path(path: Path) -> Path:
    """The SHA-256 sidecar of a checkpoint: ``checkpoint_<iter>.pth.sha256``."""
    return path.with_name(path.name + ".sha256")


def write_checksum(path: Path) -> None:
    """Record ``path``'s SHA-256 beside it (atomically), for :func:`read_verified`."""
    atomic_write_text(checksum_path(path), hashlib.sha256(path.read_bytes()).hexdigest() + "\n")


def read_verified(path: Path, trust: bool = False) -> Any:
    """``torch.load`` of a ``.pth`` file, on the CPU: the one reader of PyTorch files, for
    checkpoints and weights alike. When the file has a SHA-256 sidecar (every file resdet
    writes through :class:`Checkpointer`), the bytes loaded are the bytes checked.

    Args:
        path: the file.
        trust: unpickle it fully (``weights_only=False``), which can run code from the file;
            else tensors and plain values only.

    Raises:
        ValueError: the bytes differ from the recorded SHA-256 (bit rot, a partial copy).
        Exception: whatever torch.load raises for a torn file or a refused class.
    """
    sidecar = checksum_path(path)
    source: Path | io.BytesIO = path
    if sidecar.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sidecar.read_text().strip():
            raise ValueError(f"its SHA-256 differs from {sidecar.name}: the file is corrupt")
        source = io.BytesIO(data)
    with warnings.catch_warnings():  # torch's many-line note on a raw pickle's protocol
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(source, map_location="cpu", weights_only=not trust)


def load_latest(output_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """Load the checkpoint ``last_checkpoint`` names, falling back to older ones if damaged
    (torn, or bytes that differ from the recorded checksum); each one skipped is named.

    Returns:
        (state, path) of the newest checkpoint that loads, or None if there is none.
    """
    candidates = list_checkpoints(output_dir)
    marker = output_dir / LAST_CHECKPOINT
    if marker.is_file():
        named = output_dir / marker.read_text().strip()
        candidates = [named] + [p for p in candidates if p != named]
    for i, path in enumerate(candidates):
        try:
            state = read_verified(path)
        except Exception as exc:  # a torn or missing file: any failure of the unpickler
            fallback = f"; using {candidates[i + 1].name}" if i + 1 < len(candidates) else ""
            warnings.warn(
                f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no message'}){fallback}",
                stacklevel=2,
            )
            continue
        return state, path
    return None


class Checkpointer:
    """Saves and restores everything a run needs to continue exactly where it stopped.

    State: model (unwrapped from DDP), optimizer, scheduler, GradScaler, the iteration, every
    rank's RNG states, the task's ``meta`` (the input the model expects: channel order,
    pixel mean/std, size policy, class names) and whatever ``extra`` the caller adds.

    Args:
        output_dir: folder of ``checkpoint_<iter>.pth`` and ``last_checkpoint``.
        model: the model, DDP-wrapped or not.
        optimizer, scheduler, scaler: anything with ``state_dict`` / ``load_state_dict``
            (None to leave out).
        keep: how many of the newest checkpoints to keep (None keeps all).
        meta: stored under "meta" in every checkpoint (plain Python values only).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        model: nn.Module,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        keep: int | None = 3,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be >= 1 or None, got {keep}")
        self.output_dir = Path(output_dir)
        self.model = model
        self.parts = {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
        self.keep = keep
        self.meta = meta or {}

    def save(self, iteration: int, extra: dict[str, Any] | None = None) -> Path:
        """Write ``checkpoint_<iteration>.pth`` and point ``last_checkpoint`` at it.

        Collective under torchrun: every rank must call it (the RNG states are gathered);
        only rank 0 writes.

        Returns:
            The checkpoint's path.
        """
        rng_states = dist.all_gather_object(capture_rng_state())
        path = self.output_dir / f"checkpoint_{iteration}.pth"
        if dist.is_main():
            state: dict[str, Any] = {
                "iteration": iteration,
                "model": dist.unwrap(self.model).state_dict(),
                "rng": rng_states,
                "meta": self.meta,
                "extra": extra or {},
            }
            for name, part in self.parts.items():
                if part is not None:
                    state[name] = part.state_dict()
            atomic_torch_save(state, path)
            write_checksum(path)
            atomic_write_text(self.output_dir / LAST_CHECKPOINT, path.name + "\n")
            self._prune()
        dist.barrier()
        return path

    def _prune(self) -> None:
        if self.keep is None:
            return
        for old in list_checkpoints(self.output_dir)[self.keep :]:
            old.unlink(missing_ok=True)
            checksum_path(old).unlink(missing_ok=True)

    def resume(self) -> dict[str, Any]:
        """Restore the newest readable checkpoint into the model, optimizer, ... and RNGs.

        Returns:
            The loaded state ({} if the folder has no checkpoint); ``state["iteration"]`` is
            the number of finished iterations and ``state["extra"]`` what ``save`` was given.
        """
        loaded = load_latest(self.output_dir)
        if loaded is None:
            return {}
        state, path = loaded
        try:
            dist.unwrap(self.model).load_state_dict(state["model"])
            for name, part in self.parts.items():
                if part is not None and name in state:
                    part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as exc:  # another model or optimizer
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"--resume: {path} was saved by a different model or solver ({first}); "
                "--restart starts this config over"
            ) from None
        self._restore_rng(state.get("rng", []))
        return state

    def _restore_rng(self, rng_states: list[dict[str, Any]]) -> None:
        rank, world = dist.get_rank(), dist.get_world_size()
        if len(rng_states) != world:
            warnings.warn(
                f"checkpoint has RNG states of {len(rng_states)} processes, this run has "
                f"{world}; random streams restart from the seed",
                stacklevel=3,
            )
            return
        restore_rng_state(rng_states[rank])
