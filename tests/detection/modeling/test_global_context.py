"""Global context (model.roi_heads.global_context): shapes, the whole-image RoI, checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from detection.config import Config
from detection.modeling.build import build_model, load_detector_weights
from detection.modeling.faster_rcnn import FasterRCNN
from detection.modeling.poolers import assign_levels
from detection.structures import ImageBatch, Targets
from engine.errors import UserError

COLS = ("roi_heads.predictor.cls_score.weight", "roi_heads.predictor.bbox_pred.weight")
# two images in one padded 128 x 128 tensor: the first is 100 high and 120 wide
SIZES = [(100, 120), (128, 96)]
REGIONS = [
    torch.tensor([[10.0, 20.0, 60.0, 90.0], [0.0, 0.0, 30.0, 30.0], [50.0, 40.0, 110.0, 95.0]]),
    torch.tensor([[5.0, 5.0, 90.0, 120.0], [20.0, 30.0, 40.0, 70.0]]),
]


def pair(small_config: Callable[..., Config], arch: str) -> tuple[FasterRCNN, FasterRCNN]:
    """An untrained detector and its global-context twin with the same weights (eval mode)."""
    cfg = small_config(arch)
    torch.manual_seed(0)
    plain = build_model(cfg).eval()
    with torch.no_grad():  # peaked class scores, so the 0.05 threshold keeps some
        plain.roi_heads.predictor.cls_score.weight.mul_(100)
    cfg.model.roi_heads.global_context = True
    context = build_model(cfg).eval()
    load_detector_weights(context, plain.state_dict())
    return plain, context


def padded_batch() -> ImageBatch:
    images = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    return ImageBatch(images, list(SIZES), list(SIZES), [(1.0, 1.0)] * 2, [False] * 2, [0, 1])


def head_maps(model: FasterRCNN, batch: ImageBatch) -> list[Tensor]:
    features = model.extract_features(batch.tensor)
    return [features[name] for name in model.roi_heads.in_features]


@pytest.mark.parametrize("arch", ["c4", "vgg", "fpn"])
@torch.no_grad()
def test_region_then_global_feature_of_its_image(
    small_config: Callable[..., Config], arch: str
) -> None:
    plain, context = pair(small_config, arch)
    maps = head_maps(plain, padded_batch())
    width = plain.roi_heads.box_head.out_channels  # D: 128 (c4 width 16), 1024 (vgg), 64 (fpn)
    assert context.roi_heads.predictor.cls_score.in_features == 2 * width
    out = context.roi_heads.box_features(maps, REGIONS, SIZES)
    assert out.shape == (5, 2 * width)
    regions = plain.roi_heads.box_features(maps, REGIONS, SIZES)
    whole = plain.roi_heads.box_features(
        maps, [torch.tensor([[0.0, 0.0, 120.0, 100.0]]), torch.tensor([[0.0, 0.0, 96.0, 128.0]])],
        SIZES,
    )  # fmt: skip
    torch.testing.assert_close(out[:, :width], regions)
    torch.testing.assert_close(out[:, width:], whole[[0, 0, 0, 1, 1]])
    logits, deltas = context.roi_heads.predict(maps, REGIONS, SIZES)
    assert logits.shape == (5, 4) and deltas.shape == (5, 16)


def test_the_global_roi_is_the_unpadded_image(
    small_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, context = pair(small_config, "c4")
    pooled: list[list[Tensor]] = []
    pooler = context.roi_heads.pooler
    original = pooler.forward
    monkeypatch.setattr(pooler, "forward", lambda f, b: pooled.append(b) or original(f, b))
    maps = head_maps(context, padded_batch())
    with torch.no_grad():
        context.roi_heads.box_features(maps, REGIONS, SIZES)
    (boxes,) = pooled  # one pooler call for the regions and the global RoIs
    assert torch.equal(boxes[0], torch.cat((REGIONS[0], torch.tensor([[0.0, 0.0, 120.0, 100.0]]))))
    assert torch.equal(boxes[1], torch.cat((REGIONS[1], torch.tensor([[0.0, 0.0, 96.0, 128.0]]))))


def test_fpn_pools_the_global_roi_by_its_size() -> None:
    # k = floor(4 + log2(sqrt(w h) / 224)) clamped to P2..P5: a 128 px square -> floor(3.19) = 3,
    # 448 px -> 5 (the coarsest from here on), 600 x 1000 -> floor(5.28) -> 5
    whole = torch.tensor([[0.0, 0.0, 128.0, 128.0], [0, 0, 448, 448], [0, 0, 1000, 600]])
    assert assign_levels(whole, 2, 5).tolist() == [1, 3, 3]


@pytest.mark.parametrize("arch", ["c4", "fpn"])
@torch.no_grad()
def test_an_old_checkpoint_in_a_context_model_gives_exactly_its_detections(
    small_config: Callable[..., Config], arch: str
) -> None:
    plain, context = pair(small_config, arch)
    batch = padded_batch()
    old, new = plain(batch, detect=True).detections, context(batch, detect=True).detections
    assert old is not None and new is not None
    assert [len(d) for d in old] == [len(d) for d in new] and len(old[0]) > 0
    for a, b in zip(old, new):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
        assert torch.equal(a.labels, b.labels)


def test_an_old_checkpoint_fills_the_first_columns_and_zeros_the_context(
    small_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = small_config("c4")
    old = build_model(cfg).state_dict()
    cfg.model.roi_heads.global_context = True
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="detection.modeling.build"):
        assert load_detector_weights(model, old) == []
    state = model.state_dict()
    for key in COLS:  # (4, 128) -> (4, 256); (16, 128) -> (16, 256)
        assert state[key].shape == (old[key].shape[0], 256)
        assert torch.equal(state[key][:, :128], old[key])
        assert torch.equal(state[key][:, 128:], torch.zeros(old[key].shape[0], 128))
    bias = "roi_heads.predictor.cls_score.bias"
    assert torch.equal(state[bias], old[bias])
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("state dict has no global context: its predictor fills the first 128")


def test_a_context_checkpoint_in_a_plain_model_names_the_key_and_the_switch(
    small_config: Callable[..., Config],
) -> None:
    cfg = small_config("c4")
    cfg.model.roi_heads.global_context = True
    context = build_model(cfg).state_dict()
    cfg.model.roi_heads.global_context = False
    with pytest.raises(UserError) as error:
        load_detector_weights(build_model(cfg), {"model": context})
    assert str(error.value) == (
        "state dict was trained with global context: roi_heads.predictor.cls_score.weight is "
        "(4, 256), the model's (4, 128); load it with --set model.roi_heads.global_context=true"
    )


def test_a_context_checkpoint_of_other_classes_reinitialises_the_class_layers(
    small_config: Callable[..., Config],
) -> None:
    cfg = small_config("c4")  # 3 classes, no context
    old = build_model(cfg).state_dict()
    cfg = small_config("c4", num_classes=5)
    cfg.model.roi_heads.global_context = True
    model = build_model(cfg)
    layers = ("roi_heads.predictor.cls_score.", "roi_heads.predictor.bbox_pred.")
    assert load_detector_weights(model, old) == [p + k for p in layers for k in ("weight", "bias")]
    assert model.roi_heads.predictor.cls_score.weight.shape == (6, 256)


def test_a_training_step_reaches_the_context_columns(
    small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    cfg = small_config("c4")
    cfg.model.roi_heads.global_context = True
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch, targets = tiny_batch
    losses = model(batch, targets).losses
    total = sum(losses.values())
    assert isinstance(total, Tensor) and torch.isfinite(total)
    total.backward()
    for layer in (model.roi_heads.predictor.cls_score, model.roi_heads.predictor.bbox_pred):
        assert layer.weight.grad is not None
        assert layer.weight.grad[:, 128:].abs().sum() > 0  # the global feature's columns
    res5 = next(model.roi_heads.box_head.parameters())
    assert res5.grad is not None and res5.grad.abs().sum() > 0
