"""Config -> Faster R-CNN: the only place where `cfg.model` and `cfg.test` become modules.

Three layouts (`model.arch`):
  c4:  conv1..res4 shared (stride 16); RPN and RoI pooling on c4; res5 per RoI (the paper).
  vgg: conv1_1..conv5_3 shared (stride 16); RoIPool 7x7 on conv5_3; VGG's fc6/fc7 per RoI.
  fpn: a pyramid P2..P6 on c2..c5; RPN on every level; RoIAlign from P2..P5; two fc layers.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from backbones.build import build_from_config
from backbones.config import BackboneConfig
from backbones.layers import Backbone
from backbones.weights import load_weights, read_source, unwrap_state_dict
from detection.config import Config, TestConfig
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_ops import BoxCoder
from detection.modeling.ensemble import DetectorEnsemble
from detection.modeling.faster_rcnn import FasterRCNN
from detection.modeling.fpn import FPN
from detection.modeling.heads import FastRCNNPredictor, Res5Head, TwoFCHead, VGGHead
from detection.modeling.matcher import Matcher
from detection.modeling.poolers import ROIPooler
from detection.modeling.roi_heads import DetectionRule, ROIHeads
from detection.modeling.rpn import RPN, RPNHead
from engine.errors import DataWarning, UserError
from engine.spec import InputSpec

logger = logging.getLogger(__name__)

# the layers whose shapes depend on the number of classes
CLASS_LAYERS = ("roi_heads.predictor.cls_score.", "roi_heads.predictor.bbox_pred.")
# the predictor's weights, (outputs, inputs): D inputs, or 2 D with global context
PREDICTOR_WEIGHTS = ("roi_heads.predictor.cls_score.weight", "roi_heads.predictor.bbox_pred.weight")


def build_model(cfg: Config, load_backbone_weights: bool = True) -> FasterRCNN:
    """Build the detector `cfg.model` describes, with `cfg.test`'s inference settings.

    Args:
        cfg: a detection config.
        load_backbone_weights: load `cfg.model.backbone.weights` (if set) into the backbone
            before it is split into the shared part and the RoI head; off when a full
            detector checkpoint follows anyway.

    Raises:
        UserError: an unknown arch, a setting that does not fit the arch or backbone, or
            backbone weights that do not fit.
    """
    if cfg.model.arch not in ARCHS:
        raise UserError(
            f"model.arch {cfg.model.arch!r} is not known; expected one of {list(ARCHS)}"
        )
    if cfg.model.num_classes < 1:
        raise UserError(f"model.num_classes must be at least 1, got {cfg.model.num_classes}")
    expected = InputSpec.make(cfg.input.format, cfg.input.pixel_mean, cfg.input.pixel_std, "")
    backbone = build_detection_backbone(
        cfg.model.backbone, load_backbone_weights, expected, cfg.trust_weights
    )
    take(backbone, backbone.classifier)
    model = ARCHS[cfg.model.arch](cfg, backbone)
    model.test_flip, model.pyramid_roi_size = cfg.test.flip, cfg.test.pyramid_roi_size
    return model


def build_detection_backbone(
    bcfg: BackboneConfig,
    load: bool = True,
    expected_input: InputSpec | None = None,
    trust_weights: bool = False,
) -> Backbone:
    """The backbone with the config's options (those its builder takes) and weights.

    When the weights file records its input (``meta.input``, written by ``resdet
    pretrain``) and it normalises pixels differently from ``expected_input`` (the detection
    config's ``input.*``), a one-line warning names both.
    """
    backbone = build_from_config(bcfg, num_classes=1)  # the classifier is dropped anyway
    if load and bcfg.weights:
        source = read_source(bcfg.weights, trust_weights)
        if expected_input is not None:
            check_input_spec(source, bcfg.weights, expected_input)
        report = load_weights(
            backbone, source, bcfg.weights_format, skip_classifier=True, skip=bcfg.weights_skip
        )
        logger.info("backbone weights %s: %s", bcfg.weights, report.summary())
    return backbone


def check_input_spec(source: Mapping[str, Any], where: str, expected: InputSpec) -> None:
    """Warn when a weights file was trained on differently normalised pixels."""
    meta = source.get("meta")
    recorded = meta.get("input") if isinstance(meta, Mapping) else None
    if not isinstance(recorded, Mapping):
        return  # third-party weights record nothing: their recipe is the user's to match
    theirs = InputSpec.from_dict(recorded)
    if theirs.pixels_differ(expected):
        warnings.warn(
            f"{where} was trained on {theirs.describe()} input, but this config feeds "
            f"{expected.describe()} (input.format / pixel_mean / pixel_std)",
            DataWarning,
            stacklevel=3,
        )


def take(module: nn.Module, name: str) -> nn.Module:
    """Detach the child `name` from `module`, leaving an nn.Identity in its place."""
    child = getattr(module, name)
    setattr(module, name, nn.Identity())
    return child


def build_c4(cfg: Config, backbone: Backbone) -> FasterRCNN:
    """The paper's ResNet layout: RPN and RoI pooling on c4, res5 + average pool per RoI."""
    if "res5" not in dict(backbone.named_children()):
        raise UserError(f"model.arch c4 needs a ResNet backbone, got {cfg.model.backbone.name!r}")
    rpn_features = _check_names(cfg.model.rpn.in_features, ["c2", "c3", "c4"], "rpn.in_features")
    res5 = take(backbone, "res5")
    head = Res5Head(res5, backbone.out_channels["c5"])
    rpn = build_rpn(cfg, [backbone.out_channels[f] for f in rpn_features])
    roi_heads = build_roi_heads(cfg, ["c4"], [backbone.strides["c4"]], head)
    features = sorted({*rpn_features, "c4"})
    return FasterRCNN(backbone, features, rpn, rpn_features, roi_heads)


def build_vgg(cfg: Config, backbone: Backbone) -> FasterRCNN:
    """The paper's VGG-16 layout: RPN and RoIPool on conv5_3, fc6/fc7 per RoI."""
    if "fc67" not in dict(backbone.named_children()):
        raise UserError(f"model.arch vgg needs a VGG backbone, got {cfg.model.backbone.name!r}")
    # "c4" (the default) names the stride-16 map, which on VGG is conv5_3
    names = ["conv5" if f == "c4" else f for f in cfg.model.rpn.in_features]
    rpn_features = _check_names(names, list(backbone.out_channels), "rpn.in_features")
    fc67 = take(backbone, "fc67")
    assert isinstance(fc67, nn.Sequential)
    fc6, fc7 = fc67[0], fc67[3]
    assert isinstance(fc6, nn.Linear) and isinstance(fc7, nn.Linear)
    size = cfg.model.roi_heads.pooler_resolution
    if fc6.in_features != backbone.out_channels["conv5"] * size * size:
        raise UserError(
            f"model.roi_heads.pooler_resolution={size} does not fit VGG's fc6 "
            f"({fc6.in_features} inputs); use 7"
        )
    rpn = build_rpn(cfg, [backbone.out_channels[f] for f in rpn_features])
    head = VGGHead(fc67, fc7.out_features)
    roi_heads = build_roi_heads(cfg, ["conv5"], [backbone.strides["conv5"]], head)
    features = sorted({*rpn_features, "conv5"})
    return FasterRCNN(backbone, features, rpn, rpn_features, roi_heads)


def build_fpn(cfg: Config, backbone: Backbone) -> FasterRCNN:
    """ResNet + FPN: RPN on P2..P6, RoIAlign from P2..P5 by box size, two fc layers."""
    fcfg = cfg.model.fpn
    in_features = _check_names(fcfg.in_features, list(backbone.out_channels), "fpn.in_features")
    first_level = int(math.log2(backbone.strides[in_features[0]]))
    fpn = FPN(
        in_features, [backbone.out_channels[f] for f in in_features], fcfg.out_channels, first_level
    )
    rpn_features = _check_names(cfg.model.rpn.in_features, fpn.out_features, "rpn.in_features")
    rpn = build_rpn(cfg, [fcfg.out_channels] * len(rpn_features))
    size = cfg.model.roi_heads.pooler_resolution
    head = TwoFCHead(fcfg.out_channels * size * size, cfg.model.roi_heads.fc_dim)
    strides = [backbone.strides[f] for f in in_features]
    roi_heads = build_roi_heads(cfg, fpn.out_features[: len(in_features)], strides, head)
    return FasterRCNN(backbone, in_features, rpn, rpn_features, roi_heads, fpn)


def _check_names(names: list[str], valid: list[str], key: str) -> list[str]:
    """`names` in `valid`'s order, or UserError naming the config key."""
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UserError(f"model.{key}={names} is invalid here; expected names from {valid}")
    return [v for v in valid if v in names]


def build_rpn(cfg: Config, in_channels: list[int]) -> RPN:
    """RPN from `cfg.model.rpn` and `cfg.model.anchors`, on maps with `in_channels`."""
    r, a = cfg.model.rpn, cfg.model.anchors
    if len(set(in_channels)) != 1:
        raise UserError(f"model.rpn.in_features: the maps differ in channels ({in_channels})")
    if len(a.sizes) != len(in_channels):
        raise UserError(
            f"model.anchors.sizes has {len(a.sizes)} lists but the RPN sees "
            f"{len(in_channels)} feature maps; give one list of sizes per map"
        )
    if len(r.iou_thresholds) != 2:
        raise UserError(f"model.rpn.iou_thresholds must be [low, high], got {r.iou_thresholds}")
    generator = AnchorGenerator(a.sizes, a.aspect_ratios, a.offset)
    head = RPNHead(in_channels[0], generator.num_anchors()[0])
    if len(set(generator.num_anchors())) != 1:
        raise UserError(f"model.anchors.sizes: every map needs as many sizes ({a.sizes})")
    return RPN(
        head,
        generator,
        BoxCoder(_four(r.bbox_reg_weights, "rpn.bbox_reg_weights")),
        Matcher(r.iou_thresholds, [0, -1, 1], r.allow_low_quality_matches),
        batch_size_per_image=r.batch_size_per_image,
        positive_fraction=r.positive_fraction,
        pre_nms_topk=(r.pre_nms_topk_train, r.pre_nms_topk_test),
        post_nms_topk=(r.post_nms_topk_train, r.post_nms_topk_test),
        nms_thresh=r.nms_thresh,
        min_size=r.min_size,
        loss_type=r.loss_type,
        smooth_l1_beta=r.smooth_l1_beta,
        loss_weight=r.loss_weight,
    )


def build_roi_heads(
    cfg: Config, in_features: list[str], strides: list[int], box_head: nn.Module
) -> ROIHeads:
    """RoI heads from `cfg.model.roi_heads` (+ fpn level mapping) and `cfg.test`."""
    r = cfg.model.roi_heads
    pooler = ROIPooler(
        r.pooler_resolution,
        strides,
        r.pooler_type,
        r.pooler_sampling_ratio,
        r.pooler_aligned,
        cfg.model.fpn.canonical_size,
        cfg.model.fpn.canonical_level,
    )
    out_channels = getattr(box_head, "out_channels")  # noqa: B009  (every head sets it)
    widths = 2 if r.global_context else 1  # region feature, then the global one
    return ROIHeads(
        in_features,
        pooler,
        box_head,
        FastRCNNPredictor(widths * out_channels, cfg.model.num_classes),
        BoxCoder(_four(r.bbox_reg_weights, "roi_heads.bbox_reg_weights")),
        Matcher([r.bg_iou_low, r.iou_threshold], [-1, 0, 1]),
        batch_size_per_image=r.batch_size_per_image,
        positive_fraction=r.positive_fraction,
        add_gt_as_proposals=r.add_gt_as_proposals,
        loss_type=r.loss_type,
        smooth_l1_beta=r.smooth_l1_beta,
        **inference_settings(cfg.test),
        global_context=r.global_context,
    )


def inference_settings(t: TestConfig) -> dict[str, Any]:
    """`test.*` as the inference arguments of ROIHeads and DetectorEnsemble."""
    voting = t.box_voting_iou if t.box_voting else None
    rule = DetectionRule(
        t.score_thresh, t.nms_thresh, t.detections_per_image, box_voting_iou=voting
    )
    return {"rule": rule, "box_refinement": t.box_refinement}


def _four(weights: list[float], key: str) -> list[float]:
    if len(weights) != 4 or min(weights) <= 0:
        raise UserError(f"model.{key} must be 4 positive numbers (wx, wy, ww, wh), got {weights}")
    return weights


ARCHS: dict[str, Callable[[Config, Backbone], FasterRCNN]] = {
    "c4": build_c4,
    "vgg": build_vgg,
    "fpn": build_fpn,
}


# what ensemble members must share: the batch is built once, the scores averaged per class
MEMBER_KEYS = (
    "input.format", "input.pixel_mean", "input.pixel_std", "input.min_size_test",
    "input.max_size_test", "input.size_divisibility", "model.num_classes", "data.class_names",
)  # fmt: skip


def check_member_config(cfg: Config, member: Config, where: str) -> None:
    """UserError naming `where` (the member's config file) and the first of `MEMBER_KEYS`
    in which `member` differs from the main config `cfg`."""
    for key in MEMBER_KEYS:
        ours, theirs = _dotted(cfg, key), _dotted(member, key)
        if ours != theirs:
            raise UserError(
                f"ensemble member {where}: {key} is {theirs} but the main config's is {ours}; "
                "members are fed one batch and averaged per class, so they must agree on it"
            )


def _dotted(cfg: Config, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), cfg)


def build_ensemble(cfg: Config, members: Sequence[FasterRCNN]) -> DetectorEnsemble:
    """The members as one detector, by the main config: RoIs per `test.ensemble_proposals`
    (all: the whole union; nms: its NMS at `model.rpn.nms_thresh`, `post_nms_topk_test`
    kept), selection by `test.*` (see `check_member_config` for what members share)."""
    rpn, whole = cfg.model.rpn, cfg.test.ensemble_proposals == "all"
    return DetectorEnsemble(
        members,
        proposal_nms_thresh=rpn.nms_thresh,
        proposals_per_image=None if whole else rpn.post_nms_topk_test,
        **inference_settings(cfg.test),
    )


def load_detector_weights(
    model: FasterRCNN, source: str | Path | Mapping[str, Any], name: str = ""
) -> list[str]:
    """Load a detector checkpoint; class-dependent layers are re-initialised if they differ.

    A checkpoint saved without global context loads into a model with it: its predictor
    weights fill the first D input columns, the context columns start at zero
    (`widen_for_global_context`).

    Args:
        model: the detector to fill (in place).
        source: a checkpoint file (a state dict, bare or under "model" / "state_dict") or a
            state dict.
        name: what the messages call the source (default: its path, or "state dict").

    Returns:
        The keys left re-initialised because the number of classes differs (else []).

    Raises:
        UserError: unreadable file, keys / shapes that do not fit outside the class layers, or
            a checkpoint with global context for a model without it.
    """
    if isinstance(source, (str, Path)):
        name = name or str(source)
    where = f"detector weights {name!r}" if name else "state dict"
    state = unwrap_state_dict(read_source(source) if isinstance(source, (str, Path)) else source)
    target = model.state_dict()
    state = widen_for_global_context(state, model, where)
    reinit = [
        k for k in target
        if k.startswith(CLASS_LAYERS) and k in state and state[k].shape != target[k].shape
    ]  # fmt: skip
    if reinit:
        bias = state.get("roi_heads.predictor.cls_score.bias")
        theirs = -1 if bias is None else bias.shape[0] - 1
        model.roi_heads.predictor.reset_parameters()
        state = {k: v for k, v in state.items() if k not in reinit}
        logger.info(
            "%s has %d classes, the model %d: re-initialised the class layers (%s)",
            where, theirs, model.roi_heads.predictor.cls_score.out_features - 1, ", ".join(reinit),
        )  # fmt: skip
    mismatched = [k for k, v in state.items() if k in target and v.shape != target[k].shape]
    result = model.load_state_dict(
        {k: v for k, v in state.items() if k not in mismatched}, strict=False
    )
    # a mis-shaped key was held back from load_state_dict: it is a mismatch, not missing
    missing = [k for k in result.missing_keys if k not in reinit and k not in mismatched]
    if missing or result.unexpected_keys or mismatched:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched]
        problems = [f"{what} {keys[:5]}{' ...' if len(keys) > 5 else ''}" for what, keys in (
            ("missing keys", missing), ("unexpected keys", result.unexpected_keys),
            ("shape mismatches (file vs model)", shapes)) if keys]  # fmt: skip
        raise UserError(f"{where} does not fit the model: {'; '.join(problems)}")
    return reinit


def widen_for_global_context(
    state: dict[str, Tensor], model: FasterRCNN, where: str
) -> dict[str, Tensor]:
    """Fit a predictor saved without global context (D inputs) to a model with it (2 D).

    Its weights become the first D columns and the context columns zeros, so the model starts
    out computing exactly what the saved one did (biases are unchanged). A predictor of
    another number of classes is left to the class-layer rule.

    Returns:
        `state`, with the widened weights in a new dict when any were.

    Raises:
        UserError: the model has no global context and the checkpoint's predictor takes twice
            its inputs while everything else fits (a checkpoint trained with it).
    """
    context, target = model.roi_heads.global_context, model.state_dict()
    # a wider backbone also doubles the predictor's inputs: the shape check reports that one
    rest_fits = all(
        v.shape == target[k].shape
        for k, v in state.items()
        if k in target and not k.startswith(CLASS_LAYERS)
    )
    widened = {}
    for key in PREDICTOR_WEIGHTS:
        if key not in state or key not in target or state[key].shape[0] != target[key].shape[0]:
            continue
        (outputs, theirs), ours = state[key].shape, target[key].shape[1]
        if not context and theirs == 2 * ours and rest_fits:
            raise UserError(
                f"{where} was trained with global context: {key} is {tuple(state[key].shape)}, "
                f"the model's {tuple(target[key].shape)}; load it with "
                "--set model.roi_heads.global_context=true"
            )
        if context and ours == 2 * theirs:
            widened[key] = torch.cat((state[key], state[key].new_zeros(outputs, theirs)), dim=1)
    if widened:
        logger.info(
            "%s has no global context: its predictor fills the first %d input columns, the "
            "%d context columns start at zero (%s)",
            where, ours // 2, ours // 2, ", ".join(widened),
        )  # fmt: skip
    return {**state, **widened} if widened else state
