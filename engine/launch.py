"""Data-parallel ranks on this machine without torchrun: ``resdet train --nproc N|auto``.

A model too small to keep two cores busy through one process's threads trains faster as N
single-thread ranks with a share of the global batch each (DDP over gloo on the CPU): the
demo's detector runs 1.5x the images per second as two ranks on two cores
(docs/PERFORMANCE.md, "Two ranks for a small model"). :func:`launch` starts the ranks as
``torchrun --standalone`` would, the same command in N child processes with RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in their environment
(which :mod:`engine.distributed` reads), and waits for them.

Threads: each rank gets ``cores // N`` (``OMP_NUM_THREADS``) unless the user set a count.

Signals: the ranks stay in the launcher's process group, so a terminal's Ctrl-C or a
scheduler's SIGTERM to the group reaches them at once; a signal sent to the launcher alone is
passed on to every rank (a second copy of a signal changes nothing: a rank stops once). Each
rank stops as a single process does, at an iteration boundary that the ranks agree on
(engine.loop's all-reduce), with a checkpoint, and the launcher exits 130. On Linux a rank
also gets SIGTERM when the launcher dies (``PR_SET_PDEATHSIG``), so no rank is left behind.

Messages: rank 0 writes to the terminal as a single process would (its progress bar too). The
other ranks' stderr is held and shown at the end only for a rank that failed, prefixed
``[rank N]``, unless it is the one-line error (``resdet <command>: error: ...``) that rank 0
failed with too: an error every rank meets (a bad data path) reads once, a crash of one rank
is not hidden.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from types import FrameType
from typing import IO

import torch

from engine import threads
from engine.errors import UserError
from engine.stops import STOP_SIGNALS

GRACE_S = 30.0  # after one rank failed, the others get this long to fail too, then SIGTERM
SHOWN_LINES = 20  # at most this many lines of a failed rank's own messages
_PR_SET_PDEATHSIG = 1


def ranks_to_start(request: str | None, ims_per_batch: int, device: str) -> int:
    """How many ranks ``--nproc request`` starts here; 1 runs the command in this process.

    ``auto``: on CUDA, one rank per GPU; on the CPU, one per core that other processes leave
    idle (measured over half a second, as engine.threads counts them), at most the largest
    number that divides the global batch. Under torchrun (WORLD_SIZE set) this process is
    already a rank, so 1; a number that disagrees with torchrun's is an error.

    Args:
        request: ``--nproc``'s value, "auto" or a whole number >= 1; None (no ``--nproc``):
            this process, as one rank or as one of torchrun's.
        ims_per_batch: the global batch (``solver.ims_per_batch``), split over the ranks.
        device: the config's ``device`` (auto|cpu|cuda).

    Raises:
        UserError: not "auto" or a whole number >= 1; a number that does not divide the batch,
            that torchrun contradicts, or that exceeds the GPUs on CUDA.
    """
    if request is None:
        return 1
    asked = _parse(request)
    launched = os.environ.get("WORLD_SIZE")
    if launched is not None:
        if asked is not None and asked != int(launched):
            raise UserError(f"--nproc {asked}: this process is already one of torchrun's "
                            f"{launched} ranks (leave --nproc out under torchrun)")  # fmt: skip
        return 1
    if asked is None:
        return _largest_divisor(ims_per_batch, _available(device))
    gpus = _gpus(device)
    if gpus and asked > gpus:
        raise UserError(f"--nproc {asked}: one rank per GPU, and this machine has {gpus} "
                        "(device: cpu trains on the CPU)")  # fmt: skip
    if ims_per_batch % asked:
        raise UserError(f"--nproc {asked}: solver.ims_per_batch ({ims_per_batch}) is the global "
                        "batch and must be divisible by the number of processes")  # fmt: skip
    return asked


def _parse(request: str) -> int | None:
    if request == "auto":
        return None
    try:
        value = int(request)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"--nproc: expected auto or a whole number >= 1, got {request!r}")
    return value


def _gpus(device: str) -> int:
    """The GPUs the ranks would take (``device`` auto or cuda, where CUDA is there), else 0."""
    return torch.cuda.device_count() if device != "cpu" and torch.cuda.is_available() else 0


def _available(device: str) -> int:
    """GPUs, else the cores other processes leave idle."""
    return _gpus(device) or threads.free_cores()


def _largest_divisor(total: int, most: int) -> int:
    return max(d for d in range(1, max(1, min(total, most)) + 1) if total % d == 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_environment(rank: int, nproc: int, port: int) -> dict[str, str]:
    """The variables torchrun would set for ``rank`` of ``nproc`` on one machine, and the
    rank's thread count (``cores // nproc``) unless the user chose one."""
    env = {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    }  # fmt: skip
    if not any(os.environ.get(k) for k in threads.USER_SETTINGS):
        env["OMP_NUM_THREADS"] = str(max(1, threads.usable_cores() // nproc))
    return env


def launch(command: Sequence[str], nproc: int) -> int:
    """Run ``command`` as ``nproc`` ranks and wait for all of them.

    Args:
        command: the whole command line of one rank, e.g. ``[python, -m, tools.cli, train,
            ...]``; every rank runs the same one.
        nproc: ranks to start (>= 2).

    Returns:
        0 when every rank succeeded; otherwise the exit code of the rank that ended first
        with a non-zero one: 130 after a stop (every rank saved its checkpoint), the error's
        code when a rank failed (the others were then stopped).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="resdet-ranks-") as held, ExitStack() as files:
        logs = [files.enter_context(open(os.path.join(held, f"rank{r}.stderr"), "wb"))
                for r in range(1, nproc)]  # fmt: skip
        procs = [_start(command, r, nproc, port, None if r == 0 else logs[r - 1])
                 for r in range(nproc)]  # fmt: skip
        previous = {s: signal.signal(s, _forwarder(procs)) for s in STOP_SIGNALS}
        try:
            codes, code = _wait(procs)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        _show_their_own_failures(codes, held)
    return code


def _start(
    command: Sequence[str], rank: int, nproc: int, port: int, log: IO[bytes] | None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **rank_environment(rank, nproc, port)}
    return subprocess.Popen(list(command), env=env, stderr=log, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies (Linux; elsewhere nothing)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _forwarder(procs: list[subprocess.Popen[bytes]]) -> Callable[[int, FrameType | None], None]:
    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    return forward


def _wait(procs: list[subprocess.Popen[bytes]], poll_s: float = 0.1) -> tuple[list[int], int]:
    """Every rank's exit code (as a shell reports it), and the launcher's: the first non-zero
    one in the order the ranks ended (0 if none). Once one rank has failed, the rest get
    ``GRACE_S`` to end on their own (a peer's death breaks their next collective), then one
    SIGTERM (a checkpoint), then after ``GRACE_S`` more, SIGKILL."""
    first = 0
    failed_at: float | None = None
    terminated = False
    while True:
        ended = [_as_shell_code(c) for p in procs if (c := p.poll()) is not None]
        if not first and any(ended):
            first, failed_at = next(c for c in ended if c), time.monotonic()
        if len(ended) == len(procs):
            return [_as_shell_code(p.returncode) for p in procs], first
        waited = 0.0 if failed_at is None else time.monotonic() - failed_at
        running = [p for p in procs if p.returncode is None]
        if waited > 2 * GRACE_S:
            for proc in running:
                proc.kill()
        elif waited > GRACE_S and not terminated:
            for proc in running:
                proc.terminate()
            terminated = True
        time.sleep(poll_s)


def _as_shell_code(code: int) -> int:
    """Popen's -N for a rank killed by signal N, as a shell reports it: 128 + N."""
    return 128 - code if code < 0 else code


def _show_their_own_failures(codes: list[int], held: str) -> None:
    """The last lines of each failed rank past 0 (not stopped: 130), as ``[rank N] line``,
    unless rank 0 failed with the same code and the rank's last line is resdet's one-line
    error, which rank 0 printed too."""
    for rank, code in enumerate(codes[1:], start=1):
        if code in (0, 130):
            continue
        with open(os.path.join(held, f"rank{rank}.stderr"), "rb") as f:
            lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
        if code == codes[0] and lines and lines[-1].startswith("resdet "):
            continue
        for line in lines[-SHOWN_LINES:]:
            print(f"[rank {rank}] {line}", file=sys.stderr)
