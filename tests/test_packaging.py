"""A non-editable install works outside the checkout: configs and benchmarks ship with it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, unpacked into a folder (dependencies: this venv's)."""
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (wheel,) = out.glob("resdet-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def resdet(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_wheel_ships_configs_and_benchmarks(installed: Path) -> None:
    assert (installed / "configs/detection/quickstart.yaml").is_file()
    assert (installed / "configs/pretrain/_cifar10.yaml").is_file()
    assert (installed / "benchmarks/data_loader.py").is_file()
    assert (installed / "engine/run.py").is_file()


@pytest.mark.slow
def test_commands_work_from_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = resdet(installed, tmp_path, "benchmark", "nope")
    assert where.returncode == 2 and "data_loader" in where.stderr  # the shipped scripts
    # the unpacked wheel, not the checkout, is what runs
    code = "import tools, configs; print(tools.__file__); print(configs.__file__)"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    files = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert all(f.startswith(str(installed)) for f in files)
    flops = resdet(installed, tmp_path, "flops", "faster_rcnn_r101_c4")  # reads a shipped config
    assert flops.returncode == 0, flops.stderr
    assert "faster_rcnn_r101_c4" in flops.stdout
    train = resdet(installed, tmp_path, "train", "--config", "configs/detection/quickstart.yaml",
                   "--set", f"data.test.root={tmp_path / 'none'}")  # fmt: skip
    # the shipped config was found and loaded; the preflight stops on the missing test data
    assert train.returncode == 2
    assert "data.test.root" in train.stderr and "none" in train.stderr
    bench = resdet(installed, tmp_path, "benchmark", "eval_speed", "--help")
    assert bench.returncode == 0 and "usage" in bench.stdout
