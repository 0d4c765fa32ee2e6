"""Image in, detections out: the detector behind one call (README.md, "Python").

predictor = Predictor("configs/detection/faster_rcnn_r101_c4_coco.yaml", "model_final.pth")
det = predictor(rgb_uint8_image)          # Detections in original-image pixels
dets = predictor([image1, image2, ...])   # batched, `batch_size` images at a time
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from detection.config import RUNTIMES, Config, load_config
from detection.data.build import build_test_transform
from detection.data.transforms import collate_uint8_images, postprocess_detections
from detection.inference import (
    detect,
    detector_class_names,
    inference_precision,
    load_detectors,
    prepare_for_inference,
)
from detection.modeling.build import build_model
from detection.modeling.ensemble import DetectorEnsemble
from detection.modeling.faster_rcnn import FasterRCNN
from detection.structures import Detections
from engine.errors import UserError

if TYPE_CHECKING:
    from detection.export import GraphPredictor


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
            :func:`detection.inference.inference_precision`); default cfg.test.precision.
        runtime: "torch" (default), or the detector exported as one graph (detection/export.py)
            and run on the CPU by "openvino" (fp32 or bf16; the `export` extra) or
            "onnxruntime" (fp32), one image at a time, with torch's thread count.

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
        runtime: str = "torch",
    ) -> None:
        cfg = config if isinstance(config, Config) else load_config(config)
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        check_runtime(runtime, self.device)
        self.cfg = cfg
        files = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights or [])
        self.model, source = _load(cfg, [str(w) for w in files])
        self.iteration = int(source.get("iteration", 0))  # of the (first) weights file
        precision = precision or cfg.test.precision
        torch_runs = runtime == "torch"  # else the graph, exported from fp32 modules
        self.amp = inference_precision(precision if torch_runs else "fp32", self.device)
        compile = cfg.test.compile and torch_runs
        prepare_for_inference(
            self.model, self.device, cfg.channels_last, self.amp, compile, fold_bn
        )
        self.transform = build_test_transform(cfg.input, cfg.test)  # the evaluator's, exactly
        self.batch_size = batch_size or cfg.test.ims_per_batch
        self.class_names = detector_class_names(cfg, source.get("meta", {}))
        self.graph = None if torch_runs else _graph(self, runtime, precision)

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
        if self.graph is not None:
            return [self.graph(image) for image in images]
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
        detections = detect(self.model, batch, self.amp)
        return [d.to("cpu") for d in postprocess_detections(detections, batch)]


def _load(cfg: Config, files: list[str]) -> tuple[FasterRCNN | DetectorEnsemble, dict[str, Any]]:
    """The detector of one weights file, the ensemble of several, or for none the freshly
    built model; and the (first) checkpoint."""
    if not files:
        return build_model(cfg), {}
    return load_detectors(cfg, files[0] if len(files) == 1 else files)


def check_runtime(runtime: str, device: torch.device) -> None:
    """UserError unless ``runtime`` is one of RUNTIMES, on a device it runs on."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime {runtime!r} is not known; expected one of {list(RUNTIMES)}")
    if runtime != "torch" and device.type != "cpu":
        raise UserError(f"runtime {runtime!r} runs on the CPU, not on {device}")


def _graph(predictor: Predictor, runtime: str, precision: str) -> GraphPredictor:
    """The predictor's detector exported and run by ``runtime`` (`export.runtime_predictor`)."""
    from detection.export import runtime_predictor

    return runtime_predictor(predictor, runtime, precision)


def check_image(image: object) -> None:
    """UserError unless `image` is an RGB uint8 (H, W, 3) numpy array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise UserError(f"Predictor expects RGB uint8 numpy images, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise UserError(f"Predictor expects an (H, W, 3) image, got shape {image.shape}")
