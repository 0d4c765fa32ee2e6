"""Weight-decay groups and the warm-up x multi-step schedule, at hand-picked iterations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.solver import WarmupMultiStepLR, build_optimizer, param_groups


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def _sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_param_groups_split_norm_bias_and_weights() -> None:
    model = _model()
    conv, bn, _, fc = model
    groups = param_groups(model, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=2e-4)
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["decay", "norm", "bias"]
    assert [id(p) for p in by_name["decay"]["params"]] == [id(conv.weight), id(fc.weight)]
    assert [id(p) for p in by_name["norm"]["params"]] == [id(bn.weight), id(bn.bias)]
    assert [id(p) for p in by_name["bias"]["params"]] == [id(conv.bias), id(fc.bias)]
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0, 2e-4]


def test_param_groups_skip_frozen_and_empty_groups() -> None:
    model = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2))
    model[1].requires_grad_(False)
    groups = param_groups(model, 1e-4, 0.0, 0.0)
    assert [(g["name"], len(g["params"])) for g in groups] == [("decay", 1)]


def test_optimizer_applies_each_groups_decay() -> None:
    # zero gradients: one SGD step changes p by -lr * wd * p exactly (momentum buffer starts at 0)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(
        model, 0.5, 0.9, weight_decay=0.1, weight_decay_norm=0.0, weight_decay_bias=0.2
    )
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    conv, bn, _, fc = model
    torch.testing.assert_close(conv.weight, before[0] * (1 - 0.5 * 0.1))
    torch.testing.assert_close(conv.bias, before[1] * (1 - 0.5 * 0.2))
    torch.testing.assert_close(bn.weight, before[2])
    torch.testing.assert_close(fc.bias, before[5] * (1 - 0.5 * 0.2))


def test_linear_warmup_then_steps() -> None:
    sched = WarmupMultiStepLR(
        _sgd(0.1),
        steps=[20, 30],
        gamma=0.1,
        warmup_iters=10,
        warmup_factor=0.001,
        warmup_method="linear",
    )
    expected = {0: 0.001, 5: 0.5005, 9: 0.9001, 10: 1.0, 19: 1.0, 20: 0.1, 29: 0.1, 30: 0.01}
    for it, factor in expected.items():
        assert sched.factor(it) == pytest.approx(factor, rel=1e-12), it
    assert sched.get_lr() == [pytest.approx(0.1 * 0.001)]
    for _ in range(5):
        sched.step()
    assert sched.get_lr() == [pytest.approx(0.1 * 0.5005)]


def test_constant_warmup() -> None:
    sched = WarmupMultiStepLR(
        _sgd(0.1), steps=[], warmup_iters=3, warmup_factor=0.1, warmup_method="constant"
    )
    lrs = []
    for _ in range(5):
        lrs.append(sched.get_lr()[0])
        sched.step()
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.1, 0.1])


def test_until_error_warmup_leaves_once_error_is_low() -> None:
    # ResNet-110: lr 0.01 (= 0.1 x 0.1) until training error < 80%, then 0.1 for good
    sched = WarmupMultiStepLR(
        _sgd(0.1),
        steps=[4],
        warmup_iters=0,
        warmup_factor=0.1,
        warmup_method="until_error",
        warmup_error=0.8,
    )
    lrs = [sched.get_lr()[0]]
    for err in [0.9, 0.85, 0.79, 0.95, 0.5]:
        sched.step({"train_error": err})
        lrs.append(sched.get_lr()[0])
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.1, 0.01, 0.01])  # step at 4: x0.1


def test_until_error_is_capped_by_warmup_iters() -> None:
    sched = WarmupMultiStepLR(
        _sgd(0.1), steps=[], warmup_iters=2, warmup_factor=0.1, warmup_method="until_error"
    )
    for _ in range(2):
        sched.step({"train_error": 0.99})
    assert sched.get_lr() == [pytest.approx(0.1)]


def test_schedule_state_round_trip() -> None:
    opt = _sgd(0.1)
    sched = WarmupMultiStepLR(
        opt, steps=[3], warmup_iters=0, warmup_factor=0.1, warmup_method="until_error"
    )
    sched.step({"train_error": 0.5})
    sched.step()
    state = sched.state_dict()
    assert state == {"iteration": 2, "error_reached": True}
    fresh = WarmupMultiStepLR(
        _sgd(0.1), steps=[3], warmup_iters=0, warmup_factor=0.1, warmup_method="until_error"
    )
    fresh.load_state_dict(state)
    assert fresh.get_lr() == [pytest.approx(0.1)]
    fresh.step()
    assert fresh.get_lr() == [pytest.approx(0.01)]


def test_bad_schedule_arguments() -> None:
    with pytest.raises(ValueError, match="ascending"):
        WarmupMultiStepLR(_sgd(), steps=[30, 20])
    with pytest.raises(ValueError, match="warmup_method"):
        WarmupMultiStepLR(_sgd(), steps=[], warmup_method="cosine")
