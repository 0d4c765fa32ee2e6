"""count_params / count_macs: hand-counted layers and the paper's complexities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones import build_backbone, count_macs, count_params


def test_hand_counted_conv_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8 * 3 * 9 MACs per output pixel, 32 * 32 pixels
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # not counted, as in the paper
        nn.Flatten(),
        nn.Linear(8, 5),  # 40 MACs
    ).train()
    assert count_macs(model, (32, 32)) == 8 * 3 * 9 * 32 * 32 + 8 * 5 == 221_224
    assert count_params(model) == 8 * 3 * 9 + 8 + 8 * 5 + 5
    assert model.training  # put back in its mode


def test_frozen_parameters_still_count() -> None:
    model = build_backbone("resnet18", base_width=8, freeze_at=5)
    assert count_params(model) == count_params(build_backbone("resnet18", base_width=8))


# The paper's Table 1 complexities as a faithful count gives them (reference/NUMBERS.md)
@pytest.mark.parametrize(
    ("name", "kwargs", "gmacs"),
    [
        ("resnet34", {"stride_in_1x1": True}, 3.66),
        ("resnet50", {"stride_in_1x1": True}, 3.86),
        ("resnet101", {"stride_in_1x1": True}, 7.57),
        ("resnet152", {"stride_in_1x1": True}, 11.28),
        ("resnet50", {}, 4.09),  # torchvision's stride on the 3x3
        ("vgg16", {}, 15.47),
        ("vgg19", {}, 19.63),
    ],
)
def test_gmacs_at_224(name: str, kwargs: dict[str, object], gmacs: float) -> None:
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_backbone(name, **kwargs)
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, rel=0.005)


def test_meta_count_equals_real_count() -> None:
    real = build_backbone("resnet18", base_width=8)
    with torch.device("meta"):
        fake = build_backbone("resnet18", base_width=8)
    assert count_macs(real, (64, 64)) == count_macs(fake, (64, 64)) > 0
