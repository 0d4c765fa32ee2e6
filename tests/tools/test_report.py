"""`resdet report`: the page of a tiny real run, its embedded images, escaping, worst-first
ordering, the fallbacks (no pr_curves.json, no coco_results.json) and the missing-file errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from detection.structures import Detections, ImageRecord
from tools import report
from tools.cli import main

IMG_SRC = re.compile(r"<img src='([^']*)'")
SIGNATURES = {
    "data:image/png;base64,": b"\x89PNG\r\n\x1a\n",
    "data:image/jpeg;base64,": b"\xff\xd8",
}


def make_report(run_dir: Path, out: Path, *extra: str) -> str:
    assert main(["report", str(run_dir), "--out", str(out), *extra]) == 0
    return out.read_text()


def embedded_images(text: str) -> list[bytes]:
    """The decoded bytes of every <img>, after checking each is a data: URI of its type."""
    images = []
    for src in IMG_SRC.findall(text):
        prefix = next(p for p in SIGNATURES if src.startswith(p))
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data.startswith(SIGNATURES[prefix])
        images.append(data)
    return images


def test_the_report_of_a_run_embeds_every_section(trained: Path, tmp_path: Path):
    text = make_report(trained, tmp_path / "r.html")
    for heading in ("Config", "Data", "Training curves", "Average precision",
                    "Precision-recall", "Test images, worst first"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in text
    assert text.count("<img ") == 2 + 2 * 5  # curves, PR curves, 5 test images twice
    assert len(embedded_images(text)) == 12
    outside = IMG_SRC.sub("", text)  # nothing but the data: URIs may name a resource
    assert not re.search(r"https?:|file:|src=|href=|<script|<link", outside)
    assert "from pr_curves.json" in text  # the run wrote its curves
    assert "<th>class</th><th>AP50 % (VOC07)</th><th>AP % (COCO)</th>" in text
    for name in ("circle", "square", "triangle", "star", "ring"):
        assert f"<tr><td>{name}</td>" in text
    assert "data.test: 5 images" in text and "data.train: 19 images" in text  # trainval: 14 + 5
    # worst first: (missed + false positives) never grows down the gallery
    counts = [int(a) + int(b) for a, b in re.findall(
        r"<h3>\d+: (\d+) missed objects?, (\d+) false positives?</h3>", text)]  # fmt: skip
    assert len(counts) == 5 and counts == sorted(counts, reverse=True)


def test_text_is_escaped(trained: Path, tmp_path: Path):
    run_dir = tmp_path / "a<b>&'c"
    shutil.copytree(trained, run_dir)
    text = make_report(run_dir, tmp_path / "r.html", "--images", "1")
    assert "a&lt;b&gt;&amp;&#x27;c" in text and "a<b>" not in text
    assert report.table(["<th>"], [["x & y"]]) == (
        "<table class=''><thead><tr><th>&lt;th&gt;</th></tr></thead>"
        "<tbody><tr><td>x &amp; y</td></tr></tbody></table>"
    )


def test_without_curves_or_results_files_the_model_and_the_voc_code_fill_in(
    trained: Path, tmp_path: Path
):
    run_dir = tmp_path / "old_run"
    shutil.copytree(trained, run_dir)
    for name in ("pr_curves.json", "coco_results.json", "coco_ground_truth.json"):
        (run_dir / name).unlink()
    text = make_report(run_dir, tmp_path / "r.html", "--images", "2")
    assert "computed from the detections (this run has no pr_curves.json)" in text
    assert len(embedded_images(text)) == 2 + 2 * 2


def test_mistakes_of_one_image_by_hand():
    # objects: A (0..10), B (50..80), C ignored (20..30)
    record = ImageRecord(
        "1", "1.jpg", 100, 100, np.array([[0, 0, 10, 10], [50, 50, 80, 80], [20, 20, 30, 30]]),
        np.array([0, 0, 0]), np.array([False, False, True]),
    )  # fmt: skip
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70], [50, 50, 80, 80]]
    dets = Detections(
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor([0.9, 0.8, 0.7, 0.6, 0.4]),  # the hit on B is under the threshold
        torch.tensor([0, 0, 0, 0, 0]),
    )
    # A found; its duplicate and the box inside B (IoU 100/900) are false positives; the
    # detection on the ignored C counts as neither; B is missed
    assert report.image_mistakes(record, dets, 0.5) == report.Mistakes(1, 2)
    assert report.image_mistakes(record, dets, 0.3) == report.Mistakes(0, 2)
    wrong_class = Detections(dets.boxes[:1], dets.scores[:1], torch.tensor([1]))
    assert report.image_mistakes(record, wrong_class, 0.5) == report.Mistakes(2, 1)


@pytest.mark.parametrize(
    ("missing", "writer"),
    [("config.yaml", "resdet train"), ("eval_results.json", "resdet eval --config")],
)
def test_a_run_without_a_needed_file_is_one_line(
    trained: Path, tmp_path: Path, capsys, missing: str, writer: str
):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / missing).unlink()
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"resdet report: error: {run_dir / missing}: not found (written by ")
    assert writer in err and err.count("\n") == 1
    assert not (run_dir / "report.html").exists()
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope: run directory not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "why"),
    [("[]", "expected an object, got list"),
     ('{"metrics": []}', '"metrics" must be an object of objects'),
     ('{"metrics": {}, "headline": []}', '"headline" must map names to numbers')],
)  # fmt: skip
def test_an_eval_results_file_of_another_layout_is_one_line(
    trained: Path, tmp_path: Path, capsys, text: str, why: str
):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "eval_results.json").write_text(text)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == (f"resdet report: error: {run_dir / 'eval_results.json'}: not an "
                   f"eval_results.json written by resdet ({why})\n")  # fmt: skip
    assert not (run_dir / "report.html").exists()


def test_null_and_legacy_nan_scores_read_as_n_a(trained: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    results = json.loads((run_dir / "eval_results.json").read_text())
    results["headline"] = {"mAP@.5": None, "mAP@[.5,.95]": 0.25}
    text = json.dumps(results).replace('"circle": ', '"circle": NaN, "x": ', 1)
    (run_dir / "eval_results.json").write_text(text)  # NaN: what earlier versions wrote
    page = make_report(run_dir, tmp_path / "r.html", "--images", "0")
    assert "mAP@.5 n/a, mAP@[.5,.95] 25.0%" in page
    assert "<tr><td>circle</td><td>n/a</td>" in page


def test_an_out_that_is_a_folder_is_refused_before_any_work(trained: Path, tmp_path: Path, capsys):
    assert main(["report", str(trained), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"resdet report: error: --out {tmp_path} is a folder; expected the .html file " \
        "to write\n"  # fmt: skip
