"""`resdet plot`: reading metrics.jsonl, the Fig. 6 split and series, the PNG, the errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from tool_helpers import ROOT

from engine.errors import UserError
from tools import plot
from tools.cli import main


def train_line(iteration: int, error: float, **extra: float) -> dict:
    return {"iter": iteration, "loss_cls": 3 * error, "train_error": error, "lr": 0.1, **extra}


def eval_line(iteration: int, top1: float, mode: str = "center") -> dict:
    result = {"top1_error": top1, "top5_error": top1 / 4, "images": 100, "skipped_images": 0}
    return {"iter": iteration, "eval": {mode: result}}


def make_run(root: Path, folder: str, lines: list, backbone: str | None = None) -> Path:
    """A run dir with metrics.jsonl (dicts become JSON lines, str lines are written as is)."""
    run_dir = root / folder
    run_dir.mkdir(parents=True)
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    (run_dir / "metrics.jsonl").write_text("\n".join(text) + "\n")
    if backbone is not None:
        (run_dir / "config.yaml").write_text(f"model:\n  backbone:\n    name: {backbone}\n")
    return run_dir


def cifar_run(root: Path, backbone: str, scale: float = 1.0) -> Path:
    lines = [train_line(i, scale * 0.9 / (1 + i / 100)) for i in range(50, 1001, 50)]
    lines += [eval_line(i, scale * 0.95 / (1 + i / 150)) for i in (250, 500, 750, 1000)]
    return make_run(root, f"run_{backbone}", lines, backbone)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_last_line_per_iteration_wins_and_a_torn_last_line_is_skipped(tmp_path: Path):
    lines = [
        train_line(50, 0.7),
        train_line(100, 0.6),
        eval_line(100, 0.5),
        train_line(100, 0.4),  # resumed: iteration 100 again
        eval_line(100, 0.3),
        train_line(150, 0.2),
        '{"iter": 200, "loss_cls": 0.',  # killed mid-write
    ]
    log = plot.read_log(make_run(tmp_path, "r", lines, "resnet20"))
    assert log.name == "resnet20"
    assert log.series("train_error") == ([50, 100, 150], [0.7, 0.4, 0.2])
    assert log.series("eval.center.top1_error") == ([100], [0.3])
    assert log.train[100]["loss_cls"] == pytest.approx(1.2)
    assert 200 not in log.train


def test_malformed_lines_name_file_and_line_number(tmp_path: Path):
    run_dir = make_run(tmp_path, "r", [train_line(50, 0.7), "{not json", train_line(100, 0.6)])
    with pytest.raises(UserError) as info:
        plot.read_log(run_dir)
    assert str(info.value) == (
        f"{run_dir / 'metrics.jsonl'}:2: malformed line (expected one JSON object)"
    )
    run_dir = make_run(tmp_path, "s", [train_line(50, 0.7), {"loss_cls": 1.0}, "[1, 2]"])
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: expected a JSON object with an int"):
        plot.read_log(run_dir)


def test_missing_inputs(tmp_path: Path):
    with pytest.raises(UserError, match="nope: run directory not found"):
        plot.read_log(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty/metrics\.jsonl: not found"):
        plot.read_log(tmp_path / "empty")
    make_run(tmp_path, "blank", [])
    with pytest.raises(UserError, match="no metric lines"):
        plot.read_log(tmp_path / "blank")


def test_label_is_the_backbone_name_else_the_folder(tmp_path: Path):
    a = plot.read_log(make_run(tmp_path, "a/run", [train_line(50, 0.7)], "resnet56"))
    b = plot.read_log(make_run(tmp_path, "b/run", [train_line(50, 0.7)], "resnet56"))
    c = plot.read_log(make_run(tmp_path, "c/my_run", [train_line(50, 0.7)]))
    assert c.name == "my_run"
    assert plot.labels([a, c]) == ["resnet56", "my_run"]
    assert plot.labels([a, b]) == [f"resnet56 ({a.path})", f"resnet56 ({b.path})"]


def test_default_metrics_of_a_detection_run(tmp_path: Path):
    losses = {"loss_rpn_cls": 0.3, "loss_rpn_loc": 0.1, "loss_cls": 0.5, "loss_box_reg": 0.2}
    evals = {
        "voc07": {"mAP": 0.84, "per_class": {"circle": 0.9, "square": 0.78}},
        "coco": {"AP": 0.67, "AP50": 0.85},
        "num_images": 80,
        "inference_seconds": 3.1,
    }
    lines = [{"iter": 20, **losses, "total_loss": 1.1, "lr": 0.01, "time": 0.5}]
    log = plot.read_log(make_run(tmp_path, "det", [*lines, {"iter": 40, "eval": evals}]))
    assert plot.default_metrics([log]) == [
        *losses, "lr", "eval.voc07.mAP", "eval.coco.AP", "eval.coco.AP50",
    ]  # fmt: skip
    assert log.series("eval.voc07.per_class.circle") == ([40], [0.9])
    assert plot.pick_metrics([log], ["total_loss", "eval.num_images"]) == [
        "total_loss", "eval.num_images",
    ]  # fmt: skip


def test_fig6_split_and_series_in_percent(tmp_path: Path):
    runs = [plot.read_log(cifar_run(tmp_path, name)) for name in ("plain20", "resnet20", "plain56")]
    plain, resnets = plot.split_fig6(runs)
    assert [r.name for r in plain] == ["plain20", "plain56"]
    assert [r.name for r in resnets] == ["resnet20"]
    assert [plot.network_name(r.name) for r in runs] == ["plain-20", "ResNet-20", "plain-56"]
    (train_x, train_y), (test_x, test_y) = plot.fig6_series(runs[0])
    assert train_x[:2] == [50, 100] and train_y[:2] == pytest.approx([60.0, 45.0])
    assert test_x == [250, 500, 750, 1000]
    assert test_y[-1] == pytest.approx(100 * 0.95 / (1 + 1000 / 150))


def test_fig6_test_error_falls_back_to_the_first_eval_mode(tmp_path: Path):
    modes = {**eval_line(50, 0.4, "10crop")["eval"], **eval_line(50, 0.45, "multiscale")["eval"]}
    lines = [train_line(50, 0.5), {"iter": 50, "eval": modes}]
    log = plot.read_log(make_run(tmp_path, "r", lines, "resnet34"))
    assert plot.eval_error_metric(log) == "eval.10crop.top1_error"
    assert plot.fig6_series(log)[1] == ([50], [pytest.approx(40.0)])


def test_fig6_png_both_sides_and_one_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runs = [str(cifar_run(tmp_path, name, s)) for name, s in [("plain20", 1), ("resnet56", 0.8)]]
    monkeypatch.chdir(tmp_path)
    assert main(["plot", *runs, "--layout", "fig6"]) == 0
    image = matplotlib.image.imread(tmp_path / "fig6.png")
    assert image.shape[:2] == (450, 1200)
    assert image[..., :3].std() > 0.05  # something was drawn
    out = tmp_path / "figs" / "resnets.png"
    assert main(["plot", runs[1], "--layout", "fig6", "--out", str(out)]) == 0
    assert png_size(out) == (600, 450)
    assert sorted(p.name for p in out.parent.iterdir()) == ["resnets.png"]  # no temp file left


def test_fig6_rejects_other_backbones(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run_dir = cifar_run(tmp_path, "vgg16")
    assert main(["plot", str(run_dir), "--layout", "fig6"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backbone 'vgg16' is not a plain* or resnet* network" in err


def test_curves_png_goes_to_the_first_run_dir(tmp_path: Path):
    first, second = cifar_run(tmp_path, "resnet20"), cifar_run(tmp_path, "resnet56", 0.8)
    args = ["plot", str(first), str(second), "--metrics", "loss_cls", "eval.center.top1_error"]
    assert main(args) == 0
    assert png_size(first / "curves.png") == (800, 350)  # two 4x3 in panels + legend, 100 dpi
    assert not (second / "curves.png").exists()


def test_unknown_metric_through_the_console_script(tmp_path: Path):
    run_dir = cifar_run(tmp_path, "resnet20")
    command = [sys.executable, "-m", "tools.cli", "plot", str(run_dir), "--metrics", "los_cls"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("resdet plot: error: --metrics: no run has 'los_cls'; ")
    assert "available: loss_cls, train_error, lr, eval.center.top1_error" in result.stderr
    assert not (run_dir / "curves.png").exists()
