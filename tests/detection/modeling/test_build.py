"""Config -> model: parameter counts, config errors, detector and backbone weight loading."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from backbones.weights import from_torchvision
from detection.config import Config, load_config
from detection.modeling.build import build_model, load_detector_weights
from engine.errors import UserError

ROOT = Path(__file__).resolve().parents[3]
TV_CONFIG = ROOT / "configs/detection/torchvision_r50_fpn_coco.yaml"


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_r50_fpn_parameter_count_equals_torchvision() -> None:
    cfg: Config = load_config(TV_CONFIG)
    with torch.device("meta"):
        ours = build_model(cfg)
        tv = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None
        )
    # torchvision's pretrained model has FrozenBatchNorm2d (buffers); weights=None gives BN
    bn_params = sum(_count(m) for m in tv.modules() if isinstance(m, nn.BatchNorm2d))
    assert _count(ours) == _count(tv) - bn_params == 41_755_286


def test_paper_detector_parameter_counts() -> None:
    with torch.device("meta"):
        c4 = build_model(
            load_config(
                ROOT / "configs/detection/faster_rcnn_r101_c4_coco.yaml",
                ["model.backbone.weights="],
            )
        )
        vgg = build_model(
            load_config(
                ROOT / "configs/detection/faster_rcnn_vgg16_voc07plus12.yaml",
                ["model.backbone.weights="],
            )
        )
    # torchvision's ResNet-101 (44,549,160) without fc (2,049,000) and BN affines (frozen:
    # buffers, 105,344) + RPN on 1024 channels with 12 anchors (9,437,184 + 1,024 + 12,300
    # + 49,200) + cls 2048 * 81 + 81 + box 2048 * 324 + 324
    assert _count(c4) == 44_549_160 - 2_049_000 - 105_344 + 9_499_708 + 165_969 + 663_876
    # torchvision's VGG-16 (138,357,544) without fc8 (4,097,000) + RPN on 512 channels
    # (2,359,296 + 512 + 4,617 + 18,468) + cls 4096 * 21 + 21 + box 4096 * 84 + 84
    assert _count(vgg) == 138_357_544 - 4_097_000 + 2_382_893 + 86_037 + 344_148


def test_config_errors_name_the_key(small_config: Callable[..., Config]) -> None:
    cfg = small_config("c4", backbone="vgg16")
    with pytest.raises(UserError, match="arch c4 needs a ResNet"):
        build_model(cfg)
    cfg = small_config("vgg")
    cfg.model.roi_heads.pooler_resolution = 14
    with pytest.raises(UserError, match="pooler_resolution=14"):
        build_model(cfg)
    cfg = small_config("fpn")
    cfg.model.rpn.in_features = ["c4"]
    with pytest.raises(UserError, match=r"rpn\.in_features"):
        build_model(cfg)
    cfg = small_config("fpn")
    cfg.model.anchors.sizes = [[32.0]]
    with pytest.raises(UserError, match=r"anchors\.sizes has 1 lists"):
        build_model(cfg)
    cfg = small_config("vgg")
    cfg.model.backbone.stride_in_1x1 = True
    with pytest.raises(UserError, match="stride_in_1x1"):
        build_model(cfg)


def test_a_compiled_or_ddp_detectors_checkpoint_loads(
    small_config: Callable[..., Config], tmp_path: Path
) -> None:
    # torch.compile saves its keys under "_orig_mod.", DDP under "module.": both unwrap as
    # backbone weights do (backbones.weights.unwrap_state_dict)
    source = build_model(small_config("c4"))
    for prefix in ("_orig_mod.", "module."):
        path = tmp_path / "compiled.pth"
        torch.save({"model": {prefix + k: v for k, v in source.state_dict().items()}}, path)
        model = build_model(small_config("c4"))
        assert load_detector_weights(model, path) == []
        for ours, theirs in zip(model.state_dict().values(), source.state_dict().values()):
            assert torch.equal(ours, theirs)


def test_load_detector_weights_reinitialises_only_class_layers(
    small_config: Callable[..., Config], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    source = build_model(small_config("c4", num_classes=5))
    path = tmp_path / "model.pth"
    torch.save({"model": source.state_dict(), "iteration": 7}, path)
    same = build_model(small_config("c4", num_classes=5))
    assert load_detector_weights(same, path) == []
    assert all(
        torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values())
    )

    other = build_model(small_config("c4", num_classes=2))
    fresh_cls = other.roi_heads.predictor.cls_score.weight.clone()
    with caplog.at_level(logging.INFO, logger="detection.modeling.build"):
        reinit = load_detector_weights(other, path)
    assert sorted(reinit) == [
        "roi_heads.predictor.bbox_pred.bias", "roi_heads.predictor.bbox_pred.weight",
        "roi_heads.predictor.cls_score.bias", "roi_heads.predictor.cls_score.weight",
    ]  # fmt: skip
    assert "has 5 classes, the model 2" in caplog.text
    assert other.roi_heads.predictor.cls_score.weight.shape == (3, fresh_cls.shape[1])
    assert torch.equal(other.rpn.head.conv.weight, source.rpn.head.conv.weight)

    vgg = build_model(small_config("vgg", num_classes=5))
    with pytest.raises(UserError, match="does not fit"):
        load_detector_weights(vgg, path)


@torch.no_grad()
def _random_torchvision_resnet(depth: int, path: Path) -> dict[str, torch.Tensor]:
    tv = getattr(torchvision.models, f"resnet{depth}")()
    g = torch.Generator().manual_seed(depth)
    for t in tv.state_dict().values():
        if t.is_floating_point():
            t.copy_(torch.rand(t.shape, generator=g))
    torch.save(tv.state_dict(), path)
    return tv.state_dict()


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_torchvision_backbone_weights_load_into_the_detector(
    arch: str, small_config: Callable[..., Config], tmp_path: Path
) -> None:
    tv_state = _random_torchvision_resnet(18, tmp_path / "resnet18.pth")
    cfg = small_config(arch)
    cfg.model.backbone.base_width = 64
    cfg.model.backbone.weights = str(tmp_path / "resnet18.pth")
    model = build_model(cfg)
    ours = model.state_dict()
    with torch.device("meta"):
        renamed = from_torchvision(tv_state, torchvision_free_resnet18())
    covered = set()
    for key, value in renamed.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        target = (
            "roi_heads.box_head." + key
            if key.startswith("res5.") and arch == "c4"
            else "backbone." + key
        )
        assert torch.equal(ours[target], value), key
        covered.add(target)
    heads = ("rpn.", "roi_heads.predictor.", "fpn.", "roi_heads.box_head.fc")
    assert [k for k in ours if k not in covered and not k.startswith(heads)] == []


def torchvision_free_resnet18() -> nn.Module:
    from backbones import build_backbone

    return build_backbone("resnet18")


def test_an_architecture_mismatch_lists_each_key_once(tmp_path) -> None:
    import torch

    from detection.config import load_config
    from detection.modeling.build import build_model, load_detector_weights
    from engine.errors import UserError

    small = ["model.backbone.base_width=8", "model.backbone.weights=", "model.num_classes=5"]
    cfg = load_config("configs/detection/quickstart.yaml", small)
    other = load_config(
        "configs/detection/quickstart.yaml", [*small[1:], "model.backbone.base_width=16"]
    )
    torch.save({"model": build_model(other).state_dict()}, tmp_path / "w.pth")
    with pytest.raises(UserError) as info:
        load_detector_weights(build_model(cfg), str(tmp_path / "w.pth"))
    message = str(info.value)
    assert (
        "shape mismatches (file vs model) ['backbone.stem.conv1.weight (16, 3, 7, 7) vs (8, 3"
        in message
    )
    assert "missing keys" not in message and "\n" not in message


def test_backbone_weights_skip_keeps_vgg_fc6_fc7_at_init(tmp_path: Path) -> None:
    # the miniature's VGG control, as a config key: pretrained convolutions, fc6/fc7 at init
    from backbones import build_backbone

    torch.manual_seed(0)
    pretrained = build_backbone("vgg16_bn", base_width=8).state_dict()
    torch.save({"model": pretrained}, tmp_path / "backbone.pth")
    sets = [
        "model.backbone.base_width=8", "model.backbone.norm=bn", "model.num_classes=3",
        f"model.backbone.weights={tmp_path / 'backbone.pth'}",
    ]  # fmt: skip
    config = ROOT / "configs/mini/faster_rcnn_vgg16_w16_tinyimagenet_bccd.yaml"
    whole = build_model(load_config(config, sets)).state_dict()
    part = build_model(load_config(config, [*sets, "model.backbone.weights_skip=[fc67]"]))
    loaded = part.state_dict()
    # the detector keeps the convolutions as its backbone and fc6/fc7 in its box head
    convs = [k for k in pretrained if k.startswith("features.") and k.endswith("weight")]
    fcs = [k for k in pretrained if k.startswith("fc67.") and k.endswith("weight")]
    assert convs and fcs
    for key in convs:
        assert torch.equal(loaded[f"backbone.{key}"], pretrained[key])
    for key in fcs:
        assert torch.equal(whole[f"roi_heads.box_head.{key}"], pretrained[key])
        assert not torch.equal(loaded[f"roi_heads.box_head.{key}"], pretrained[key])
