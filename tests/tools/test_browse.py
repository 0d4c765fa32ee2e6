"""`resdet browse`: drawings only inside --out, whatever the data's ids say (the drawing itself
is tested on real photos in test_real_photos.py)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from tool_helpers import QUICKSTART, tiny_overrides

import detection.data.build
from detection.data.voc import load_voc
from tools.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def voc(shapes_voc: Path, tmp_path: Path) -> Path:
    """A writable copy of the generated VOC2007 tree."""
    root = tmp_path / "VOC2007"
    shutil.copytree(shapes_voc, root)
    return root


def test_an_id_that_leaves_the_data_root_stops_browse_before_it_writes(
    voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = (voc / "ImageSets/Main/test.txt").read_text().split()[:2]
    # what '../../outside/evil' names from Annotations/ and JPEGImages/ (tmp_path/outside/),
    # and from --out (tmp_path/browse/out): followed, it would be read and drawn over
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(voc / f"Annotations/{first}.xml", outside / "evil.xml")
    shutil.copy(voc / f"JPEGImages/{first}.jpg", outside / "evil.jpg")
    split = voc / "ImageSets/Main/test.txt"
    split.write_text(f"{first}\n{second}\n../../outside/evil\n")
    out = tmp_path / "browse" / "out"
    before = _snapshot(tmp_path)
    argv = ["browse", "--config", str(QUICKSTART), *tiny_overrides(voc, tmp_path / "unused")]
    assert main([*argv, "--split", "test", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"resdet browse: error: {split}:3: '../../outside/evil' holds a '/'; expected an image "
        "id: the stem of a file in the annotation folder\n"
    )
    assert _snapshot(tmp_path) == before  # nothing written, in --out or outside it


def test_browse_refuses_a_record_id_that_would_name_a_file_outside_out(
    voc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a reader that let such an id through: browse's own check still keeps --out closed
    (record, *_) = load_voc(str(voc), "test", ["circle", "square", "triangle", "star", "ring"])
    record.image_id = "../escaped"
    monkeypatch.setattr(detection.data.build, "load_dataset_records", lambda *a: [record])
    out = tmp_path / "out"
    argv = ["browse", "--config", str(QUICKSTART), *tiny_overrides(voc, tmp_path / "unused")]
    assert main([*argv, "--split", "test", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "resdet browse: error: data.test image id: '../escaped.jpg' holds a '/'; expected a "
        f"file name inside {out}\n"
    )
    assert not (tmp_path / "escaped.jpg").exists() and not out.exists()


def test_browse_draws_one_file_per_id_in_out(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["browse", "--config", str(QUICKSTART), *tiny_overrides(voc, tmp_path / "unused")]
    assert main([*argv, "--split", "test", "--out", str(out), "--max-images", "3"]) == 0
    ids = (voc / "ImageSets/Main/test.txt").read_text().split()[:3]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.jpg" for i in ids)


def test_a_full_disk_or_an_out_that_is_a_file_is_one_line(
    voc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    argv = ["browse", "--config", str(QUICKSTART), *tiny_overrides(voc, tmp_path / "unused"),
            "--split", "test"]  # fmt: skip
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main([*argv, "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resdet browse: error: ") and err.count("\n") == 1
    assert taken.read_text() == "mine"

    def full(fd: int) -> None:  # cv2.imwrite returned False here, and browse said "drawn"
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "drawn" not in captured.out and captured.err.count("\n") == 1
    assert ": cannot write (No space left on device" in captured.err
    assert not [p for p in out.iterdir() if p.suffix == ".jpg" or p.name.endswith(".tmp")]
