"""Detector multiply-adds by hand, and the detector rows of `resdet flops`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from detection.config import Config
from detection.modeling.build import build_model
from detection.modeling.complexity import count_detector_macs
from tools.cli import main


def test_fpn_macs_by_parts(small_config: Callable[..., Config]) -> None:
    cfg = small_config("fpn")  # FPN 32 channels, fc 64, 3 classes, 3 anchors per position
    with torch.device("meta"):
        model = build_model(cfg).eval()
    total = count_detector_macs(model, (128, 96), num_rois=10)
    no_rois = count_detector_macs(model, (128, 96), num_rois=0)
    # per RoI: fc6 32*7*7 -> 64, fc7 64 -> 64, scores 64 -> 4, deltas 64 -> 16
    assert total - no_rois == 10 * (32 * 49 * 64 + 64 * 64 + 64 * 4 + 64 * 16)
    # RPN head on P2..P6 of a 128 x 96 input: 3x3 conv 32 -> 32, 1x1 -> 3 and -> 12
    positions = sum(h * w for h, w in [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)])
    rpn = positions * (32 * 32 * 9 + 32 * 3 + 32 * 12)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.extract_features(torch.zeros(1, 3, 128, 96, device="meta"))
    assert no_rois - counter.get_total_flops() // 2 == rpn


def test_global_context_counts_one_more_roi_and_the_wider_predictor(
    small_config: Callable[..., Config],
) -> None:
    cfg = small_config("fpn")
    with torch.device("meta"):
        plain = count_detector_macs(build_model(cfg).eval(), (128, 96), num_rois=10)
        cfg.model.roi_heads.global_context = True
        context = count_detector_macs(build_model(cfg).eval(), (128, 96), num_rois=10)
    # the whole image through fc6 and fc7, and 64 more predictor inputs on each of the 10 RoIs
    assert context - plain == 32 * 49 * 64 + 64 * 64 + 10 * (64 * 4 + 64 * 16)


def test_resdet_flops_detectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "faster_rcnn_r50_fpn", "--size", "800x1333"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["faster_rcnn_r50_fpn at 800x1333", "parameters: 41,755,286 (41.76 M)"]
    assert main(["flops", "faster_rcnn_r101_c4"]) == 0
    assert "faster_rcnn_r101_c4 at 600x1000" in capsys.readouterr().out
    assert main(["flops", "faster_rcnn_vgg16", "--shortcut", "A"]) == 2
    assert "backbones only" in capsys.readouterr().err
