"""Small detector configs and batches for the modeling tests (narrow nets, 128 px images)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from detection.config import Config
from detection.structures import ImageBatch, Targets


def make_config(arch: str, backbone: str | None = None, num_classes: int = 3) -> Config:
    """A narrow (base_width 16) detector of the given arch with small anchors for 128 px."""
    cfg = Config()
    cfg.model.arch = arch
    cfg.model.num_classes = num_classes
    cfg.model.backbone.name = (
        backbone or {"c4": "resnet18", "vgg": "vgg16", "fpn": "resnet18"}[arch]
    )
    cfg.model.backbone.base_width = 16
    cfg.model.anchors.sizes = [[16.0, 32.0, 64.0]]
    cfg.model.rpn.pre_nms_topk_test = 200
    cfg.model.rpn.post_nms_topk_test = 50
    cfg.model.rpn.pre_nms_topk_train = 200
    cfg.model.rpn.post_nms_topk_train = 50
    if arch == "vgg":
        cfg.model.roi_heads.pooler_resolution = 7
    if arch == "fpn":
        cfg.model.rpn.in_features = ["p2", "p3", "p4", "p5", "p6"]
        cfg.model.anchors.sizes = [[8.0], [16.0], [32.0], [64.0], [128.0]]
        cfg.model.roi_heads.pooler_type = "roi_align"
        cfg.model.roi_heads.pooler_resolution = 7
        cfg.model.roi_heads.fc_dim = 64
        cfg.model.fpn.out_channels = 32
    return cfg


@pytest.fixture
def small_config() -> Callable[..., Config]:
    return make_config


def make_batch(images: torch.Tensor) -> ImageBatch:
    """An ImageBatch whose images fill the whole (N, 3, H, W) tensor, scale 1."""
    n, _, h, w = images.shape
    return ImageBatch(
        images, [(h, w)] * n, [(h, w)] * n, [(1.0, 1.0)] * n, [False] * n, list(range(n))
    )


@pytest.fixture
def tiny_batch() -> tuple[ImageBatch, list[Targets]]:
    """Two random 128x128 images; one with two objects (one ignored), one with none."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 128, 128, generator=g)
    targets = [
        Targets(
            torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 60.0, 120.0, 110.0]]),
            torch.tensor([1, 2]),
            torch.tensor([False, True]),
        ),
        Targets(
            torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
        ),
    ]
    return make_batch(images), targets
