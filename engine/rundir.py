"""A run directory is owned: by one run (no silent overwrite) and one process at a time.

:func:`claim_run_dir` is the first thing a training run does with its ``output_dir``:

* a folder that already holds a run (its config, metrics, checkpoints or final weights) is
  refused unless the run continues it (``--resume``) or starts over (``--restart``, which
  moves the old files into ``previous/<UTC time>/`` inside the folder; nothing is deleted);
* ``.lock`` (pid and host of the owner) keeps a second process out; a lock whose process is
  gone (a killed run on this host) is recognised as stale and taken over with a warning;
* temporary files left by a process killed while writing (``.*.tmp``) are removed.

:func:`claim_eval_dir` is what an evaluation (``resdet eval``, ``pretrain --eval-only``) does
with its ``output_dir``: it respects and holds the same lock, and never replaces results that
are there (they stay; the new ones go to ``eval/<UTC time>/`` inside the folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import DataWarning, UserError
from engine.runfolder import CONFIG_FILE, EVAL_RESULTS, METRICS_FILE, MODEL_FINAL

LOCK = ".lock"
RUN_FILES = (
    CONFIG_FILE,
    METRICS_FILE,
    "last_checkpoint",
    MODEL_FINAL,
    EVAL_RESULTS,
    "backbone.pth",
    "coco_results.json",
    "coco_ground_truth.json",
    "pr_curves.json",
    "pr_curves.png",
    "voc_results",
    "eval",  # later evaluations' results (claim_eval_dir)
    "tb",
)


def run_files(out: Path) -> list[Path]:
    """The files of an earlier run in ``out`` (sorted by name)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    found += out.glob("checkpoint_*.pth*")
    return sorted(found)


@contextmanager
def claim_run_dir(out: Path, resume: bool, restart: bool, main: bool = True) -> Iterator[None]:
    """Own ``out`` for the duration of the block (see the module docstring).

    Args:
        out: the run's ``output_dir``.
        resume: the run continues what is there.
        restart: move what is there aside and start over.
        main: this process writes (rank 0); the others only check.

    Raises:
        UserError: ``out`` is a file or not writable, holds another run (neither flag), or
            another live process holds its lock.
    """
    if resume and restart:
        raise UserError("--resume continues a run and --restart starts it over: pick one")
    _check_folder(out)
    if not main:  # rank 0 decides (the others would race with its lock and its first files)
        yield
        return
    _check_lock(out / LOCK)
    earlier = run_files(out)
    if earlier and not (resume or restart):
        names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
        raise UserError(
            f"output_dir {out} holds a run ({names}): --resume continues it, --restart moves it "
            f"to {out}/previous/ and starts over, or choose another output_dir"
        )
    if earlier and restart:
        _move_aside(out, earlier)
    _remove_temp_files(out)
    lock = _take_lock(out / LOCK)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


EVAL_FILES = (
    EVAL_RESULTS,
    "coco_results.json",
    "coco_ground_truth.json",
    "pr_curves.json",
    "pr_curves.png",
    "voc_results",
)


@contextmanager
def claim_eval_dir(out: Path, main: bool = True) -> Iterator[Path]:
    """Hold ``out`` for an evaluation and give the folder its results go to: ``out`` itself
    when it holds no results yet, else a new ``out/eval/<UTC time>/`` (the results there,
    a training run's or an earlier evaluation's, are kept). Other ranks (``main`` False)
    only check ``out`` and get it back (they write nothing).

    Raises:
        UserError: ``out`` is a file or not writable, or a live process (a run training
            there, another evaluation) holds its lock.
    """
    with claim_run_dir(out, resume=True, restart=False, main=main):
        yield _new_results_folder(out) if main else out


def _new_results_folder(out: Path) -> Path:
    """``out``, or when it holds evaluation results, a new ``out/eval/<UTC time>[-n]/``."""
    if not any((out / name).exists() for name in EVAL_FILES):
        return out
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        folder = out / "eval" / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue  # an evaluation earlier in the same second
        except OSError as exc:
            raise UserError(f"{folder}: cannot create it ({exc.strerror or exc})") from None
    raise UserError(f"{out / 'eval'}: no free folder name for {stamp}")


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} is a file; expected a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output_dir {out}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"output_dir {out} is not writable")


def _check_lock(lock: Path) -> None:
    try:
        pid_text, host = lock.read_text().split()[:2]
        pid = int(pid_text)
    except FileNotFoundError:
        return
    except (ValueError, OSError):
        pid, host = -1, ""  # a torn lock file: its writer died while writing it
    if host == socket.gethostname() and pid > 0 and _alive(pid):
        raise UserError(
            f"output_dir {lock.parent} is in use by process {pid} on {host} ({lock}); wait for "
            "it to finish or choose another output_dir"
        )
    if host and host != socket.gethostname():
        raise UserError(
            f"output_dir {lock.parent} is locked by process {pid} on {host} ({lock}); if that "
            "run is gone, remove the lock file"
        )
    warnings.warn(f"{lock}: stale lock of process {pid} (not running); taking it over",
                  DataWarning, stacklevel=3)  # fmt: skip
    lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _take_lock(lock: Path) -> Path:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise UserError(f"output_dir {lock.parent} was just locked by another process") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    return lock


def _move_aside(out: Path, earlier: list[Path]) -> None:
    folder = out / "previous" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder.mkdir(parents=True, exist_ok=True)
    for path in earlier:
        shutil.move(str(path), str(folder / path.name))
    warnings.warn(f"--restart: the earlier run's files were moved to {folder}", DataWarning,
                  stacklevel=4)  # fmt: skip


def _remove_temp_files(out: Path) -> None:
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
