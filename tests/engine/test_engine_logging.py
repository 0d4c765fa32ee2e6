"""metrics.jsonl lines (window means, ETA, extras), resume truncation, TensorBoard fallback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.metrics import MetricsLogger


def _lines(path: Path) -> list[dict]:
    return [json.loads(s) for s in (path / "metrics.jsonl").read_text().splitlines()]


def test_window_means_eta_and_extras(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, max_iter=10, progress=False)
    log.put({"loss": 1.0, "time": 0.5})
    log.put({"loss": 3.0, "time": 1.5})
    line = log.write(2, {"num_skipped_images": 4})
    assert line == {
        "iter": 2,
        "loss": 2.0,
        "time": 1.0,
        "eta_seconds": 8.0,
        "num_skipped_images": 4,
    }
    log.put({"loss": 5.0})
    log.write(3)
    log.close()
    assert _lines(tmp_path) == [line, {"iter": 3, "loss": 5.0}]  # the window was reset


def test_resume_drops_lines_after_the_checkpoint(tmp_path: Path) -> None:
    rows = [{"iter": i, "loss": float(i)} for i in (2, 4, 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"iter": 8, "lo'  # torn last line
    (tmp_path / "metrics.jsonl").write_text(text)
    MetricsLogger(tmp_path, max_iter=10, start_iter=4, progress=False).close()
    assert _lines(tmp_path) == rows[:2]
    MetricsLogger(tmp_path, max_iter=10, start_iter=0, progress=False).close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_disabled_rank_writes_nothing(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path / "r1", max_iter=4, enabled=False, tensorboard=True)
    log.put({"loss": 1.0})
    assert log.write(1) == {"iter": 1, "loss": 1.0}
    log.close()
    assert not (tmp_path / "r1").exists()


def test_tensorboard_events_or_one_warning(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    log = MetricsLogger(tmp_path / "tb_on", max_iter=4, tensorboard=True, progress=False)
    log.put({"loss": 1.0})
    log.write(1)
    log.close()
    assert list((tmp_path / "tb_on" / "tb").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb_on" / "tb")).Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0)]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.warns(UserWarning, match="TensorBoard is not installed"):
        log = MetricsLogger(tmp_path / "tb_off", max_iter=4, tensorboard=True, progress=False)
    log.put({"loss": 1.0})
    log.write(1)
    assert _lines(tmp_path / "tb_off") == [{"iter": 1, "loss": 1.0}]


def test_progress_line_for_a_log_file() -> None:
    from engine.metrics import progress_line

    line = {"iter": 40, "loss_cls": 0.4561, "total_loss": 1.234, "lr": 0.02, "time": 0.714,
            "data_time": 0.01, "eta_seconds": 1391.0, "num_skipped_images": 0}  # fmt: skip
    assert progress_line(line, 2000) == (
        "iter 40/2000  loss_cls 0.456  total_loss 1.23  lr 0.02  0.71 s/it  eta 0:23:11"
    )
    evaluation = {"iter": 50, "eval": {"voc07": {"mAP": 0.8481, "per_class": {"a": 0.9}},
                                       "num_images": 80}}  # fmt: skip
    assert progress_line(evaluation, 50) == "iter 50/50  eval: voc07.mAP 0.848"


def test_log_lines_go_to_stderr_when_it_is_not_a_terminal(tmp_path, capsys) -> None:
    logger = MetricsLogger(tmp_path, max_iter=4)
    logger.put({"total_loss": 1.0, "time": 0.5, "lr": 0.1})
    logger.write(2)
    logger.close()
    assert capsys.readouterr().err.startswith("iter 2/4  total_loss 1  lr 0.1  0.50 s/it")


def test_progress_off_a_terminal_prints_a_line_per_period_and_the_last(capsys) -> None:
    from engine.metrics import Progress

    progress = Progress(5, "eval", every_seconds=3600.0)  # stderr is captured: not a tty
    for _ in range(5):
        progress.update()
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval 5/5 images  ")  # only the end
    assert lines[0].endswith("eta 0:00:00")
    # 120 of 4952 images in 37.2 s: 0.31 s/image, 4832 left -> 1497.9 s, shown as 0:24:57
    assert progress.line(37.2).startswith("eval 5/5")
    progress.done = 120
    progress.total = 4952
    assert progress.line(37.2) == "eval 120/4952 images  0.31 s/image  eta 0:24:57"
    quiet = Progress(3, "eval", enabled=False, every_seconds=0.0)
    quiet.update(3)
    assert capsys.readouterr().err == ""  # ranks other than 0 show nothing


def test_progress_every_period(capsys) -> None:
    from engine.metrics import Progress

    progress = Progress(3, "infer", every_seconds=0.0)
    for _ in range(3):
        progress.update()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"infer {k}/3 images" for k in (1, 2, 3)]
