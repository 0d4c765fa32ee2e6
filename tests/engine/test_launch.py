"""engine.launch: how many ranks, their environment, exit codes, signals, messages.

The ranks here are small Python programs, so each case reads in isolation; a real two-rank
`resdet train --nproc 2` (training, a stop, the resume) is in tests/tools/test_train_eval.py
and tests/tools/test_signals.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import launch
from engine.errors import UserError


@pytest.fixture(autouse=True)
def not_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a plain process (no rank's variables, no thread count set)."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_number_is_taken_as_given_when_it_divides_the_batch() -> None:
    assert launch.ranks_to_start(None, 4, "cpu") == 1  # no --nproc: this process
    assert launch.ranks_to_start("1", 4, "cpu") == 1
    assert launch.ranks_to_start("2", 8, "cpu") == 2
    with pytest.raises(UserError, match=r"--nproc 3: solver.ims_per_batch \(8\) is the global"):
        launch.ranks_to_start("3", 8, "cpu")


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5", ""])
def test_anything_else_is_a_one_line_error(bad: str) -> None:
    expected = f"--nproc: expected auto or a whole number >= 1, got {bad!r}"
    with pytest.raises(UserError, match=expected):
        launch.ranks_to_start(bad, 8, "cpu")


@pytest.mark.parametrize(
    ("idle", "batch", "expected"),
    [(2, 8, 2), (1, 8, 1), (3, 8, 2), (4, 6, 3), (5, 7, 1), (16, 4, 4)],
)
def test_auto_takes_the_idle_cores_that_divide_the_batch(
    monkeypatch: pytest.MonkeyPatch, idle: int, batch: int, expected: int
) -> None:
    monkeypatch.setattr(launch, "_available", lambda device: idle)
    assert launch.ranks_to_start("auto", batch, "cpu") == expected


def test_on_cuda_one_rank_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "_gpus", lambda device: 2)
    assert launch.ranks_to_start("auto", 16, "cuda") == 2
    assert launch.ranks_to_start("2", 16, "auto") == 2
    with pytest.raises(UserError, match="--nproc 4: one rank per GPU, and this machine has 2"):
        launch.ranks_to_start("4", 16, "cuda")


def test_a_rank_of_torchrun_runs_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.ranks_to_start(None, 8, "cpu") == 1  # no --nproc
    assert launch.ranks_to_start("auto", 8, "cpu") == 1
    assert launch.ranks_to_start("2", 8, "cpu") == 1  # what the launcher's own ranks see
    with pytest.raises(UserError, match="already one of torchrun's 2 ranks"):
        launch.ranks_to_start("4", 8, "cpu")


def test_each_rank_has_torchruns_variables_and_a_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launch.threads, "usable_cores", lambda: 8)
    env = launch.rank_environment(1, 2, 29500)
    assert env == {
        "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "OMP_NUM_THREADS": "4",
    }  # fmt: skip
    assert launch.rank_environment(0, 3, 1)["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stays
    assert "OMP_NUM_THREADS" not in launch.rank_environment(0, 2, 1)


def test_every_rank_runs_with_its_own_rank(tmp_path: Path) -> None:
    code = (
        "import os, pathlib; e = os.environ; "
        f"pathlib.Path({str(tmp_path)!r}, 'rank' + e['RANK']).write_text("
        "e['WORLD_SIZE'] + ' ' + e['MASTER_PORT'] + ' ' + e['OMP_NUM_THREADS'])"
    )
    assert launch.launch(_python(code), 3) == 0
    written = [(tmp_path / f"rank{r}").read_text().split() for r in range(3)]
    assert {w[0] for w in written} == {"3"} and len({w[1] for w in written}) == 1


def test_a_failed_rank_is_the_exit_code_and_its_own_message_is_shown(capfd) -> None:
    code = (
        "import os, sys; r = int(os.environ['RANK'])\n"
        "if r == 1:\n    print('Traceback: rank one broke', file=sys.stderr); sys.exit(3)"
    )
    assert launch.launch(_python(code), 2) == 3
    assert "[rank 1] Traceback: rank one broke" in capfd.readouterr().err


def test_an_error_every_rank_meets_reads_once(capfd) -> None:
    line = "resdet train: error: data.train.root: not found"
    code = f"import sys; print({line!r}, file=sys.stderr); sys.exit(2)"
    assert launch.launch(_python(code), 2) == 2
    err = capfd.readouterr().err
    assert err.count("data.train.root: not found") == 1 and "[rank 1]" not in err


def test_the_others_are_stopped_after_one_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "GRACE_S", 0.3)
    code = (
        "import os, signal, sys, time; r = int(os.environ['RANK'])\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))\n"
        "sys.exit(5) if r == 1 else time.sleep(60)"
    )
    start = time.monotonic()
    assert launch.launch(_python(code), 2) == 5  # the failure, not the stop that followed it
    assert time.monotonic() - start < 30


def test_a_signal_to_the_launcher_alone_reaches_every_rank(tmp_path: Path) -> None:
    code = (
        "import os, pathlib, signal, sys, time; r = os.environ['RANK']\n"
        f"folder = pathlib.Path({str(tmp_path)!r})\n"
        "def stop(signum, frame):\n"
        "    (folder / ('stopped' + r)).write_text(signal.Signals(signum).name); sys.exit(130)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "(folder / ('ready' + r)).touch(); time.sleep(60)"
    )

    def signal_the_launcher_when_ready() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(tmp_path.glob("ready*"))) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # this process only: the ranks must get it from us

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=signal_the_launcher_when_ready, daemon=True).start()
    assert launch.launch(_python(code), 2) == 130
    assert [(tmp_path / f"stopped{r}").read_text() for r in range(2)] == ["SIGTERM"] * 2
    assert signal.getsignal(signal.SIGTERM) is before  # the launcher's handler is gone


def test_a_port_that_is_free() -> None:
    import socket

    port = launch.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it
