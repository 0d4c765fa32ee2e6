"""VGG-16/19: torchvision's layout and counts, conv1..conv5 features, fc67 head, freezing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from backbones import build_backbone, count_params
from engine.errors import UserError


@pytest.mark.parametrize(
    ("name", "params"),
    [("vgg16", 138_357_544), ("vgg19", 143_667_240), ("vgg16_bn", None), ("vgg19_bn", None)],
)
def test_param_counts_and_keys_match_torchvision(name: str, params: int | None) -> None:
    with torch.device("meta"):
        ours = build_backbone(name)
        reference = getattr(torchvision.models, name)(weights=None)
    assert count_params(ours) == count_params(reference)
    if params is not None:
        assert count_params(ours) == params
    ours_features = [k for k in ours.state_dict() if k.startswith("features.")]
    ref_features = [k for k in reference.state_dict() if k.startswith("features.")]
    assert ours_features == ref_features  # 1:1 layout, same indices


def test_conv_indices_are_torchvisions() -> None:
    with torch.device("meta"):
        names = build_backbone("vgg16").conv_indices()
    assert list(names.values()) == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert names["conv1_1"] == 0 and names["conv5_3"] == 28


def test_features_are_before_each_pool(images: torch.Tensor) -> None:
    model = build_backbone("vgg16_bn", base_width=8, num_classes=5).eval()
    with torch.no_grad():
        feats = model.forward_features(images)
        logits = model(images)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "conv1": (2, 8, 64, 64),
        "conv2": (2, 16, 32, 32),
        "conv3": (2, 32, 16, 16),
        "conv4": (2, 64, 8, 8),
        "conv5": (2, 64, 4, 4),
    }
    assert model.strides == {"conv1": 1, "conv2": 2, "conv3": 4, "conv4": 8, "conv5": 16}
    assert all(f.min() >= 0 for f in feats.values())  # outputs of a ReLU
    assert logits.shape == (2, 5)
    # conv5 is conv5_3's ReLU: rerun features up to (not including) pool5 by hand
    with torch.no_grad():
        assert torch.equal(model.features[: model.pool_indices[-1]](images), feats["conv5"])


def test_fc67_is_the_rois_head() -> None:
    model = build_backbone("vgg16", base_width=8)
    kinds = [type(m) for m in model.fc67]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]
    assert model.fc67[0].in_features == 64 * 7 * 7 and model.fc67[0].out_features == 512
    assert isinstance(model.fc8, nn.Linear) and model.fc8.out_features == 1000


def test_out_features_stop_early(images: torch.Tensor) -> None:
    model = build_backbone("vgg16", base_width=8).eval()
    calls: list[int] = []
    model.features[28].register_forward_hook(lambda *_: calls.append(28))  # conv5_3
    feats = model.forward_features(images, out_features=("conv3",))
    assert list(feats) == ["conv3"] and calls == []


def test_freeze_at_counts_conv_blocks() -> None:
    model = build_backbone("vgg16", base_width=8, freeze_at=2)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == [f"features.{i}.{w}" for i in (0, 2, 5, 7) for w in ("weight", "bias")]
    with pytest.raises(UserError, match="freeze_at=6"):
        build_backbone("vgg16", base_width=8, freeze_at=6)
