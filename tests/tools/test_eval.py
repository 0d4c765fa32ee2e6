"""`resdet eval`: trust only from the command line, and results already written are kept."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml

from engine.errors import DataWarning
from tools.cli import main


class _Payload:
    """Unpickling this creates ``marker``: what a crafted weights file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def shared_run(trained: Path, folder: Path, trust_in_config: bool) -> Path:
    """A copy of a finished run whose ``model_final.pth`` also carries a payload, and whose
    config.yaml says ``trust_weights: <trust_in_config>`` (output_dir: the copy)."""
    shutil.copytree(trained, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.update(output_dir=str(folder), trust_weights=trust_in_config)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    final = torch.load(trained / "model_final.pth", weights_only=True)
    torch.save({**final, "payload": _Payload(folder / "pwned")}, folder / "model_final.pth")
    return folder


def eval_argv(run: Path, *extra: str) -> list[str]:
    """What `resdet report` suggests for a run without results."""
    return ["eval", "--config", str(run / "config.yaml"), "--weights",
            str(run / "model_final.pth"), *extra]  # fmt: skip


def test_a_config_file_cannot_grant_trust_to_a_crafted_weights_file(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shared_run(trained, tmp_path / "RUN", trust_in_config=True)
    results = (run / "eval_results.json").read_bytes()
    assert main(eval_argv(run)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"resdet eval: error: {run / 'config.yaml'}: key 'trust_weights' ")
    assert err.endswith("trust_weights is a command-line flag: --trust-weights\n")
    assert err.count("\n") == 1
    assert not (run / "pwned").exists()
    assert main(eval_argv(run, "--trust-weights")) == 2  # the file is refused, flag or not
    assert main([*eval_argv(run), "--set", "trust_weights=true"]) == 2  # --set cannot either
    assert not (run / "pwned").exists()
    assert (run / "eval_results.json").read_bytes() == results


def test_the_weights_file_is_refused_without_the_flag_and_read_with_it(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shared_run(trained, tmp_path / "RUN", trust_in_config=False)  # as runs save it
    assert main(eval_argv(run)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"resdet eval: error: weights file '{run / 'model_final.pth'}' holds ")
    assert "(posix.system)" in err and err.endswith("if you made it, --trust-weights\n")
    assert "weights_only" not in err and err.count("\n") == 1
    assert not (run / "pwned").exists()
    assert main(eval_argv(run, "--trust-weights")) == 0  # the person running it says so
    assert (run / "pwned").exists()  # fully unpickled: the payload ran


def test_eval_into_a_finished_run_keeps_its_results(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    kept = {name: (run / name).read_bytes() for name in ("eval_results.json", "pr_curves.png")}
    argv = ["eval", "--config", str(run / "config.yaml"), "--weights",
            str(run / "checkpoint_10.pth"), "--set", f"output_dir={run}"]  # fmt: skip
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert {name: (run / name).read_bytes() for name in kept} == kept
    (beside,) = (run / "eval").iterdir()
    assert last == f"results written to {beside}/eval_results.json ({run} holds earlier " \
        "results: kept)"  # fmt: skip
    new = json.loads((beside / "eval_results.json").read_text())
    assert new["weights"] == str(run / "checkpoint_10.pth") and new["iteration"] == 10
    assert (beside / "pr_curves.png").is_file() and (beside / "voc_results").is_dir()
    assert not (run / ".lock").exists()


def test_eval_into_a_folder_a_run_is_training_in_is_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lock = f"{os.getpid()} {socket.gethostname()} 2024-01-01T00:00:00\n"  # a live process
    (run / ".lock").write_text(lock)
    before = sorted(p.name for p in run.iterdir())
    argv = ["eval", "--config", str(run / "config.yaml"), "--weights",
            str(run / "model_final.pth"), "--set", f"output_dir={run}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"output_dir {run} is in use by process {os.getpid()}" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / ".lock").read_text() == lock


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_eval_with_an_exported_runtime_gives_the_torch_results(
    trained: Path, tmp_path: Path, runtime: str
) -> None:
    """`resdet eval --runtime`: the exported graph, run by onnxruntime or OpenVINO (fp32),
    scores the test split as the eager model does: the same detections in
    coco_results.json (to 0.01 px and 1e-4 in score) and the same mAP."""
    pytest.importorskip(runtime)
    outputs = {}
    for name in ("torch", runtime):
        out = tmp_path / name
        argv = eval_argv(trained, "--runtime", name, "--set", f"output_dir={out}")
        assert main(argv) == 0
        outputs[name] = out
    ours = json.loads((outputs["torch"] / "coco_results.json").read_text())
    theirs = json.loads((outputs[runtime] / "coco_results.json").read_text())
    assert len(ours) == len(theirs) > 0
    key = lambda d: (d["image_id"], d["category_id"], round(d["score"], 3))  # noqa: E731
    for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key), strict=True):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=0.01)
    results = {
        name: json.loads((out / "eval_results.json").read_text()) for name, out in outputs.items()
    }
    assert results[runtime]["headline"] == pytest.approx(results["torch"]["headline"], abs=1e-4)


def test_eval_with_an_exported_runtime_skips_a_bad_image_as_torch_does(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt test photo: `resdet eval --runtime onnxruntime` with data.skip_bad_images off
    stops with one line naming it; on (the default), it warns once and scores the rest, as the
    torch path does."""
    pytest.importorskip("onnxruntime")
    config = yaml.safe_load((trained / "config.yaml").read_text())
    data = tmp_path / "VOC2007"
    shutil.copytree(config["data"]["test"]["root"], data)
    first = (data / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    bad = data / "JPEGImages" / f"{first}.jpg"
    bad.write_bytes(b"not a photo")
    argv = eval_argv(trained, "--runtime", "onnxruntime", "--set", f"data.test.root={data}")
    assert main([*argv, "data.skip_bad_images=false", f"output_dir={tmp_path / 'stop'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "data.skip_bad_images" in err
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        argv = eval_argv(trained, "--runtime", runtime, "--set", f"data.test.root={data}",
                         "data.skip_bad_images=true", f"output_dir={out}")  # fmt: skip
        with pytest.warns(DataWarning, match=f"skipping a bad image: {bad}"):
            assert main(argv) == 0
    headlines = [
        json.loads((tmp_path / r / "eval_results.json").read_text())["headline"]
        for r in ("torch", "onnxruntime")
    ]
    assert headlines[1] == pytest.approx(headlines[0], abs=1e-4)
