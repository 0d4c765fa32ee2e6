"""backbones.fused: one oneDNN call for conv + ReLU / add, the same numbers as the eager ops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

import backbones.fused as fused
from backbones import backbone_arguments, build_backbone, fold_frozen_bn
from backbones.fused import conv_add, conv_relu, fused_dtype
from backbones.layers import FrozenBatchNorm2d
from backbones.resnet import Projection
from detection.modeling.fpn import FPN
from engine.amp import cpu_has_native_bf16

CL = torch.channels_last


@contextmanager
def eager_only() -> Iterator[None]:
    """Every fused function takes its eager branch (what the model computed before)."""
    original = fused.fused_dtype
    fused.fused_dtype = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        fused.fused_dtype = original


def pointwise_calls(fn: Callable[[], object]) -> int:
    """How many fused oneDNN convolutions ``fn`` ran."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if "_convolution_pointwise" in e.key)


def folded(name: str, randomize_norms: Callable[..., nn.Module], **kwargs: object) -> nn.Module:
    """A backbone with random frozen-BN statistics folded into its convs (where it has norms),
    channels_last."""
    if "norm" in backbone_arguments(name):
        kwargs = {"norm": "frozen_bn", **kwargs}
    model = randomize_norms(build_backbone(name, **kwargs)).eval()
    return fold_frozen_bn(model).to(memory_format=CL)


def test_conv_relu_by_hand() -> None:
    conv = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(-3.0)
    x = torch.tensor([1.0, 2.0, 0.5, 4.0]).view(1, 1, 2, 2).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert fused_dtype(conv, None, x) == torch.float32
        assert conv_relu(conv, x).flatten().tolist() == [0.0, 1.0, 0.0, 5.0]  # max(2x - 3, 0)
        residual = torch.full((1, 1, 2, 2), 1.0).contiguous(memory_format=CL)
        out = conv_add(conv, x, residual, relu=True)  # max(2x - 3 + 1, 0)
        assert out.flatten().tolist() == [0.0, 2.0, 0.0, 6.0]
        assert residual.flatten().tolist() == [1.0] * 4  # not overwritten unless asked
        out = conv_add(conv, x, residual, overwrite=True)  # 2x - 2, no ReLU
        assert out.flatten().tolist() == [0.0, 2.0, -1.0, 6.0]
        assert out.data_ptr() == residual.data_ptr()


def test_eager_where_fusion_would_not_be_the_same_computation() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1)
    x = torch.randn(1, 2, 5, 5)
    with torch.inference_mode():
        assert fused_dtype(conv, None, x) is None  # NCHW
        x = x.contiguous(memory_format=CL)
        assert fused_dtype(conv, None, x) == torch.float32
        assert fused_dtype(conv, nn.Identity(), x) == torch.float32  # a folded norm
        assert fused_dtype(conv, FrozenBatchNorm2d(2), x) is None  # a norm still there
        assert fused_dtype(conv.bfloat16(), None, x) is None  # bf16 weights outside autocast
    assert fused_dtype(conv.float(), None, x) is None  # autograd on: training


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet50", {"base_width": 16}),  # bottlenecks, projection shortcuts (B)
        ("resnet18", {"base_width": 16, "shortcut": "A"}),  # basic blocks, zero-padding
        ("resnet18", {"base_width": 16, "shortcut": "C"}),  # projections everywhere
        ("plain18", {"base_width": 16}),  # no shortcut
        ("vgg16", {"base_width": 8}),  # conv + ReLU pairs in one Sequential
        ("vgg16_bn", {"base_width": 8}),  # conv + norm + ReLU
    ],
)
def test_fused_trunk_matches_eager_in_fp32(
    name: str, kwargs: dict[str, object], randomize_norms: Callable[..., nn.Module]
) -> None:
    model = folded(name, randomize_norms, **kwargs)
    x = torch.randn(2, 3, 96, 128).contiguous(memory_format=CL)
    with torch.inference_mode():
        features = model.forward_features(x)
        with eager_only():
            expected = model.forward_features(x)
        calls = pointwise_calls(lambda: model.forward_features(x))
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    projections = sum(isinstance(m, Projection) for m in model.modules())
    assert calls == convs - projections  # all but the projections, which have no pointwise op
    for key in expected:  # oneDNN may pick another kernel for a post-op: rounding only
        torch.testing.assert_close(features[key], expected[key], rtol=1e-5, atol=1e-5)


def test_unfolded_or_training_trunk_runs_eager(randomize_norms: Callable[..., nn.Module]) -> None:
    model = randomize_norms(build_backbone("resnet18", norm="frozen_bn", base_width=8)).eval()
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert pointwise_calls(lambda: model(x)) == 0  # norms not folded
    fold_frozen_bn(model)
    assert pointwise_calls(lambda: model(x).sum().backward()) == 0  # autograd


def test_fused_fpn_matches_eager_in_fp32() -> None:
    torch.manual_seed(0)
    fpn = FPN(["c2", "c3", "c4"], [16, 32, 64], out_channels=24).eval().to(memory_format=CL)
    sizes = {"c2": (32, 40), "c3": (16, 20), "c4": (8, 10)}
    feats = {
        k: torch.randn(1, c, *sizes[k]).contiguous(memory_format=CL)
        for k, c in zip(sizes, [16, 32, 64])
    }
    with torch.inference_mode():
        out = fpn(feats)
        with eager_only():
            expected = fpn(feats)
        assert pointwise_calls(lambda: fpn(feats)) == 2  # the two top-down merges
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=1e-5)


def relative_error(out: dict[str, Tensor], ref: dict[str, Tensor]) -> float:
    return max(((out[k].float() - ref[k]).norm() / ref[k].norm()).item() for k in ref)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="needs a CPU with native bf16")
def test_fused_bf16_is_at_least_as_close_to_fp32(
    randomize_norms: Callable[..., nn.Module],
) -> None:
    """In bf16 the fused add runs before the one rounding to bf16 (eager rounds the conv's
    output, then the sum): its error against fp32 is no larger. Measured on ResNet-50 at
    800 x 1066: 0.0033 eager, 0.0030 fused (relative L2, c2)."""
    model = folded("resnet50", randomize_norms, base_width=16)
    x = torch.randn(1, 3, 128, 160).contiguous(memory_format=CL)
    with torch.inference_mode():
        reference = model.forward_features(x)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.bfloat16()  # as cast_for_autocast stores them
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.forward_features(x)
            with eager_only():
                eager = model.forward_features(x)
    assert all(v.dtype == torch.bfloat16 for v in out.values())
    assert relative_error(out, reference) < 0.01
    assert relative_error(out, reference) <= 1.1 * relative_error(eager, reference)


def test_modules_with_hooks_are_called_one_by_one(
    randomize_norms: Callable[..., nn.Module],
) -> None:
    """A forward hook sees its module run, fused or folded path or not (calibration, feature
    taps): the hooked modules take the eager ops, the others keep the fast paths."""
    model = randomize_norms(build_backbone("resnet18", norm="frozen_bn", base_width=8)).train()
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=CL)
    block = model.res3[0]
    seen: list[str] = []
    block.bn1.register_forward_pre_hook(lambda module, args: seen.append("bn1"))
    model(x).sum().backward()  # training: FrozenBN folded into the weights, except bn1's
    assert seen == ["bn1"]
    fold_frozen_bn(model.eval())
    block.conv2.register_forward_hook(lambda module, args, out: seen.append("conv2"))
    with torch.inference_mode():
        out = model.forward_features(x)
        calls = pointwise_calls(lambda: model.forward_features(x))
        with eager_only():
            expected = model.forward_features(x)
    assert seen == ["bn1", "conv2", "conv2", "conv2"]
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    projections = sum(isinstance(m, Projection) for m in model.modules())
    assert calls == convs - projections - 1  # all but the hooked conv2 (and the projections)
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_hooked_relu_modules_still_run(
    name: str, randomize_norms: Callable[..., nn.Module]
) -> None:
    """The stem's and VGG's ReLU modules are taps people hook (style losses on VGG's
    relu3_3): a hooked one runs as a module, on the fused path and off it."""
    model = folded(name, randomize_norms, base_width=8)
    relu = model.stem.relu if name == "resnet18" else model.features[1]
    seen: list[float] = []
    relu.register_forward_hook(lambda module, args, out: seen.append(float(out.min())))
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=CL)
    with torch.inference_mode():
        out = model.forward_features(x)
        with eager_only():
            expected = model.forward_features(x)
    assert len(seen) == 2 and min(seen) >= 0
    for key in expected:
        torch.testing.assert_close(out[key], expected[key], rtol=1e-5, atol=1e-5)
