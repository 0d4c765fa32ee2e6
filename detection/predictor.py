"""Image in, detections out: the detector behind one call (DESIGN.md's Python API).

predictor = Predictor("configs/detection/faster_rcnn_r101_c4_coco.yaml", "model_final.pth")
det = predictor(rgb_uint8_image)          # Detections in original-image pixels
dets = predictor([image1, image2, ...])   # batched, `batch_size` images at a time
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import torch
from torch import nn

from backbones.layers import fold_frozen_bn
from backbones.weights import read_source
from detection.config import PRECISIONS, Config, load_config
from detection.data.build import build_test_transform, resolve_class_names
from detection.data.transforms import collate_uint8_images, postprocess_detections
from detection.modeling.build import build_ensemble, build_model, load_detector_weights
from detection.modeling.faster_rcnn import FasterRCNN
from detection.structures import Detections
from engine.amp import autocast, cast_for_autocast, resolve_amp
from engine.errors import UserError
from engine.loop import prepare_model
from engine.run import amp_dtype


class Predictor:
    """A detector ready for inference on RGB uint8 images.

    Args:
        config: a Config or the path of a YAML config.
        weights: a detector checkpoint (training output or `resdet convert`); a list of them
            for their ensemble (`DetectorEnsemble`, every member built from `config`); None
            keeps the freshly built model (backbone weights from the config, random heads).
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
        batch_size: images per forward pass for lists (default: cfg.test.ims_per_batch).
        fold_bn: fold every norm layer into the convolution before it (inference-only speed-up;
            outputs change by float rounding only).
        precision: "fp32" or "bf16" (autocast on CUDA, or on a CPU with native bf16; see
            :func:`inference_amp`); default cfg.test.precision.

    ``class_names`` are the (first) checkpoint's (recorded by ``resdet train``), else the
    config's.
    Feature maps are channels_last when cfg.channels_last (the default).
    """

    def __init__(
        self,
        config: Config | str | os.PathLike[str],
        weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        fold_bn: bool = True,
        precision: str | None = None,
    ) -> None:
        cfg = config if isinstance(config, Config) else load_config(config)
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cfg = cfg
        files = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights or [])
        loaded = [load_detector(cfg, w) for w in files]
        models = [model for model, _ in loaded] or [build_model(cfg)]
        self.model = models[0] if len(models) == 1 else build_ensemble(cfg, models)
        self.amp = inference_amp(cfg, self.device, precision)
        prepare_for_inference(
            self.model, self.device, cfg.channels_last, self.amp, cfg.test.compile, fold_bn
        )
        self.transform = build_test_transform(cfg.input, cfg.test)  # the evaluator's, exactly
        self.batch_size = batch_size or cfg.test.ims_per_batch
        meta = loaded[0][1].get("meta", {}) if loaded else {}
        self.class_names = predictor_class_names(cfg, meta)

    @overload
    def __call__(self, images: np.ndarray) -> Detections: ...

    @overload
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detect objects.

        Args:
            images: one RGB uint8 (H, W, 3) array, or a list of them.

        Returns:
            Detections (boxes (N, 4) xyxy float32 in original pixels, scores (N,), labels
            (N,) 0-based into the config's classes) on the CPU; a list for a list.
        """
        if isinstance(images, np.ndarray):
            return self.predict_batch([images])[0]
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            results += self.predict_batch(images[start : start + self.batch_size])
        return results

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One forward pass over `images` (RGB uint8 (H, W, 3) each)."""
        for image in images:
            check_image(image)
        resized, scales = zip(*(self.transform.resize(image) for image in images))
        batch = collate_uint8_images(
            resized,
            self.transform.normalization,
            [image.shape[:2] for image in images],
            scales,
            size_divisibility=self.cfg.input.size_divisibility,
            pyramids=[self.transform.pyramid(image) for image in images],
        ).to(self.device)
        with autocast(self.device.type, self.amp):
            detections = self.model(batch, detect=True).detections
        assert detections is not None
        return [d.to("cpu") for d in postprocess_detections(detections, batch)]


def load_detector(
    cfg: Config, weights: str | os.PathLike[str], name: str = ""
) -> tuple[FasterRCNN, dict[str, Any]]:
    """The detector of ``cfg`` filled from a checkpoint, and the checkpoint (its iteration,
    its ``meta``); messages call it ``name`` (default: its path)."""
    source = read_source(str(weights), cfg.trust_weights)
    model = build_model(cfg, load_backbone_weights=False)
    load_detector_weights(model, source, name or str(weights))
    return model, source


def inference_amp(cfg: Config, device: torch.device, precision: str | None = None) -> str | None:
    """The autocast dtype of inference (None: fp32), as the Predictor and ``resdet eval`` use it.

    ``precision`` (default cfg.test.precision) "bf16" asks for bf16 autocast (fp32 with a
    warning where the device lacks it, see ``engine.amp.resolve_amp``); with "fp32", CUDA
    still autocasts when cfg.solver.amp is on, as in training.
    """
    precision = precision or cfg.test.precision
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not known; expected one of {PRECISIONS}")
    if precision == "bf16":
        return resolve_amp("bf16", device, "test.precision")
    return amp_dtype(cfg.solver, device) if device.type == "cuda" else None


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
    ``amp`` (it then runs under autocast only), its detectors' trunks compiled with
    ``compile`` (`compile_trunks`). For a model loaded to infer, not one still training."""
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


def predictor_class_names(cfg: Config, meta: dict[str, object]) -> list[str]:
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


def check_image(image: object) -> None:
    """UserError unless `image` is an RGB uint8 (H, W, 3) numpy array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise UserError(f"Predictor expects RGB uint8 numpy images, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise UserError(f"Predictor expects an (H, W, 3) image, got shape {image.shape}")
