"""`resdet pretrain` end to end on generated data: learning, CIFAR format, outputs, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch
import torchvision
from pretrain_helpers import make_cifar10, make_imagefolder

from backbones import build_backbone, load_weights
from tools.cli import main


def _folder_data(root: Path) -> dict:
    return {
        "train": {"format": "imagefolder", "root": str(root), "splits": ["train"]},
        "test": {"format": "imagefolder", "root": str(root), "splits": ["val"]},
    }


def _metrics(out: Path) -> list[dict]:
    return [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]


def test_cifar_style_resnet_learns_shapes_and_plain_twin_trains(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    # 4 shapes in random colours on noise, 32 px; ~25 epochs of 600 images in 70 iterations
    root = make_imagefolder(tmp_path / "shapes", {"train": 150, "val": 50}, seed=1)
    run = {
        "log_period": 10,
        "solver": {"ims_per_batch": 32, "max_iter": 70, "steps": [55], "checkpoint_period": 1000},
    }
    for name, extra in (("resnet20", {}), ("plain20", {"shortcut": "B"})):  # B: the default
        backbone = {"name": name, "base_width": 8, **extra}
        out = tmp_path / name
        cfg = write_config(
            _folder_data(root),
            {**run, "output_dir": str(out), "model": {"backbone": backbone}},
            f"{name}.yaml",
        )
        assert main(["pretrain", "--config", str(cfg)]) == 0
        lines = [line for line in _metrics(out) if "loss_cls" in line]
        assert lines[-1]["loss_cls"] < 0.5 * lines[0]["loss_cls"], name  # the loss falls
        top1 = json.loads((out / "eval_results.json").read_text())["headline"]["top1_error"]
        if name == "resnet20":
            assert top1 <= 0.10  # >= 90% validation top-1
        else:
            assert top1 < 0.5  # the plain twin trains too (chance is 0.75)


def test_cifar10_format_trains_one_epoch(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    root = make_cifar10(tmp_path / "cifar-10-batches-py", per_batch=16, test=20)
    data = {
        "train": {"format": "cifar10", "root": str(root), "splits": ["train"]},
        "test": {"format": "cifar10", "root": str(root), "splits": ["test"]},
    }
    # 5 batches x 16 images = 80 = one epoch of 5 iterations at batch 16
    solver = {"max_iter": 5, "steps": [], "checkpoint_period": 5}
    for workers in (0, 2):
        cfg = write_config(
            {**data, "num_workers": workers},
            {"solver": solver, "output_dir": str(tmp_path / f"w{workers}")},
        )
        assert main(["pretrain", "--config", str(cfg)]) == 0
    out = tmp_path / "w2"
    lines = _metrics(out)
    assert lines[0]["iter"] == 5 and lines[0]["num_skipped_images"] == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["iteration"] == 5 and results["metrics"]["center"]["images"] == 20
    # augmentation is seeded per sample: worker processes change nothing
    w0, w2 = (
        torch.load(tmp_path / f"w{w}" / "model_final.pth", weights_only=True)["model"]
        for w in (0, 2)
    )
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


def test_outputs_load_and_eval_only_reproduces_the_final_eval(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 8, "val": 4})
    cfg = write_config(
        _folder_data(root),
        {"input": {"test_modes": ["center", "10crop", "multiscale"], "test_scales": [32, 40]}},
    )
    assert main(["pretrain", "--config", str(cfg)]) == 0
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {
        "config.yaml",
        "metrics.jsonl",
        "last_checkpoint",
        "checkpoint_6.pth",
        "model_final.pth",
        "backbone.pth",
        "eval_results.json",
    } <= names
    trained = json.loads((out / "eval_results.json").read_text())
    assert set(trained) == {"iteration", "weights", "headline", "metrics"}
    assert set(trained["metrics"]) == {"center", "10crop", "multiscale"}
    assert trained["headline"]["top1_error"] == trained["metrics"]["center"]["top1_error"]

    net = build_backbone("resnet20", num_classes=4, shortcut="A", base_width=4)
    report = load_weights(net, out / "backbone.pth")  # strict: every feature key is there
    assert not report.classifier_loaded
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["classes"] == ["circle", "cross", "square", "triangle"]
    assert final["pixel_mean_image"].shape == (32, 32, 3)  # per-pixel mean kept for eval

    (out / "eval_results.json").unlink()
    args = ["pretrain", "--config", str(cfg), "--eval-only", "--weights"]
    assert main([*args, str(out / "model_final.pth")]) == 0
    again = json.loads((out / "eval_results.json").read_text())
    assert again == {**trained, "weights": str(out / "model_final.pth")}
    assert main([*args, str(out / "model_final.pth")]) == 0  # results there now: kept
    assert main([*args, str(out / "model_final.pth"), "--nproc", "2"]) == 2  # training's flag
    (beside,) = (out / "eval").iterdir()
    assert json.loads((beside / "eval_results.json").read_text()) == again
    assert json.loads((out / "eval_results.json").read_text()) == again


def test_eval_only_accepts_a_torchvision_checkpoint(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 1, "val": 3})
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=4).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    # torchvision's normalisation; plain resize + centre crop at 32 px
    inp = {"per_pixel_mean": False, "pixel_std": [58.395, 57.12, 57.375], "test_resize": 32}
    cfg = write_config(
        _folder_data(root),
        {
            "input": inp,
            "model": {"backbone": {"name": "resnet18", "shortcut": "B", "base_width": 64}},
        },
    )
    assert (
        main(
            ["pretrain", "--config", str(cfg), "--eval-only", "--weights", str(tmp_path / "tv.pth")]
        )
        == 0
    )
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())["metrics"]["center"]
    # the same images through torchvision's own model
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor(inp["pixel_std"])
    wrong = 0
    for label, folder in enumerate(sorted((root / "val").iterdir())):
        for path in sorted(folder.iterdir()):
            rgb = torch.from_numpy(cv2.imread(str(path))[..., ::-1].copy()).float()
            x = ((rgb - mean) / std).permute(2, 0, 1)[None]
            with torch.no_grad():
                wrong += int(tv(x).argmax(1).item() != label)
    assert results["images"] == 12 and results["top1_error"] == pytest.approx(wrong / 12)


def test_corrupt_jpeg_is_skipped_with_a_warning_or_fatal(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 8, "val": 2})
    bad = root / "train" / "circle" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9")
    cfg = write_config(_folder_data(root), {"solver": {"max_iter": 4, "ims_per_batch": 32}})
    with pytest.warns(UserWarning, match=rf"skipping a bad image: {bad}: the image does not"):
        assert main(["pretrain", "--config", str(cfg)]) == 0
    # one epoch per iteration (33 files, batch 32): the broken file is met in most of them
    skipped = [m for m in _metrics(tmp_path / "out") if "loss_cls" in m][-1]["num_skipped_images"]
    assert 1 <= skipped <= 4
    code = main(
        ["pretrain", "--config", str(cfg), "--restart", "--set", "data.skip_bad_images=false"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"resdet pretrain: error: {bad}: the image does not decode (corrupt or not an image) "
        "(set data.skip_bad_images=true to skip such images)"
    )


def test_empty_class_folder_and_missing_split_exit_2(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 2})
    cfg = write_config(_folder_data(root))
    assert main(["pretrain", "--config", str(cfg)]) == 2
    assert f"error: {root / 'val'}: split folder not found" in capsys.readouterr().err
    make_imagefolder(root, {"val": 1})
    (root / "train" / "zebra").mkdir()
    assert main(["pretrain", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"resdet pretrain: error: {root / 'train' / 'zebra'}: empty class folder")
    assert "Traceback" not in err


def test_diverging_run_stops_with_one_line(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"train": 8, "val": 1})
    cfg = write_config(
        _folder_data(root), {"solver": {"base_lr": 1.0e12, "max_iter": 20, "checkpoint_period": 1}}
    )
    assert main(["pretrain", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("resdet pretrain: error: non-finite loss at iteration ")
    assert "loss_cls=nan" in err or "loss_cls=inf" in err
    failed = int(err.split("iteration ")[1].split(":")[0])
    last = (tmp_path / "out" / "last_checkpoint").read_text().strip()
    assert last == f"checkpoint_{failed - 1}.pth"  # the last good one stays
    assert not (tmp_path / "out" / "model_final.pth").exists()
