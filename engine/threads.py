"""Intra-op threads that follow the machine's load: one per core that other processes leave idle.

PyTorch starts one OpenMP thread per core. On a machine where another process keeps a core
busy, those threads wait for each other at every parallel region behind the one that lost
its core: measured on a 2-core Xeon (`benchmarks/contention.py`, docs/PERFORMANCE.md,
"Threads that follow the load"), the quickstart detector's training fell from 21.9 img/s to
7.5 with torch's two threads beside one busy process, and kept 16.8 when following the load.
So the commands that compute (``train``, ``pretrain``, ``eval``, ``infer``) run inside
:func:`following_load`, and the loops call :func:`adjust` at every step: every ``period``
seconds it reads the CPU time of the whole machine (``/proc/stat``) and of this process and
its children (the DataLoader workers, this run's own work), and sets ``torch.set_num_threads``
to the cores left over by the *other* processes (a core counts as taken when others use more
than half of it), at least 1 and at most the cores this process may run on.

The user's choice wins: with ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in the environment,
nothing is changed. Without ``/proc/stat`` (macOS, Windows) nothing is changed either, nor in
deterministic mode (``deterministic: true``, ``torch.use_deterministic_algorithms``): the
thread count changes the order of float sums, and a bit-exact resume needs the same one.
Library use (``Predictor`` in a user's program) is untouched unless the program calls
:func:`follow_load` itself.

``adjust`` must run on the thread that runs the model: OpenMP's thread count is a setting of
the calling thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

USER_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
PROC_STAT = Path("/proc/stat")
PROC = Path("/proc")


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU used so far: by the whole machine (all cores) and by this process's
    family (``own``: pid -> seconds of this process and of each of its children, e.g. the
    DataLoader workers, which are this run's work, not another process's)."""

    machine: float
    own: dict[int, float]
    wall: float


def read_cpu_times(stat: Path = PROC_STAT, proc: Path = PROC) -> CpuTimes | None:
    """The machine's busy CPU seconds (``/proc/stat``'s first line: user, nice, system, irq,
    softirq, steal) and this process family's; None without ``/proc/stat``."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (user + nice + system + irq + softirq + steal) / ticks
    own = {os.getpid(): time.process_time(), **children_cpu(os.getpid(), proc, ticks)}
    return CpuTimes(machine=busy, own=own, wall=time.monotonic())


def children_cpu(parent: int, proc: Path = PROC, ticks: int = 100) -> dict[int, float]:
    """pid -> CPU seconds (user + system) of each live child of ``parent`` (``/proc/<pid>/stat``:
    field 4 the parent, 14 and 15 the times in clock ticks)."""
    out: dict[int, float] = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = text.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
        if len(fields) > 12 and int(fields[1]) == parent:
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def threads_for(before: CpuTimes, after: CpuTimes, cores: int) -> int:
    """Threads to use: the cores not taken by other processes between two readings.

    Others' load in cores = (machine busy - this family's busy) / wall, where the family is
    this process and its children (a child that appeared meanwhile counts from 0; one that
    ended is not counted); a core counts as taken when others use more than half of it.
    Example: 2 cores, others at 1.0 -> 1 thread; at 0.3 -> 2.
    """
    wall = after.wall - before.wall
    if wall <= 0:
        return cores
    own = sum(seconds - before.own.get(pid, 0.0) for pid, seconds in after.own.items())
    others = ((after.machine - before.machine) - own) / wall
    free = cores - max(0.0, others)
    return max(1, min(cores, int(free + 0.5)))


class LoadFollower:
    """Re-chooses ``torch.set_num_threads`` from the load every ``period`` seconds."""

    def __init__(self, cores: int, period: float = 10.0, first: float = 0.5,
                 stat: Path = PROC_STAT) -> None:  # fmt: skip
        self.cores = cores
        self.period = period
        self.stat = stat
        self.last = read_cpu_times(stat)
        self.due = time.monotonic() + first  # the first decision after a short first window

    def adjust(self) -> int | None:
        """If a window has passed: set and return the thread count (None: not due, or no
        ``/proc/stat``)."""
        now = time.monotonic()
        if self.last is None or now < self.due:
            return None
        current = read_cpu_times(self.stat)
        if current is None:
            return None
        threads = threads_for(self.last, current, self.cores)
        self.last, self.due = current, now + self.period
        if threads != torch.get_num_threads():
            logger.debug("threads: %d -> %d (load of other processes)",
                         torch.get_num_threads(), threads)  # fmt: skip
            torch.set_num_threads(threads)
        return threads


_follower: LoadFollower | None = None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_cores(window: float = 0.5) -> int:
    """The cores other processes leave idle over ``window`` seconds (:func:`threads_for`), at
    least 1; all usable cores without ``/proc/stat``."""
    cores = usable_cores()
    before = read_cpu_times()
    if before is None:
        return cores
    time.sleep(window)
    after = read_cpu_times()
    return cores if after is None else threads_for(before, after, cores)


def follow_load(period: float = 10.0) -> bool:
    """Let :func:`adjust` choose the thread count from now on; returns whether it will (not
    when the user set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` or without ``/proc/stat``)."""
    global _follower
    _follower = None
    if any(os.environ.get(name) for name in USER_SETTINGS):
        return False
    follower = LoadFollower(usable_cores(), period)
    if follower.last is None:  # no /proc/stat
        return False
    _follower = follower
    return True


def stop_following() -> None:
    """Leave the thread count as it is from now on."""
    global _follower
    _follower = None


def adjust() -> None:
    """Called by the loops at every step; cheap when no window has passed or nothing follows.
    Nothing changes in deterministic mode."""
    if _follower is not None and not torch.are_deterministic_algorithms_enabled():
        _follower.adjust()


@contextmanager
def following_load(period: float = 10.0) -> Iterator[bool]:
    """:func:`follow_load` within the block; after it, nothing follows and torch's thread
    count is what it was before (a command run in-process leaves nothing behind). Yields
    whether the load is followed."""
    before = torch.get_num_threads()
    try:
        yield follow_load(period)
    finally:
        stop_following()
        torch.set_num_threads(before)
