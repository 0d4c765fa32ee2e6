"""engine/io.py: strict JSON, checked image writes and output folders."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from engine.io import (
    atomic_write_image,
    atomic_write_json,
    encode_image,
    json_safe,
    output_folder,
    read_json,
)


def _strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} in strict JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_written_as_null(tmp_path: Path) -> None:
    payload = {"mAP": float("nan"), "per_class": {"a": 0.5, "b": float("nan")},
               "curve": [1.0, float("inf"), (float("-inf"), 2)], "n": 3, "ok": True}  # fmt: skip
    path = atomic_write_json(tmp_path / "eval_results.json", payload)
    assert _strict(path.read_text()) == {
        "mAP": None, "per_class": {"a": 0.5, "b": None}, "curve": [1.0, None, [None, 2]],
        "n": 3, "ok": True,
    }  # fmt: skip
    assert read_json(path) == json_safe(payload)  # the strict reader takes what we write


def test_a_failed_image_write_is_one_line_and_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    path = atomic_write_image(tmp_path / "a.jpg", image)
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"a.jpg: cannot write \(No space left on device"):
        atomic_write_image(path, np.full((8, 8, 3), 255, np.uint8))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_image_opencv_cannot_encode_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"b.xyz: OpenCV cannot encode an image as '.xyz'"):
        atomic_write_image(tmp_path / "b.xyz", np.zeros((4, 4, 3), np.uint8))
    assert encode_image(np.zeros((4, 4, 3), np.uint8), ".png")[:4] == b"\x89PNG"


def test_output_folders_are_created_or_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert output_folder(tmp_path / "new" / "out", "--output").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^--output .*file is a file; expected a folder$"):
        output_folder(tmp_path / "file", "--output")
    with pytest.raises(UserError, match=r"--output .*file/sub: cannot create the folder \(Not a"):
        output_folder(tmp_path / "file" / "sub", "--output")

    def read_only(path: object, mode: int = 0o777) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "mkdir", read_only)  # a read-only parent (root writes anywhere)
    with pytest.raises(UserError, match=r"--out .*ro: cannot create the folder \(Permission"):
        output_folder(tmp_path / "ro", "--out")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match=r"--out .*new: the folder is not writable$"):
        output_folder(tmp_path / "new", "--out")
