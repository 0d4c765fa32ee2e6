"""SIGTERM / SIGINT to a run's whole process group (what Slurm, docker, systemd and a
terminal send) while DataLoader workers run: exit 130, one line on stderr, one checkpoint,
nothing left running, and ``--resume`` ends with weights equal to an uninterrupted run's.

``resdet train`` at three kinds of moments (as its workers start, a seeded random moment of
the training, the final evaluation) and ``resdet pretrain`` at a seeded random moment, each
run in its own session (``start_new_session``) with ``data.num_workers=2``; and ``resdet train
--nproc 2`` stopped through its launcher alone (engine.launch passes the signal on).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from tool_helpers import QUICKSTART, ROOT, tiny_overrides

from tools.cli import main

TRAIN = {"solver.max_iter": 9, "solver.checkpoint_period": 3, "test.eval_period": 6,
         "data.num_workers": 2}  # fmt: skip
PROGRESS = re.compile(r"^(iter|eval) \d+/\d+ ")  # the log's lines, on stderr as in any run


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Every run on one torch thread, the reference and the subprocesses too (the thread
    count changes the float sums): on a shared 2-core machine spinning OpenMP threads make
    these runs many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stop_the_group(
    argv: list[str],
    out: Path,
    ready: str,
    delay: float,
    sig: signal.Signals,
    whole_group: bool = True,
) -> tuple[int, list[str]]:
    """Run ``resdet argv`` in its own session; when ``out/ready`` exists and ``delay`` more
    seconds have passed, send ``sig`` to its process group (or, ``whole_group=False``, to the
    ``resdet`` process alone).

    Returns:
        The exit code and the lines of stderr that are not progress lines.
    """
    command = [sys.executable, "-m", "tools.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, **pipes)
    try:
        while not (out / ready).exists():
            assert process.poll() is None, f"ended before {ready} was written"
            time.sleep(0.005)
        time.sleep(delay)
        (os.killpg if whole_group else os.kill)(process.pid, sig)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    _assert_nothing_left(process.pid)
    return process.returncode, [line for line in err.splitlines() if not PROGRESS.match(line)]


def _assert_nothing_left(group: int) -> None:
    """No process of the group (a DataLoader worker) outlives the run."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"processes of group {group} are still running after the run ended")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model_final.pth", weights_only=True)["model"]


def _assert_same_weights(out: Path, reference: Path) -> None:
    mine, theirs = _weights(out), _weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def _assert_one_checkpoint_line(line: str, out: Path) -> None:
    """A stop in the training names the checkpoint it saved, which last_checkpoint names."""
    found = re.search(r"(?:at|after) iteration (\d+)[;,].*checkpoint: (\S+)", line)
    assert found, line
    path = Path(found.group(2))
    assert path == out / f"checkpoint_{found.group(1)}.pth" and path.is_file()
    assert (out / "last_checkpoint").read_text() == f"{path.name}\n"


@pytest.fixture(scope="module")
def detection_reference(shapes_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, out, **TRAIN)]
    assert main(argv) == 0
    return out


@pytest.mark.parametrize(
    ("ready", "seed", "sig"),
    [
        ("config.yaml", None, signal.SIGINT),  # the set-up's end: the workers start
        ("checkpoint_3.pth", 1, signal.SIGTERM),  # a seeded moment of the training
    ],
)
def test_train_stopped_by_its_group_resumes_to_the_same_weights(
    detection_reference: Path,
    shapes_voc: Path,
    tmp_path: Path,
    ready: str,
    seed: int | None,
    sig: signal.Signals,
) -> None:
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, tmp_path, **TRAIN)]
    delay = 0.0 if seed is None else random.Random(seed).uniform(0.0, 1.5)
    code, lines = _stop_the_group(argv, tmp_path, ready, delay, sig)
    assert code == 130 and len(lines) == 1, lines
    assert lines[0].startswith(f"resdet train: stopped by {sig.name} "), lines
    if "while setting up" not in lines[0]:  # else nothing was trained: nothing to save
        _assert_one_checkpoint_line(lines[0], tmp_path)
    assert main([*argv, "--resume"]) == 0
    _assert_same_weights(tmp_path, detection_reference)


def test_train_stopped_during_the_final_evaluation_has_its_final_weights(
    detection_reference: Path, shapes_voc: Path, tmp_path: Path
) -> None:
    # a longer test split than the reference's (evaluation settings do not touch the
    # training), so the evaluation is still running when the signal arrives
    changes = {**TRAIN, "data.test.splits": "[trainval]"}
    argv = ["train", "--config", str(QUICKSTART), *tiny_overrides(shapes_voc, tmp_path, **changes)]
    code, lines = _stop_the_group(argv, tmp_path, "checkpoint_9.pth.sha256", 0.0, signal.SIGTERM)
    assert code == 130 and len(lines) == 1, lines
    assert lines[0] == (
        "resdet train: stopped by SIGTERM during the final evaluation after iteration 9; "
        f"checkpoint: {tmp_path / 'checkpoint_9.pth'}; the training is complete "
        f"({tmp_path / 'model_final.pth'}); --resume runs the evaluation again"
    )
    _assert_same_weights(tmp_path, detection_reference)  # written before exiting
    assert not (tmp_path / "eval_results.json").exists()
    assert main([*argv, "--resume"]) == 0  # the evaluation alone
    assert (tmp_path / "eval_results.json").is_file()
    _assert_same_weights(tmp_path, detection_reference)


def _pretrain_config(root: Path, out: Path) -> Path:
    """A 24-iteration CIFAR-style run on ``root`` (4 classes of noise), 2 workers."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 3)):
        for name in ("a", "b", "c", "d"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                cv2.imwrite(str(root / split / name / f"{i}.png"), image)
    tree = {
        "output_dir": str(out), "device": "cpu", "deterministic": True, "log_period": 4,
        "model": {"num_classes": 4, "backbone": {"name": "resnet20", "norm": "bn",
                  "freeze_at": 0, "shortcut": "A", "base_width": 4}},
        "data": {"num_workers": 2,
                 "train": {"format": "imagefolder", "root": str(root), "splits": ["train"]},
                 "test": {"format": "imagefolder", "root": str(root), "splits": ["val"]}},
        "input": {"scale_range": [32, 32], "crop_size": 32, "pad": 4, "lighting_std": 0.0,
                  "test_resize": 32, "test_modes": ["center"]},
        "solver": {"base_lr": 0.1, "ims_per_batch": 16, "max_iter": 24, "steps": [16],
                   "warmup_iters": 0, "checkpoint_period": 4},
        "test": {"eval_period": 8},
    }  # fmt: skip
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_pretrain_stopped_by_its_group_resumes_to_the_same_weights(tmp_path: Path) -> None:
    reference = _pretrain_config(tmp_path / "images", tmp_path / "uninterrupted")
    assert main(["pretrain", "--config", str(reference)]) == 0
    out = tmp_path / "stopped"
    config = _pretrain_config(tmp_path / "images", out)
    delay = random.Random(3).uniform(0.0, 0.3)
    code, lines = _stop_the_group(["pretrain", "--config", str(config)], out,
                                  "checkpoint_4.pth", delay, signal.SIGTERM)  # fmt: skip
    assert code == 130 and len(lines) == 1, lines
    assert lines[0].startswith("resdet pretrain: stopped by SIGTERM "), lines
    _assert_one_checkpoint_line(lines[0], out)
    assert main(["pretrain", "--config", str(config), "--resume"]) == 0
    _assert_same_weights(out, tmp_path / "uninterrupted")


def test_two_ranks_stopped_through_the_launcher_alone_resume_to_the_same_weights(
    shapes_voc: Path, tmp_path: Path
) -> None:
    changes = {**TRAIN, "data.num_workers": 1, "solver.max_iter": 30}  # still running at 3-4

    def argv(out: Path) -> list[str]:
        overrides = tiny_overrides(shapes_voc, out, **changes)
        return ["train", "--config", str(QUICKSTART), "--nproc", "2", *overrides]

    assert main(argv(tmp_path / "uninterrupted")) == 0
    out = tmp_path / "stopped"
    delay = random.Random(2).uniform(0.0, 0.3)
    code, lines = _stop_the_group(argv(out), out, "checkpoint_3.pth", delay, signal.SIGTERM,
                                  whole_group=False)  # fmt: skip
    assert code == 130 and len(lines) == 1, lines  # rank 0's line; rank 1's is not repeated
    assert lines[0].startswith("resdet train: stopped by SIGTERM "), lines
    _assert_one_checkpoint_line(lines[0], out)
    assert main([*argv(out), "--resume"]) == 0
    _assert_same_weights(out, tmp_path / "uninterrupted")
