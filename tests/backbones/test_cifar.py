"""CIFAR nets (6n+2 layers, option A): parameter counts, shapes, plain twins."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones import build_backbone, cifar_resnet, count_params
from backbones.cifar import CIFAR_NETS
from backbones.resnet import PadShortcut


def hand_count(n: int) -> int:
    """Parameters of a 6n+2 CIFAR ResNet (option A, BN, 10 classes), layer by layer."""

    def conv(c_in: int, c_out: int) -> int:  # 3x3 conv without bias + BN
        return 9 * c_in * c_out + 2 * c_out

    stem = conv(3, 16)
    stage1 = n * 2 * conv(16, 16)
    stage2 = conv(16, 32) + conv(32, 32) + (n - 1) * 2 * conv(32, 32)
    stage3 = conv(32, 64) + conv(64, 64) + (n - 1) * 2 * conv(64, 64)
    return stem + stage1 + stage2 + stage3 + 64 * 10 + 10


def test_names_and_depths() -> None:
    assert set(CIFAR_NETS) == {
        f"{k}{d}" for k in ("resnet", "plain") for d in (20, 32, 44, 56, 110, 1202)
    }


@pytest.mark.parametrize(
    ("name", "n", "millions"),
    [("resnet20", 3, 0.27), ("resnet110", 18, 1.7), ("resnet1202", 200, 19.4)],
)
def test_param_counts_as_in_the_paper(name: str, n: int, millions: float) -> None:
    with torch.device("meta"):
        model = build_backbone(name)
    params = count_params(model)
    assert params == hand_count(n)
    assert round(params / 1e6, 1 if millions >= 1 else 2) == millions
    if name == "resnet110":
        assert params == 1_727_962 and round(params / 1e6, 2) == 1.73


def test_option_a_equals_plain_twin_and_has_6n_plus_2_layers() -> None:
    with torch.device("meta"):
        res, plain = build_backbone("resnet56"), build_backbone("plain56")
    assert count_params(res) == count_params(plain)
    weighted = [m for m in res.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 6 * 9 + 2
    pads = [m for m in res.modules() if isinstance(m, PadShortcut)]
    assert [(p.stride, p.extra_channels) for p in pads] == [(2, 16), (2, 32)]


def test_shapes_strides_and_logits() -> None:
    model = build_backbone("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "c2": (2, 16, 32, 32),
        "c3": (2, 32, 16, 16),
        "c4": (2, 64, 8, 8),
    }
    assert model.strides == {"c2": 1, "c3": 2, "c4": 4}
    assert model.out_channels == {"c2": 16, "c3": 32, "c4": 64}
    assert logits.shape == (2, 10)


def test_any_n_and_base_width() -> None:
    model = cifar_resnet(1, base_width=4, num_classes=3)
    assert model.out_channels == {"c2": 4, "c3": 8, "c4": 16}
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert cifar_resnet(2, shortcut=None).res2[0].shortcut is None


def test_freeze_at_all_stages_leaves_fc() -> None:
    model = build_backbone("resnet20", freeze_at=4)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
