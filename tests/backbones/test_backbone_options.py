"""backbones.build: one rule for the model.backbone settings a network does not have, the
same for pretraining and detection (each task's own entry point is asked)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from backbones.config import BackboneConfig
from backbones.pretrain.config import PretrainConfig
from backbones.pretrain.task import ClassificationTask
from detection.modeling.build import build_detection_backbone
from engine.errors import UserError

# (settings, accepted by both tasks): narrow nets, so that building them is quick
CASES = [
    (dict(name="vgg16", norm="bn"), True),  # no norm layers: `norm` is left out, any value
    (dict(name="vgg16", norm="syncbn"), True),
    (dict(name="vgg16_bn", norm="bn"), True),
    (dict(name="resnet18", norm="bn", shortcut="C"), True),
    (dict(name="plain20", norm="bn"), True),  # shortcut at its default: left out
    (dict(name="plain20", shortcut="A"), False),
    (dict(name="vgg16", stride_in_1x1=True), False),
    (dict(name="resnet20", stride_in_1x1=True), False),  # CIFAR nets have no bottleneck
    (dict(name="resnet19"), False),
]


def _outcome(build: Callable[[], object]) -> str:
    """ "ok", or the one-line UserError a build raised."""
    try:
        build()
    except UserError as exc:
        return str(exc)
    return "ok"


IDS = [" ".join(f"{k}={v}" for k, v in settings.items()) for settings, _ in CASES]


@pytest.mark.parametrize(("settings", "accepted"), CASES, ids=IDS)
def test_both_tasks_accept_and_refuse_the_same_backbone_settings(
    settings: dict, accepted: bool
) -> None:
    backbone = BackboneConfig(**settings, base_width=4)
    cfg = PretrainConfig()
    cfg.model.backbone, cfg.model.num_classes = backbone, 5
    pretraining = _outcome(lambda: ClassificationTask(cfg).build_model(torch.device("cpu")))
    detection = _outcome(lambda: build_detection_backbone(backbone, load=False))
    assert pretraining == detection
    assert (pretraining == "ok") == accepted, pretraining
    if not accepted:
        assert pretraining.startswith("model.backbone.") and "\n" not in pretraining
