"""The whole detector as one ONNX graph (TorchScript-based exporter, as torchvision's detectors).

Normalisation, padding, backbone, RPN, proposal NMS, RoI head, per-class NMS and box
decoding are all in the graph; test.* (score threshold, NMS IoU, detections per image) is
baked in. Opset 20 by default (16..20: ONNX RoiAlign has the half-pixel shift from 16 on).

Inputs:
  image          (1, 3, H, W) uint8 RGB, already resized as the Predictor resizes it
                 (shorter side input.min_size_test, longer side at most input.max_size_test,
                 bilinear cv2.resize: detection.data.transforms.resized_shape); H, W dynamic
  original_size  (2,) int64 (height, width) of the image before the resize (pass (H, W) to
                 keep network-input pixels)
Outputs:
  boxes          (N, 4) float32 xyxy in original pixels, clipped to the image
  scores         (N,) float32 class probabilities, decreasing
  labels         (N,) int64 0-based class indices
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detection.config import Config, InputConfig
from detection.data.build import build_test_transform
from detection.modeling.box_ops import clip_boxes
from detection.modeling.faster_rcnn import FasterRCNN
from detection.predictor import Predictor, check_image
from detection.structures import Detections, ImageBatch
from engine.errors import UserError
from engine.io import atomic_write

# the TorchScript exporter's highest opset is 20; RoiAlign's half-pixel shift needs 16
DEFAULT_OPSET = 20
OPSETS = range(16, 21)
EXPORTABLE_ARCHS = ("c4", "vgg", "fpn")
INPUT_NAMES = ["image", "original_size"]
OUTPUT_NAMES = ["boxes", "scores", "labels"]


class ExportableDetector(nn.Module):
    """A FasterRCNN behind the graph's interface (the module docstring).

    Args:
        model: the detector, in eval mode (BN folded or not).
        format: channel order the network expects, "RGB" or "BGR".
        pixel_mean: per channel in ``format`` order, 0..255 scale.
        pixel_std: same.
        size_divisibility: the input is zero-padded up to a multiple of this.
    """

    mean: Tensor  # (1, 3, 1, 1) buffers
    std: Tensor

    def __init__(
        self,
        model: FasterRCNN,
        format: str,
        pixel_mean: list[float],
        pixel_std: list[float],
        size_divisibility: int,
    ) -> None:
        super().__init__()
        self.model = model
        self.bgr = format == "BGR"
        self.register_buffer("mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        self.size_divisibility = max(1, size_divisibility)

    def forward(self, image: Tensor, original_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(1, 3, H, W) pixels, (2,) original (h, w) -> boxes (N, 4), scores (N,), labels (N,)."""
        x = image.float()
        if self.bgr:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        height, width = x.shape[-2], x.shape[-1]
        d = self.size_divisibility
        x = F.pad(x, (0, (-width) % d, 0, (-height) % d))
        size = (height, width)
        batch = ImageBatch(x, [size], [size], [(1.0, 1.0)], [False], [0])
        detections = self.model(batch, detect=True).detections
        assert detections is not None
        det = detections[0]
        return to_original(det.boxes, size, original_size), det.scores, det.labels


def to_original(boxes: Tensor, size: tuple[int, int], original_size: Tensor) -> Tensor:
    """(N, 4) boxes in an (h, w) input -> original pixels, clipped (as `detections_to_original`).

    ``size`` may hold traced 0-d tensors; ``original_size`` is (2,) (height, width).
    """
    original = original_size.to(boxes.dtype)
    sy, sx = size[0] / original[0], size[1] / original[1]
    scale = torch.stack((sx, sy, sx, sy))
    return clip_boxes(boxes / scale, (original[0], original[1]))  # type: ignore[arg-type]


def exportable(predictor: Predictor) -> ExportableDetector:
    """The Predictor's model (weights loaded, BN folded, eval) behind the graph's interface."""
    cfg: Config = predictor.cfg
    if cfg.model.arch not in EXPORTABLE_ARCHS:
        raise UserError(
            f"model.arch {cfg.model.arch!r} cannot be exported to ONNX; "
            f"expected one of {list(EXPORTABLE_ARCHS)}"
        )
    if not isinstance(predictor.model, FasterRCNN):
        raise UserError("an ensemble cannot be exported to ONNX; export one member at a time")
    if cfg.test.pyramid_sizes or cfg.test.flip:  # the graph takes one image at one scale
        raise UserError(
            "test.pyramid_sizes / test.flip (multi-scale and flipped testing) cannot be "
            "exported: the graph scores one image at one scale; set test.pyramid_sizes=[] "
            "and test.flip=false"
        )
    i = cfg.input
    return ExportableDetector(
        predictor.model, i.format, i.pixel_mean, i.pixel_std, i.size_divisibility
    ).eval()


def export_onnx(
    predictor: Predictor, out: str | os.PathLike[str], opset: int = DEFAULT_OPSET
) -> None:
    """Write the predictor's detector (moved to the CPU) as an ONNX file at ``out``, atomically.

    Raises:
        UserError: an opset outside OPSETS, an arch that cannot be exported, or an output
            folder that cannot be written.
    """
    graph = onnx_bytes(predictor, opset)
    atomic_write(out, lambda f: f.write(graph))


def onnx_bytes(predictor: Predictor, opset: int = DEFAULT_OPSET) -> bytes:
    """The predictor's detector (moved to the CPU) as an ONNX graph, serialized.

    Raises:
        UserError: an opset outside OPSETS, an arch that cannot be exported.
    """
    if opset not in OPSETS:
        raise UserError(f"--opset {opset}: expected {OPSETS.start}..{OPSETS.stop - 1}")
    module = exportable(predictor).to("cpu")
    size = predictor.cfg.input.min_size_test
    example = (torch.zeros((1, 3, size, size), dtype=torch.uint8), torch.tensor([size, size]))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shapes the graph keeps dynamic
        torch.onnx.export(
            module,
            example,
            buffer,  # type: ignore[arg-type]  # file objects work too
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={
                "image": {2: "height", 3: "width"},
                **{n: {0: "N"} for n in OUTPUT_NAMES},
            },
            opset_version=opset,
            dynamo=False,
        )
    return buffer.getvalue()


class GraphPredictor:
    """The exported graph's pre- and post-processing around a runtime's ``run``, called like
    `Predictor` (one image at a time): the Predictor's resize before the graph, its outputs
    as Detections in original pixels.

    Args:
        input_cfg: the config's ``input`` section (the resize before the graph).
    """

    def __init__(self, input_cfg: InputConfig) -> None:
        self.transform = build_test_transform(input_cfg)

    def run(self, inputs: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """The graph's outputs (OUTPUT_NAMES order) for its inputs (INPUT_NAMES)."""
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> Detections:
        """RGB uint8 (H, W, 3) -> Detections in original pixels (as `Predictor`'s)."""
        check_image(image)
        resized, _ = self.transform.resize(image)
        inputs = {
            "image": np.ascontiguousarray(resized.transpose(2, 0, 1)[None]),
            "original_size": np.array(image.shape[:2], dtype=np.int64),
        }
        boxes, scores, labels = (torch.from_numpy(np.asarray(x)) for x in self.run(inputs))
        return Detections(boxes, scores, labels)


class OnnxPredictor(GraphPredictor):
    """An exported graph run by onnxruntime (`GraphPredictor`).

    Args:
        input_cfg: the config's ``input`` section (the resize before the graph).
        path: the .onnx file, or the graph itself (`onnx_bytes`).
        threads: onnxruntime intra-op threads (0: its default, one per core).
    """

    def __init__(
        self, path: str | os.PathLike[str] | bytes, input_cfg: InputConfig, threads: int = 0
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install 'resdet[export]'") from None
        super().__init__(input_cfg)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        graph = path if isinstance(path, bytes) else str(path)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def run(self, inputs: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """onnxruntime's outputs of the graph."""
        return self.session.run(None, inputs)


def runtime_predictor(predictor: Predictor, runtime: str, precision: str) -> GraphPredictor:
    """The predictor's detector (fp32 weights, on the CPU) exported and run by ``runtime``,
    "onnxruntime" (fp32 only) or "openvino" (fp32 or bf16), with torch's thread count."""
    threads = torch.get_num_threads()
    if runtime == "onnxruntime":
        if precision != "fp32":
            raise UserError(f"runtime onnxruntime runs fp32 only, not {precision}")
        return OnnxPredictor(onnx_bytes(predictor), predictor.cfg.input, threads)
    from detection.openvino_runtime import OpenvinoPredictor, convert

    return OpenvinoPredictor(convert(predictor), predictor.cfg.input, precision, threads)
