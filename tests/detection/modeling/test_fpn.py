"""FPN: the top-down merge by hand and equality with torchvision's FeaturePyramidNetwork."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from detection.modeling.fpn import FPN


def _inputs(sizes: list[int], channels: list[int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        f"c{k + 2}": torch.randn(1, c, s, s + 1, generator=g)
        for k, (s, c) in enumerate(zip(sizes, channels))
    }


def test_top_down_merge_by_hand() -> None:
    fpn = FPN(["c2", "c3", "c4", "c5"], [4, 8, 16, 32], out_channels=6)
    feats = _inputs([32, 16, 8, 4], [4, 8, 16, 32])
    out = fpn(feats)
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [
        (32, 33),
        (16, 17),
        (8, 9),
        (4, 5),
        (2, 3),
    ]
    with torch.no_grad():
        m5 = fpn.lateral[3](feats["c5"])
        m4 = fpn.lateral[2](feats["c4"]) + F.interpolate(m5, size=(8, 9), mode="nearest")
        torch.testing.assert_close(out["p5"], fpn.output[3](m5))
        torch.testing.assert_close(out["p4"], fpn.output[2](m4))
    assert torch.equal(out["p6"], out["p5"][..., ::2, ::2])  # 1x1 max pool, stride 2


def test_equal_to_torchvision_fpn() -> None:
    channels = [4, 8, 16, 32]
    ours = FPN(["c2", "c3", "c4", "c5"], channels, out_channels=6)
    tv = FeaturePyramidNetwork(channels, 6, extra_blocks=LastLevelMaxPool())
    state = {}
    for i in range(4):
        for p in ("weight", "bias"):
            state[f"inner_blocks.{i}.0.{p}"] = getattr(ours.lateral[i], p)
            state[f"layer_blocks.{i}.0.{p}"] = getattr(ours.output[i], p)
    tv.load_state_dict(state)
    feats = _inputs([40, 20, 10, 5], channels)  # odd sizes: upsampling goes by size, not x2
    expected = tv(OrderedDict(feats))
    for a, b in zip(ours(feats).values(), expected.values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
