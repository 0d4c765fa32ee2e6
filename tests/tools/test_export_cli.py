"""`resdet export`: the trained run's detector as ONNX, run by onnxruntime; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detection.config import load_config
from detection.export import OnnxPredictor
from detection.predictor import Predictor
from engine.images import decode_image
from tools.cli import main


def export(run: Path, out: Path, *extra: str) -> int:
    config, weights = run / "config.yaml", run / "model_final.pth"
    return main(
        ["export", "--config", str(config), "--weights", str(weights), "--out", str(out), *extra]
    )


def test_export_of_the_trained_run_gives_the_predictors_detections(
    trained: Path, raccoon_photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "model.onnx"
    assert export(trained, out, "--opset", "17") == 0
    assert capsys.readouterr().out.strip() == f"wrote {out} (ONNX opset 17)"
    cfg = load_config(trained / "config.yaml")
    onnx, ours = OnnxPredictor(out, cfg.input), Predictor(cfg, str(trained / "model_final.pth"))
    for name in ("raccoon-110.jpg", "raccoon-150.jpg"):  # two input sizes
        image = decode_image(str(raccoon_photos / "images" / name))
        a, b = onnx(image), ours(image)
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.boxes, b.boxes, atol=0.01, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)
        assert torch.equal(a.labels, b.labels)


def test_one_line_errors(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pth"
    argv = ["export", "--config", str(trained / "config.yaml"), "--weights", str(missing)]
    assert main([*argv, "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == f"resdet export: error: weights file '{missing}' does not exist\n"
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("")
    assert export(trained, in_the_way / "model.onnx") == 2  # its folder cannot be made
    err = capsys.readouterr().err
    assert err.startswith(f"resdet export: error: {in_the_way / 'model.onnx'}: cannot write (")
    assert err.count("\n") == 1
    assert export(trained, tmp_path / "m.onnx", "--opset", "9") == 2
    assert capsys.readouterr().err == "resdet export: error: --opset 9: expected 16..20\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_openvino_format_writes_the_ir(
    trained: Path, raccoon_photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detection.openvino_runtime import OpenvinoPredictor

    out = tmp_path / "ir" / "model.xml"
    assert export(trained, out, "--format", "openvino") == 0
    message = f"wrote {out} and its .bin (OpenVINO IR from ONNX opset 20)"
    assert capsys.readouterr().out.strip() == message
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin", "model.xml"]
    cfg = load_config(trained / "config.yaml")
    ov, ours = OpenvinoPredictor(out, cfg.input), Predictor(cfg, str(trained / "model_final.pth"))
    image = decode_image(str(raccoon_photos / "images" / "raccoon-110.jpg"))
    a, b = ov(image), ours(image)
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.boxes, b.boxes, atol=0.01, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)
