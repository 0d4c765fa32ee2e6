"""The whole detector: losses and gradients for C4, VGG and FPN; train/eval behave alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from detection.config import Config
from detection.modeling.build import build_model
from detection.structures import ImageBatch, Targets

LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


@pytest.mark.parametrize("arch", ["c4", "vgg", "fpn"])
def test_gradients_reach_exactly_the_trainable_parameters(
    arch: str,
    small_config: Callable[..., Config],
    tiny_batch: tuple[ImageBatch, list[Targets]],
) -> None:
    torch.manual_seed(0)
    model = build_model(small_config(arch)).train()
    images, targets = tiny_batch
    out = model(images, targets)
    assert set(out.losses) == LOSSES and out.detections is None
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.losses.values())
    sum(out.losses.values()).backward()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # freeze_at=2: the stem and the first stage (VGG: conv1 and conv2 blocks)
    first = {"c4": "backbone.res2.", "vgg": "backbone.features.5.", "fpn": "backbone.res2."}[arch]
    assert any(n.startswith(first) for n in frozen)
    assert all(n.startswith("backbone.") for n in frozen)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None, name
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for _, p in trainable if p.grad is not None)


def test_c4_head_owns_res5_and_keeps_frozen_bn(small_config: Callable[..., Config]) -> None:
    model = build_model(small_config("c4"))
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("roi_heads.box_head.res5.") for n in names)
    assert not any(n.startswith(("backbone.res5.", "backbone.fc.")) for n in names)
    norms = {
        type(m).__name__ for m in model.roi_heads.box_head.modules() if "Norm" in type(m).__name__
    }
    assert norms == {"FrozenBatchNorm2d"}


def test_same_outputs_in_train_and_eval_mode(
    small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    torch.manual_seed(0)
    model = build_model(small_config("fpn")).eval()
    images, targets = tiny_batch
    with torch.no_grad():
        validation = model(images, targets, detect=True)  # validation loss and detections
        plain = model(images)
        detected = model(images, detect=True)
    assert set(validation.losses) == LOSSES and len(validation.detections or []) == 2
    assert plain.losses == {} and plain.detections is None
    assert detected.detections is not None
    for a, b in zip(validation.detections or [], detected.detections):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels)
    det = detected.detections[0]
    assert det.boxes.shape[1] == 4 and det.labels.dtype == torch.int64
    assert (det.labels >= 0).all() and (det.labels < 3).all() and (det.scores > 0.05).all()
    model.train()
    trained = model(images, targets, detect=True)
    assert set(trained.losses) == LOSSES and trained.detections is not None
