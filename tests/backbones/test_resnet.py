"""ImageNet ResNets: parameter counts, shortcut options, layouts, features, freezing, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from backbones import build_backbone, count_params
from backbones.layers import FrozenBatchNorm2d
from backbones.resnet import BasicBlock, PadShortcut, Projection
from engine.errors import UserError

# torchvision's counts (and the paper's Table 1 nets with a 1000-way fc, option B)
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def meta(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_param_counts_equal_torchvision(name: str) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
    assert count_params(meta(name)) == TORCHVISION_PARAMS[name] == count_params(reference)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_option_a_has_exactly_the_plain_twins_parameters(depth: int) -> None:
    assert count_params(meta(f"resnet{depth}", shortcut="A")) == count_params(meta(f"plain{depth}"))


def test_option_c_adds_a_projection_to_every_identity_block() -> None:
    # ResNet-18 blocks with identity shortcuts under B: res2.0, res2.1, res3.1, res4.1, res5.1;
    # each gets a 1x1 conv (c*c) + BN (2c)
    extra = 2 * (64 * 64 + 128) + (128 * 128 + 256) + (256 * 256 + 512) + (512 * 512 + 1024)
    assert extra == 354_304
    assert count_params(meta("resnet18", shortcut="C")) == 11_689_512 + extra
    model = meta("resnet18", shortcut="C")
    assert all(isinstance(b.shortcut, Projection) for s in model.stages()[1:] for b in s)


def test_pad_shortcut_subsamples_and_zero_pads_by_hand() -> None:
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    out = PadShortcut(stride=2, extra_channels=2)(x)
    expected = torch.zeros(1, 3, 2, 2)
    # pixels (0,0) (0,2) (2,0) (2,2), between one zero channel before and one after
    expected[0, 1] = torch.tensor([[1.0, 3.0], [9.0, 11.0]])
    assert torch.equal(out, expected)


def test_pad_shortcut_splits_odd_padding_before_and_after() -> None:
    out = PadShortcut(stride=1, extra_channels=3)(torch.ones(1, 2, 1, 1))
    assert out.flatten().tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_option_a_block_adds_padded_input() -> None:
    block = BasicBlock(1, 2, stride=2, norm="bn", shortcut="A").eval()
    assert isinstance(block.shortcut, PadShortcut)
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    with torch.no_grad():  # a zero residual branch leaves relu(shortcut(x))
        block.conv1.weight.zero_()
        block.conv2.weight.zero_()
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    expected = torch.zeros(1, 2, 2, 2)
    expected[0, 0] = torch.tensor([[1.0, 3.0], [9.0, 11.0]])  # extra 1: 0 before, 1 after
    assert torch.equal(block(x), expected)


def test_option_b_projects_only_where_dimensions_change() -> None:
    model = meta("resnet50")
    kinds = {
        f"{stage}.{i}": type(block.shortcut).__name__
        for stage in ("res2", "res3", "res4", "res5")
        for i, block in enumerate(model.get_submodule(stage))
    }
    projections = {k for k, v in kinds.items() if v == "Projection"}
    assert projections == {"res2.0", "res3.0", "res4.0", "res5.0"}
    assert {v for k, v in kinds.items() if k not in projections} == {"Identity"}


def test_plain_nets_have_no_shortcut() -> None:
    model = meta("plain34")
    assert all(b.shortcut is None for s in model.stages()[1:] for b in s)
    with pytest.raises(UserError, match="does not take shortcut"):
        build_backbone("plain34", shortcut="A")


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_placement(stride_in_1x1: bool) -> None:
    block = meta("resnet50", stride_in_1x1=stride_in_1x1).res3[0]
    on_1x1, on_3x3 = ((2, 2), (1, 1)) if stride_in_1x1 else ((1, 1), (2, 2))
    assert (block.conv1.stride, block.conv2.stride) == (on_1x1, on_3x3)
    assert block.shortcut.conv.stride == (2, 2)


@pytest.mark.parametrize(
    ("name", "channels"),
    [("resnet18", (16, 32, 64, 128)), ("resnet50", (64, 128, 256, 512))],
)
def test_forward_features_shapes_and_strides(
    name: str, channels: tuple[int, ...], images: torch.Tensor
) -> None:
    model = build_backbone(name, base_width=16, num_classes=7).eval()
    with torch.no_grad():
        feats = model.forward_features(images)
        logits = model(images)
    assert list(feats) == ["c2", "c3", "c4", "c5"]
    assert model.strides == {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
    assert tuple(model.out_channels.values()) == channels
    for key, feat in feats.items():
        side = 64 // model.strides[key]
        assert feat.shape == (2, model.out_channels[key], side, side)
    assert logits.shape == (2, 7)
    assert torch.equal(logits, model.forward_head(feats))


def test_out_features_stop_at_the_deepest_requested(images: torch.Tensor) -> None:
    model = build_backbone("resnet18", base_width=8).eval()
    calls: list[str] = []
    model.res5.register_forward_hook(lambda *_: calls.append("res5"))
    feats = model.forward_features(images, out_features=("c4",))
    assert list(feats) == ["c4"] and feats["c4"].shape == (2, 32, 4, 4)
    assert calls == []
    feats = model.forward_features(images, out_features=("c5", "c2"))
    assert list(feats) == ["c2", "c5"] and calls == ["res5"]
    with pytest.raises(UserError, match=r"'p4'.*c2, c3, c4, c5"):
        model.forward_features(images, out_features=("p4",))


def test_res5_runs_on_its_own() -> None:
    model = build_backbone("resnet50", base_width=8).eval()
    roi_features = torch.randn(3, model.out_channels["c4"], 14, 14)  # pooled RoIs from c4
    assert model.res5(roi_features).shape == (3, model.out_channels["c5"], 7, 7)


@pytest.mark.parametrize(
    ("freeze_at", "frozen_prefixes"),
    [
        (0, ()),
        (1, ("stem.",)),
        (2, ("stem.", "res2.")),
        (5, ("stem.", "res2.", "res3.", "res4.", "res5.")),
    ],
)
def test_freeze_at(freeze_at: int, frozen_prefixes: tuple[str, ...]) -> None:
    model = build_backbone("resnet18", base_width=8, freeze_at=freeze_at)
    names = [n for n, _ in model.named_parameters()]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == [n for n in names if not n.startswith(frozen_prefixes)]
    if freeze_at == 5:  # only fc: 64 * 1000 + 1000
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 65_000


def test_norm_choices() -> None:
    frozen = build_backbone("resnet18", base_width=8, norm="frozen_bn")
    assert isinstance(frozen.stem.bn1, FrozenBatchNorm2d)
    assert isinstance(frozen.res3[0].shortcut.bn, FrozenBatchNorm2d)
    bn = build_backbone("resnet18", base_width=8)
    bn_params = sum(m.weight.numel() * 2 for m in bn.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_params(frozen) == count_params(bn) - bn_params  # FrozenBN holds buffers only
    sync = build_backbone("resnet18", base_width=8, norm="syncbn")
    assert isinstance(sync.res2[0].bn1, nn.SyncBatchNorm)


def test_he_init_and_zero_init_residual() -> None:
    model = build_backbone("resnet50", base_width=8)
    block = model.res2[0]
    assert torch.equal(block.bn3.weight, torch.ones(32))
    assert torch.equal(block.bn3.bias, torch.zeros(32))
    fan_out = 8 * 3 * 3  # kaiming fan_out: std = sqrt(2 / fan_out)
    assert abs(block.conv2.weight.std().item() - (2 / fan_out) ** 0.5) < 0.05
    zeroed = build_backbone("resnet50", base_width=8, zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for s in zeroed.stages()[1:] for b in s)
    assert zeroed.res2[0].bn2.weight.abs().sum() == 8  # only the last norm


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet51", {}, "'resnet51' is not known.*resnet50.*vgg16.*resnet110"),
        ("resnet18", {"shortcut": "D"}, "shortcut='D'.*A, B, C"),
        ("resnet18", {"norm": "gn"}, "norm 'gn'.*bn, frozen_bn, syncbn"),
        ("resnet18", {"freeze_at": 6}, "freeze_at=6.*0..5"),
        ("resnet18", {"base_width": 0}, "base_width=0"),
        ("resnet18", {"out_features": ("c4",)}, "does not take out_features"),
        ("vgg16", {"norm": "bn"}, "'vgg16' does not take norm; it takes num_classes"),
        ("vgg16_bn", {"shortcut": "B"}, "'vgg16_bn' does not take shortcut"),
        ("resnet20", {"stride_in_1x1": True}, "'resnet20' does not take stride_in_1x1"),
        ("plain50", {"zero_init_residual": True}, "does not take zero_init_residual"),
    ],
)
def test_user_errors(name: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_backbone(name, **kwargs)
