"""`resdet convert --from torchvision`: every key and shape lands on our R50-FPN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from detection.config import load_config
from detection.modeling.build import build_model
from detection.modeling.convert import convert_detector, from_torchvision_detector
from engine.errors import UserError
from tools.cli import main

CONFIG = Path(__file__).resolve().parents[3] / "configs/detection/torchvision_r50_fpn_coco.yaml"


def test_keys_and_shapes_match_our_model() -> None:
    with torch.device("meta"):
        tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        ours = build_model(load_config(CONFIG))
    converted = from_torchvision_detector(tv.state_dict())
    expected = ours.state_dict()
    assert sorted(converted) == sorted(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)


def test_unknown_layout_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="unknown keys"):
        from_torchvision_detector({"roi_heads.mask_head.0.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="--from 'detectron2'"):
        convert_detector({}, "detectron2")
    torch.save({"something.else": torch.zeros(2)}, tmp_path / "in.pth")
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(tmp_path / "in.pth"),
                str(tmp_path / "out.pth"),
            ]
        )
        == 2
    )
    assert "unknown keys ['something.else']" in capsys.readouterr().err
    assert (
        main(
            [
                "convert",
                "--from",
                "torchvision",
                str(tmp_path / "missing.pth"),
                str(tmp_path / "o.pth"),
            ]
        )
        == 2
    )


class _Payload:
    """Unpickling this creates ``marker``: what a crafted weights file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_convert_names_its_flag_for_a_pickle_that_would_run_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker, crafted, noise = tmp_path / "pwned", tmp_path / "in.pth", tmp_path / "noise.pth"
    torch.save({"something.else": torch.zeros(2), "x": _Payload(marker)}, crafted)
    noise.write_bytes(bytes(range(256)) * 3)
    argv = ["convert", "--from", "torchvision", str(crafted), str(tmp_path / "out.pth")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.endswith("(posix.system); unpickling it could run code from the file: if you "
                        "made it, --trust-weights\n")  # fmt: skip
    assert "weights_only" not in err and not marker.exists()
    assert main(["convert", "--from", "torchvision", str(noise), str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable checkpoint" in err and "trust" not in err
    assert main([*argv, "--trust-weights"]) == 2  # read (the payload ran), then not a detector
    assert marker.exists() and "unknown keys" in capsys.readouterr().err
