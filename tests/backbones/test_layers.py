"""FrozenBatchNorm2d, BN -> FrozenBN conversion and BN folding."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from backbones import build_backbone
from backbones.layers import (
    BATCH_NORMS,
    FrozenBatchNorm2d,
    convert_to_frozen_bn,
    fold_frozen_bn,
    make_norm,
)
from engine.errors import UserError


def test_frozen_bn_by_hand() -> None:
    norm = FrozenBatchNorm2d(1)
    norm.weight.fill_(2.0)
    norm.bias.fill_(1.0)
    norm.running_mean.fill_(3.0)
    norm.running_var.fill_(4.0 - norm.eps)  # sqrt(var + eps) = 2
    x = torch.tensor([3.0, 5.0, -1.0]).view(1, 1, 1, 3)
    assert torch.allclose(norm(x), (x - 3) / 2 * 2 + 1)  # = x - 2
    assert list(dict(norm.named_parameters())) == []


def test_frozen_bn_keeps_dtype_and_memory_format() -> None:
    norm = FrozenBatchNorm2d(2)
    norm.weight.copy_(torch.tensor([2.0, -1.0]))
    norm.bias.copy_(torch.tensor([0.5, 1.0]))
    x = torch.arange(16.0).view(1, 2, 2, 4).contiguous(memory_format=torch.channels_last)
    y = norm(x)  # scale = weight (var + eps = 1), shift = bias
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y[0, 0], x[0, 0] * 2 + 0.5) and torch.equal(y[0, 1], 1 - x[0, 1])
    assert norm(x.bfloat16()).dtype == torch.bfloat16


def test_fresh_frozen_bn_is_identity() -> None:
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(FrozenBatchNorm2d(4)(x), x, atol=1e-6)


def test_frozen_bn_loads_a_bn_state_dict_and_matches_eval_bn(
    randomize_norms: Callable[..., nn.Module],
) -> None:
    bn = randomize_norms(nn.BatchNorm2d(8)).eval()
    frozen = FrozenBatchNorm2d(8)
    result = frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(frozen(x), bn(x), atol=1e-6)


def test_convert_to_frozen_bn_keeps_eval_outputs(
    randomize_norms: Callable[..., nn.Module], images: torch.Tensor
) -> None:
    model = randomize_norms(build_backbone("resnet18", base_width=8)).eval()
    with torch.no_grad():
        before = model(images)
        convert_to_frozen_bn(model)
        after = model(images)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 20
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "norm"),
    [("resnet18", "bn"), ("resnet50", "frozen_bn"), ("vgg16_bn", "bn"), ("resnet20", "bn")],
)
def test_fold_keeps_outputs(
    name: str, norm: str, randomize_norms: Callable[..., nn.Module], images: torch.Tensor
) -> None:
    base_width = 4 if name == "resnet20" else 8
    model = randomize_norms(build_backbone(name, base_width=base_width, norm=norm)).eval()
    with torch.no_grad():
        before = model.forward_features(images)
        before_logits = model.forward_head(before)
        fold_frozen_bn(model)
        after = model.forward_features(images)
        after_logits = model.forward_head(after)
    assert not any(isinstance(m, BATCH_NORMS) for m in model.modules())
    for key in before:
        assert (before[key] - after[key]).abs().max() < 1e-4, key
        assert before[key].abs().max() > 0.1  # not a comparison of two near-zero tensors
    assert (before_logits - after_logits).abs().max() < 1e-4


def test_fold_by_hand() -> None:
    conv = nn.Conv2d(1, 1, 1, bias=False)
    norm = FrozenBatchNorm2d(1)
    with torch.no_grad():
        conv.weight.fill_(3.0)
        norm.weight.fill_(2.0)
        norm.bias.fill_(1.0)
        norm.running_mean.fill_(0.5)
        norm.running_var.fill_(1.0 - norm.eps)
    model = fold_frozen_bn(nn.Sequential(conv, norm))
    assert isinstance(model[1], nn.Identity)
    # 2 * (3x - 0.5) + 1 = 6x + 0
    assert model[0].weight.item() == pytest.approx(6.0)
    assert model[0].bias.item() == pytest.approx(0.0)


def test_make_norm_unknown() -> None:
    with pytest.raises(UserError, match="norm 'ln' is not known; expected one of bn, frozen_bn"):
        make_norm("ln", 4)
