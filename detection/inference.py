"""Inference: a detector loaded from its checkpoints, made ready, and run at one precision.

The one route of the ``Predictor``, ``resdet eval`` and the detection task's evaluation:

* :func:`load_detectors`: weights file(s) -> a detector (or the ensemble of several) and the
  (first) checkpoint, whose ``meta`` gives :func:`detector_class_names`;
* :func:`inference_precision`: ``test.precision`` (or the Predictor's argument) -> the autocast
  dtype on a device, resolved once by the caller and passed down;
* :func:`prepare_for_inference`: BN folded, on the device, channels_last, weights cast for
  that autocast dtype, trunks compiled;
* :func:`detect`: one forward pass under that autocast.

``solver.amp`` is a training setting: inference follows ``test.precision`` alone (fp32 means
fp32, on CUDA too).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from backbones.layers import fold_frozen_bn
from backbones.weights import read_source
from detection.config import PRECISIONS, Config
from detection.data.build import resolve_class_names
from detection.modeling.build import build_ensemble, build_model, load_detector_weights
from detection.modeling.ensemble import DetectorEnsemble
from detection.modeling.faster_rcnn import FasterRCNN
from detection.structures import Detections, ImageBatch
from engine import threads
from engine.amp import autocast, cast_for_autocast, resolve_amp
from engine.device import prepare_model
from engine.errors import UserError


def load_detector(
    cfg: Config, weights: str | os.PathLike[str], name: str = ""
) -> tuple[FasterRCNN, dict[str, Any]]:
    """The detector of ``cfg`` filled from a checkpoint, and the checkpoint (its iteration,
    its ``meta``); messages call it ``name`` (default: its path)."""
    source = read_source(str(weights), cfg.trust_weights)
    model = build_model(cfg, load_backbone_weights=False)
    load_detector_weights(model, source, name or str(weights))
    return model, source


def load_detectors(
    cfg: Config,
    weights: str | Sequence[str],
    member_configs: Mapping[str, Config] | None = None,
) -> tuple[FasterRCNN | DetectorEnsemble, dict[str, Any]]:
    """One detector from a weights file, or the ensemble of a list's (even of one: its
    members built from ``member_configs[file]``, else ``cfg``); and the (first) checkpoint."""
    if isinstance(weights, str):
        return load_detector(cfg, weights)
    configs = member_configs or {}
    members = [load_detector(configs.get(w, cfg), w) for w in weights]
    return build_ensemble(cfg, [model for model, _ in members]), members[0][1]


def inference_precision(precision: str, device: torch.device) -> str | None:
    """The autocast dtype of inference on ``device`` (None: fp32), for the caller to resolve
    once and pass down.

    ``precision`` "bf16" asks for bf16 autocast (fp32 with a warning where the device lacks
    it, see ``engine.amp.resolve_amp``); "fp32" is fp32 everywhere.

    Raises:
        UserError: ``precision`` is not one of ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not known; expected one of {PRECISIONS}")
    return resolve_amp("bf16", device, "test.precision") if precision == "bf16" else None


def prepare_for_inference(
    model: nn.Module,
    device: torch.device,
    channels_last: bool,
    amp: str | None,
    compile: bool = False,
    fold_bn: bool = True,
) -> nn.Module:
    """``model`` in eval mode on ``device``, in place: its norms folded into the convolutions
    before them (``fold_bn``; the fused CPU convolutions of `backbones.fused` need it),
    channels_last if asked, its convolution and linear weights stored in the autocast dtype
    ``amp`` (it then runs under autocast only: :func:`detect`), its detectors' trunks
    compiled with ``compile`` (`compile_trunks`). For a model loaded to infer, not one still
    training."""
    model.eval()
    if fold_bn:
        fold_frozen_bn(model)
    model = cast_for_autocast(prepare_model(model, device, channels_last), amp)
    if compile:
        compile_trunks(model)
    return model


def compile_trunks(model: nn.Module) -> None:
    """``torch.compile`` every detector's backbone features and FPN inside ``model``, in place
    (the state dict keeps its keys). Inductor fuses the convolutions' elementwise tails (ReLU,
    residual adds); the RPN and RoI head stay eager (their box counts change every image).
    The first image of each new size compiles (seconds to a minute), later ones reuse it."""
    for detector in [m for m in model.modules() if isinstance(m, FasterRCNN)]:
        detector.backbone.forward_features = torch.compile(  # type: ignore[method-assign]
            detector.backbone.forward_features
        )
        if detector.fpn is not None:
            detector.fpn.compile()


def detect(model: nn.Module, images: ImageBatch, amp: str | None) -> list[Detections]:
    """``model``'s detections of ``images`` (on the model's device), in network-input
    pixels, under autocast for ``amp`` (:func:`inference_precision`; None: none)."""
    threads.adjust()
    with autocast(images.tensor.device.type, amp):
        detections = model(images, detect=True).detections
    return detections or []


def detector_class_names(cfg: Config, meta: dict[str, object]) -> list[str]:
    """Class names in label order: the checkpoint's own, else the config's (see
    ``resolve_class_names``), else ``class_0``, ``class_1``, ... when nothing names them."""
    recorded = meta.get("class_names") if isinstance(meta, dict) else None
    if isinstance(recorded, list) and len(recorded) == cfg.model.num_classes:
        return [str(name) for name in recorded]
    try:
        names = resolve_class_names(cfg)
    except UserError:
        names = []
    if len(names) != cfg.model.num_classes:
        names = [f"class_{i}" for i in range(cfg.model.num_classes)]
    return names
