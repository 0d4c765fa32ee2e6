"""torch.fx and torchvision's feature extraction on every backbone: the fast paths step aside
(engine.fastpath) and the traced graph computes what the module computes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.fx
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from backbones import BACKBONES, backbone_arguments, build_backbone, fold_frozen_bn
from engine.fastpath import graph_recording, plain_ops_required

# every family and depth; the 1202-layer CIFAR nets trace the same blocks 200 times more
NAMES = [name for name in BACKBONES if "1202" not in name]


def small(name: str, **kwargs: object) -> nn.Module:
    if "base_width" in backbone_arguments(name):
        kwargs = {"base_width": 8, **kwargs}
    return build_backbone(name, **kwargs).eval()


@pytest.mark.parametrize("name", NAMES)
def test_symbolic_trace_computes_what_the_module_computes(name: str) -> None:
    model = small(name)
    x = torch.randn(2, 3, 64, 64)
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), rtol=0, atol=0)


# one of each block type: basic, bottleneck, plain, CIFAR, VGG with and without norms
@pytest.mark.parametrize(
    ("name", "node"),
    [
        ("resnet18", "res4"),
        ("resnet50", "res5"),
        ("plain18", "res3"),
        ("resnet20", "res4"),
        ("vgg16", "features.29"),  # conv5_3's ReLU
        ("vgg16_bn", "features.22"),  # conv4_3's ReLU
    ],
)
def test_feature_extractor_taps_a_stage_by_module_name(name: str, node: str) -> None:
    model = small(name)
    x = torch.randn(2, 3, 64, 64)
    extractor = create_feature_extractor(model, {node: "tap"})
    with torch.no_grad():
        feats = model.forward_features(x)
        expected = next(v for v in feats.values() if v.shape == extractor(x)["tap"].shape)
        torch.testing.assert_close(extractor(x)["tap"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet50", "vgg16_bn"])
def test_traced_folded_inference_model_holds_no_fused_call(
    name: str, randomize_norms: Callable[..., nn.Module]
) -> None:
    """The CPU inference model (norms folded, channels_last): tracing records the plain modules,
    not oneDNN's fused op, and the graph gives the fused eager path's numbers."""
    model = fold_frozen_bn(randomize_norms(small(name, norm="frozen_bn")))
    model = model.to(memory_format=torch.channels_last)
    graph = torch.fx.symbolic_trace(model)
    targets = [str(node.target) for node in graph.graph.nodes]
    assert not any("pointwise" in t or "mkldnn" in t for t in targets)
    relus = {n for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    called = {str(node.target) for node in graph.graph.nodes if node.op == "call_module"}
    assert relus and relus <= called  # the model's ReLU modules run as modules (hookable taps)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(graph(x), model(x), rtol=1e-5, atol=1e-5)


def test_the_one_decision() -> None:
    x = torch.zeros(1)
    conv = nn.Conv2d(1, 1, 1)
    assert not graph_recording(x) and not plain_ops_required(x, conv)
    handle = conv.register_forward_hook(lambda *args: None)
    assert plain_ops_required(x, conv) and not plain_ops_required(x, nn.Conv2d(1, 1, 1))
    handle.remove()
    tracer_input = torch.fx.Proxy(torch.fx.Graph().placeholder("x"))
    assert graph_recording(tracer_input) and plain_ops_required(tracer_input)
    global_hook = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert plain_ops_required(x)  # a global hook watches every module
    finally:
        global_hook.remove()
