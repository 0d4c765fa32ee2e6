"""Scoring: views averaged per image, top-k errors, 10-crop / multi-scale on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from backbones.build import build_from_config
from backbones.config import BackboneConfig
from backbones.pretrain.evaluation import count_topk_wrong, evaluate, score_views
from backbones.pretrain.readers import ClassificationData
from backbones.pretrain.transforms import eval_views
from engine.errors import UserError

CPU = torch.device("cpu")


class MeanLogit(nn.Module):
    """Logits (mean of channel 0, 0): class 0 wins when the view is bright."""

    def forward(self, x: Tensor) -> Tensor:
        m = x[:, 0].mean((1, 2))
        return torch.stack([m, torch.zeros_like(m)], 1)


class HeightLogit(nn.Module):
    """Logits (view height / 8, 0): tells the scales of multi-scale testing apart."""

    def forward(self, x: Tensor) -> Tensor:
        h = torch.full((len(x),), x.shape[-2] / 8.0)
        return torch.stack([h, torch.zeros_like(h)], 1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_score_views_averages_softmax_over_every_view() -> None:
    # image 0: two 2x2 views with means 0 and ln 3 (p0 = 1/2 and 3/4) and one 3x3 view mean 0;
    # image 1: one 2x2 view with mean ln 3. Same-size views of both images share one forward.
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), math.log(3))
    views = [[torch.cat([a, b]), torch.zeros(1, 3, 3, 3)], [b]]
    probs = score_views(MeanLogit(), views, CPU)
    torch.testing.assert_close(
        probs, torch.tensor([[(0.5 + 0.75 + 0.5) / 3, (0.5 + 0.25 + 0.5) / 3], [0.75, 0.25]])
    )


def test_count_topk_wrong() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.0, 0.0, 0.2], [0.9, 0.0, 0.05, 0.05, 0.0, 0.0]])
    # label 2 is 2nd/3rd (top-5 hit, top-1 miss); label 0 is top-1
    assert count_topk_wrong(scores, torch.tensor([2, 0])) == [1, 0]
    assert count_topk_wrong(scores, torch.tensor([4, 1]), ks=(1, 2)) == [2, 2]
    two_classes = torch.tensor([[0.3, 0.7]])
    assert count_topk_wrong(two_classes, torch.tensor([0])) == [1, 0]  # top-5 capped at K


def _ramp_data() -> ClassificationData:
    """One 4x8 image whose value is its column index (0..7), label 0."""
    ramp = np.tile(np.arange(8, dtype=np.uint8), (4, 1))
    image = np.repeat(ramp[..., None], 3, axis=2)[None]  # (1, 4, 8, 3)
    return ClassificationData(["a", "b"], np.array([0]), images=image)


def test_ten_crop_evaluation_averages_the_ten_views() -> None:
    # crops of side 4 on the 4x8 ramp: left ones mean 1.5, right ones 5.5, centre 3.5 (cols 2-5);
    # flips keep the mean: p0 = (4 s(1.5) + 4 s(5.5) + 2 s(3.5)) / 10 with s the sigmoid
    data, zero = _ramp_data(), np.zeros(3, np.float32)
    views = {"10crop": eval_views("10crop", 4, 4, [], zero, [1.0] * 3)}
    (crops,) = views["10crop"](data.images[0])  # type: ignore[index]
    assert crops.shape == (10, 3, 4, 4)
    p0 = (4 * _sigmoid(1.5) + 4 * _sigmoid(5.5) + 2 * _sigmoid(3.5)) / 10
    probs = score_views(MeanLogit(), [[crops]], CPU)
    assert probs[0, 0].item() == pytest.approx(p0, rel=1e-6)
    results = evaluate(MeanLogit(), data, views, CPU, batch_size=1)
    assert results["10crop"] == {
        "top1_error": 0.0,
        "top5_error": 0.0,
        "images": 1,
        "skipped_images": 0,
    }


def test_multiscale_evaluation_averages_scales_and_flips() -> None:
    # scales 4 and 8 of the 4x8 image: views (2, 3, 4, 8) and (2, 3, 8, 16); logit0 = h / 8
    data, zero = _ramp_data(), np.zeros(3, np.float32)
    transform = eval_views("multiscale", 4, 4, [4, 8], zero, [1.0] * 3)
    views = transform(data.images[0])  # type: ignore[index]
    assert [tuple(v.shape) for v in views] == [(2, 3, 4, 8), (2, 3, 8, 16)]
    probs = score_views(HeightLogit(), [views], CPU)
    assert probs[0, 0].item() == pytest.approx((_sigmoid(0.5) + _sigmoid(1.0)) / 2, rel=1e-6)
    data.labels[0] = 1  # p0 > 1/2 everywhere: top-1 wrong, top-5 (capped at 2 classes) right
    results = evaluate(HeightLogit(), data, {"multiscale": transform}, CPU, batch_size=4)
    assert results["multiscale"]["top1_error"] == 1.0
    assert results["multiscale"]["top5_error"] == 0.0


def test_a_real_backbone_scores_any_size() -> None:
    # global average pooling: the head works on multi-scale views of any size
    net = build_from_config(
        BackboneConfig(name="resnet20", norm="bn", shortcut="A", base_width=4), 4
    ).eval()
    views = [[torch.randn(2, 3, 24, 40), torch.randn(2, 3, 32, 53)], [torch.randn(2, 3, 24, 40)]]
    with torch.no_grad():
        probs = score_views(net, views, CPU)
    assert probs.shape == (2, 4)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_build_from_config_checks_settings() -> None:
    net = build_from_config(BackboneConfig(name="plain20", norm="bn", base_width=4), 7)
    assert net.fc.out_features == 7  # type: ignore[union-attr]
    with pytest.raises(UserError, match=r"model\.backbone\.shortcut='A' does not apply to plain20"):
        build_from_config(BackboneConfig(name="plain20", shortcut="A"), 10)
    with pytest.raises(UserError, match=r"model\.backbone\.name 'resnet19' is not known"):
        build_from_config(BackboneConfig(name="resnet19"), 10)
