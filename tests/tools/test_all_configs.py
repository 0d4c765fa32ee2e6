"""Every config in configs/ loads (strictly) and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones.build import build_from_config
from backbones.pretrain.config import load_config as load_pretrain_config
from detection.config import load_config
from detection.modeling.build import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# configs/mini: the miniature comparisons (CIFAR-10 JPEGs / Tiny ImageNet pretraining, then
# detection), both stages side by side
MINI_DETECTION = [
    CONFIGS / "mini/_raccoon_detector.yaml",
    CONFIGS / "mini/_bccd_detector.yaml",
    CONFIGS / "mini/_tinyimagenet_detector.yaml",
    CONFIGS / "mini/_raccoon_tinyimagenet_detector.yaml",
    *(CONFIGS / "mini").glob("faster_rcnn_*"),
]
DETECTION = sorted([*(CONFIGS / "detection").glob("*.yaml"), *MINI_DETECTION])
PRETRAIN = sorted(
    [
        *(CONFIGS / "pretrain").glob("*.yaml"),
        *(CONFIGS / "mini").glob("*cifar10jpg.yaml"),
        *(CONFIGS / "mini").glob("*tinyimagenet.yaml"),
    ]
)


def test_every_mini_config_is_tested():
    assert {*DETECTION, *PRETRAIN} >= set((CONFIGS / "mini").glob("*.yaml"))
    tiny = {p.stem for p in (CONFIGS / "mini").glob("*_w16_tinyimagenet.yaml")}
    assert tiny == {
        f"{net}_w16_tinyimagenet" for net in ("vgg16", "resnet18", "resnet50", "resnet101")
    }


def test_the_paper_runs_are_all_there():
    names = {p.stem for p in DETECTION}
    for net in ("vgg16", "r101_c4"):
        for data in ("voc0712", "voc07plus12", "coco"):
            assert f"faster_rcnn_{net}_{data}" in names
    assert {"faster_rcnn_r50_fpn_coco_1x", "quickstart", "torchvision_r50_fpn_coco"} <= names


@pytest.mark.parametrize("path", DETECTION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_detection_config_builds(path: Path):
    cfg = load_config(path)
    with torch.device("meta"):  # shapes and wiring only: no memory, no weight files needed
        model = build_model(cfg, load_backbone_weights=False)
    outputs = model.roi_heads.predictor.cls_score.out_features
    assert outputs == cfg.model.num_classes + 1


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_pretrain_config_builds(path: Path):
    cfg = load_pretrain_config(path)
    with torch.device("meta"):
        model = build_from_config(cfg.model.backbone, cfg.model.num_classes)
    assert sum(p.numel() for p in model.parameters()) > 0
