"""`resdet infer`: a bad --output is one line before any work, and no write goes unchecked."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tools.cli import main


def infer(trained: Path, image: Path, output: Path, *extra: str) -> int:
    return main(["infer", "--config", str(trained / "config.yaml"), "--weights",
                 str(trained / "model_final.pth"), "--input", str(image),
                 "--output", str(output), *extra])  # fmt: skip


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_an_output_that_is_a_file_or_cannot_be_created_is_one_line(
    trained: Path, shapes_voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    image = shapes_voc / "JPEGImages" / "000001.jpg"
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert infer(trained, image, taken) == 2
    assert one_line(capsys) == f"resdet infer: error: --output {taken} is a file; expected a folder"
    assert taken.read_text() == "mine"

    def read_only(path: object, mode: int = 0o777) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "mkdir", read_only)  # a read-only parent folder (tests run as root)
    assert infer(trained, image, tmp_path / "ro" / "out") == 2
    assert one_line(capsys).endswith("ro/out: cannot create the folder (Permission denied)")


def test_the_folder_of_the_input_images_is_refused(
    trained: Path, shapes_voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(shapes_voc / "JPEGImages" / "000001.jpg", photos / "a.jpg")
    before = (photos / "a.jpg").read_bytes()
    assert infer(trained, photos, photos) == 2
    assert one_line(capsys) == (
        f"resdet infer: error: --output {photos} is the folder of the input images: their "
        "drawings would replace them; choose another folder"
    )
    assert infer(trained, photos / "a.jpg", tmp_path / "photos" / ".") == 2  # the same folder
    assert "is the folder of the input images" in one_line(capsys)
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]
    assert (photos / "a.jpg").read_bytes() == before


def test_a_full_disk_while_drawing_is_one_line(
    trained: Path, shapes_voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "out"
    assert infer(trained, shapes_voc / "JPEGImages" / "000001.jpg", out) == 2
    err = one_line(capsys)
    assert err.startswith(f"resdet infer: error: {out / '000001.jpg'}: cannot write (No space")
    assert not list(out.iterdir())  # no image claimed, no temporary file left


def test_the_exported_graph_runtime_lists_the_torch_detections(
    trained: Path, shapes_voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runtime reaches the Predictor (onnxruntime here: the cheapest export; OpenVINO's
    detections are tests/detection/test_openvino_runtime.py's)."""
    image = shapes_voc / "JPEGImages" / "000001.jpg"
    listed = []
    for runtime in ("torch", "onnxruntime"):
        assert infer(trained, image, tmp_path / runtime, "--runtime", runtime) == 0
        listed.append(json.loads((tmp_path / runtime / "000001.json").read_text())["detections"])
    torch_dets, graph_dets = listed
    assert [d["class"] for d in graph_dets] == [d["class"] for d in torch_dets]
    for ours, theirs in zip(torch_dets, graph_dets):
        assert max(abs(a - b) for a, b in zip(ours["box"], theirs["box"])) <= 0.02
        assert abs(ours["score"] - theirs["score"]) <= 1e-4
    with pytest.raises(SystemExit):
        infer(trained, image, tmp_path / "x", "--runtime", "tensorrt")
    assert "--runtime: invalid choice: 'tensorrt'" in capsys.readouterr().err
