"""`resdet flops`: output of one backbone, the --all table, errors, the detector hook."""

from __future__ import annotations

import pytest

from engine.errors import UserError
from tools import flops
from tools.cli import main


def test_resnet50(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "resnet50"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "resnet50 at 224x224",
        "parameters: 25,557,032 (25.56 M)",
        "multiply-adds: 4.09 GMACs",
    ]
    assert main(["flops", "resnet50", "--stride-in-1x1"]) == 0
    assert "multiply-adds: 3.86 GMACs" in capsys.readouterr().out


def test_cifar_defaults_to_32(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "resnet110"]) == 0
    out = capsys.readouterr().out
    assert "resnet110 at 32x32" in out and "parameters: 1,727,962 (1.73 M)" in out


def test_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "resnet51"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resdet flops: error: model 'resnet51' is not known")
    assert "resnet50" in err and "vgg16" in err and "Traceback" not in err
    assert main(["flops", "vgg16", "--stride-in-1x1"]) == 2
    assert "does not take stride_in_1x1" in capsys.readouterr().err
    assert main(["flops"]) == 2


def test_all_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--all", "--shortcut", "A"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| model | input | parameters | GMACs |"
    assert len(lines) == 2 + 26  # 10 ImageNet ResNets/plain nets, 4 VGGs, 12 CIFAR nets
    assert "| vgg16 | 224x224 | 138,357,544 | 15.47 |" in lines
    # option A is parameter-free: ResNet-34 A has plain-34's parameters
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[2] for line in lines[2:]}
    assert rows["resnet34"] == rows["plain34"] == "21,623,848"
    assert "| resnet20 | 32x32 | 269,722 | 0.041 |" in lines


def test_detector_rows_plug_in(monkeypatch: pytest.MonkeyPatch) -> None:
    def detector_row(name: str, size: int | None, s1: bool, sc: str | None) -> flops.Row:
        return flops.Row(name=name, input="600x1000", params=1, gmacs=2.0)

    monkeypatch.setitem(flops.ROW_BUILDERS, "detector", (["faster_rcnn_r101_c4"], detector_row))
    assert flops.row("faster_rcnn_r101_c4")["input"] == "600x1000"
    assert "faster_rcnn_r101_c4" in flops.known_names()
    assert flops.backbone_row("resnet18", 64)["input"] == "64x64"
    with pytest.raises(UserError, match=r"expected one of .*faster_rcnn_r101_c4"):
        flops.row("nope")


def test_config_rows_count_what_the_configs_build(capsys: pytest.CaptureFixture[str]) -> None:
    """The miniature comparison's four models, counted from their configs (a table)."""
    args = ["flops", "--pretrain-config", "configs/mini/vgg16_w16_cifar10jpg.yaml",
            "--config", "configs/mini/faster_rcnn_vgg16_w16_raccoon.yaml",
            "--config", "configs/mini/faster_rcnn_r101_c4_w16_raccoon.yaml"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["| model | input | parameters | GMACs |", "| --- | --- | ---: | ---: |"]
    # VGG-16 at base width 16 with BN, 10 classes, by hand: 13 convs 3x3 (widths 16..128, bias,
    # BN scale and shift) + fc6 (128*7*7 -> 1024) + fc7 (1024 -> 1024) + fc8 (1024 -> 10)
    widths = [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    convs = sum(9 * cin * c + 3 * c for cin, c in zip([3, *widths], widths))
    fcs = (128 * 49 + 1) * 1024 + (1024 + 1) * 1024 + (1024 + 1) * 10
    assert lines[2].startswith(f"| vgg16_w16_cifar10jpg | 32x32 | {convs + fcs:,} |")
    assert lines[3].startswith("| faster_rcnn_vgg16_w16_raccoon | 320x512 |")  # test size
    assert lines[4].startswith("| faster_rcnn_r101_c4_w16_raccoon | 320x512 |")
    assert main(["flops", "--config", "configs/mini/nothing.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err
