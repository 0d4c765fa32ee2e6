"""engine.threads: the thread count follows the cores other processes leave idle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import threads
from engine.threads import CpuTimes, LoadFollower, children_cpu, read_cpu_times, threads_for

HZ = os.sysconf("SC_CLK_TCK")


def write_stat(path: Path, busy_seconds: float, idle_seconds: float = 1000.0) -> None:
    """A /proc/stat whose first line holds ``busy_seconds`` in user time."""
    user, idle = int(busy_seconds * HZ), int(idle_seconds * HZ)
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\n")


@pytest.mark.parametrize(
    ("machine", "own", "expected"),
    [
        (0.2, 0.1, 2),  # quiet: others use 0.1 of a core
        (2.0, 1.0, 1),  # one busy process beside a one-thread run
        (2.0, 1.33, 1),  # others at 0.67 of a core: 1.33 free cores round to 1
        (2.0, 0.0, 1),  # others fill both cores: still one thread
        (1.4, 1.0, 2),  # others at 0.4 of a core: it is not taken
    ],
)
def test_threads_for_counts_the_cores_others_leave(
    machine: float, own: float, expected: int
) -> None:
    before = CpuTimes(machine=100.0, own={1: 5.0}, wall=10.0)
    after = CpuTimes(machine=100.0 + machine, own={1: 5.0 + own}, wall=11.0)
    assert threads_for(before, after, cores=2) == expected


def test_threads_for_on_four_cores_and_a_zero_window() -> None:
    before = CpuTimes(machine=0.0, own={1: 0.0}, wall=0.0)
    # two seconds of wall time; others used 3 core-seconds: 1.5 cores -> 4 - 1.5 = 2.5 -> 3
    assert threads_for(before, CpuTimes(machine=5.0, own={1: 2.0}, wall=2.0), cores=4) == 3
    assert threads_for(before, CpuTimes(machine=5.0, own={1: 2.0}, wall=0.0), cores=4) == 4


def test_the_families_children_are_its_own_work() -> None:
    """A loader worker's CPU is this run's: 2 cores, the main process 1.0 core and its worker
    (a child that appeared in the window, counted from 0) 0.8 -> nobody else: 2 threads.
    A child that ended in the window drops out of the sum (its last window counts as others')."""
    before = CpuTimes(machine=50.0, own={1: 10.0, 7: 3.0}, wall=0.0)
    after = CpuTimes(machine=51.8, own={1: 11.0, 8: 0.8}, wall=1.0)
    assert threads_for(before, after, cores=2) == 2
    alone = CpuTimes(machine=51.8, own={1: 11.0}, wall=1.0)  # the worker's 0.8 is others'
    assert threads_for(before, alone, cores=2) == 1


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc")
def test_children_cpu_reads_a_live_child() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        children = children_cpu(os.getpid(), ticks=HZ)
        assert spinner.pid in children
        assert 0.1 < children[spinner.pid] < 5.0
    finally:
        spinner.kill()
        spinner.wait()


def test_read_cpu_times_sums_the_busy_fields(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    fields = [10, 20, 30, 1000, 40, 50, 60, 70, 0, 0]  # user nice system idle iowait irq ...
    stat.write_text("cpu  " + " ".join(str(v * HZ) for v in fields) + "\n")
    times = read_cpu_times(stat)
    assert times is not None
    assert times.machine == pytest.approx(10 + 20 + 30 + 50 + 60 + 70)  # no idle, no iowait
    assert os.getpid() in times.own
    assert read_cpu_times(tmp_path / "absent") is None
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert read_cpu_times(tmp_path / "odd") is None


def test_follower_sets_the_thread_count_from_the_window(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, busy_seconds=100.0)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        follower = LoadFollower(cores=2, period=60.0, first=0.0, stat=stat)
        time.sleep(0.2)
        # the whole machine was busy for 2 cores x the window while this process slept
        wall = time.monotonic() - follower.last.wall  # type: ignore[union-attr]
        write_stat(stat, busy_seconds=100.0 + 2 * wall + 0.05)
        assert follower.adjust() == 1
        assert torch.get_num_threads() == 1
        assert follower.adjust() is None  # the next window is 60 s away
    finally:
        torch.set_num_threads(saved)


def test_follow_load_leaves_the_users_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.follow_load() is False
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        assert threads.follow_load() is (read_cpu_times() is not None)
    finally:
        threads.stop_following()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_a_busy_process_beside_takes_one_thread_away() -> None:
    """A real busy process (a Python spin loop, not a child of this one) on this machine: the
    follower, on a 2-core view of it, counts that process's core as taken."""
    spinner = int(
        subprocess.run(
            ["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    try:
        time.sleep(0.3)
        before = read_cpu_times()
        time.sleep(1.0)
        after = read_cpu_times()
        assert before is not None and after is not None
        assert spinner not in after.own  # another process's work
        assert threads_for(before, after, cores=2) == 1
    finally:
        os.kill(spinner, signal.SIGKILL)


def test_deterministic_mode_keeps_the_thread_count(tmp_path: Path) -> None:
    """A bit-exact resume needs one thread count: in deterministic mode nothing changes, and
    after `following_load` the count is what it was."""
    saved = torch.get_num_threads()
    stat = tmp_path / "stat"
    write_stat(stat, busy_seconds=100.0)
    try:
        torch.set_num_threads(2)
        with threads.following_load():
            threads._follower = LoadFollower(cores=2, period=60.0, first=0.0, stat=stat)
            write_stat(stat, busy_seconds=1e6)  # others fill the machine
            torch.use_deterministic_algorithms(True)
            try:
                threads.adjust()
                assert torch.get_num_threads() == 2
            finally:
                torch.use_deterministic_algorithms(False)
            threads.adjust()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2 and threads._follower is None
    finally:
        torch.set_num_threads(saved)
