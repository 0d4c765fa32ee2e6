"""Typed records passed between the stages of the detection pipeline.

Every field's comment gives its shape, dtype, box format and coordinate frame.
Boxes are always ``xyxy`` (x1, y1, x2, y2) in continuous 0-based pixel coordinates, where a
pixel ``i`` spans ``[i, i + 1)``; VOC's 1-based inclusive convention is converted on load and
restored only by the VOC writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


@dataclass
class ImageRecord:
    """One annotated image as a dataset reader produces it (format-blind).

    Frame: original image pixels, 0-based continuous coordinates.
    """

    image_id: int | str  # COCO: the integer image id; VOC: the file stem ("000005")
    path: str  # absolute or root-relative path of the image file
    width: int  # original image width in pixels
    height: int  # original image height in pixels
    boxes: np.ndarray = field(  # (G, 4) float32 xyxy, original pixels
        default_factory=lambda: np.zeros((0, 4), np.float32)
    )
    labels: np.ndarray = field(  # (G,) int64 contiguous 0-based class indices
        default_factory=lambda: np.zeros((0,), np.int64)
    )
    ignore: np.ndarray = field(  # (G,) bool; VOC `difficult` or COCO `iscrowd`
        default_factory=lambda: np.zeros((0,), bool)
    )

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        self.ignore = np.asarray(self.ignore, bool).reshape(-1)
        if not (len(self.boxes) == len(self.labels) == len(self.ignore)):
            raise ValueError(
                f"image {self.image_id}: boxes, labels and ignore differ in length "
                f"({len(self.boxes)}, {len(self.labels)}, {len(self.ignore)})"
            )


@dataclass
class Targets:
    """Ground truth of one image in network-input pixels (after resize and flip)."""

    boxes: Tensor  # (G, 4) float32 xyxy, network-input pixels
    labels: Tensor  # (G,) int64 0-based class indices (background is not a label)
    ignore: Tensor  # (G,) bool; ignored regions are neither targets nor negatives

    def to(self, device: torch.device | str) -> Targets:
        return Targets(self.boxes.to(device), self.labels.to(device), self.ignore.to(device))


@dataclass
class ImageBatch:
    """A padded batch of normalised images, ready for the backbone."""

    tensor: Tensor  # (B, 3, H_pad, W_pad) float32, normalised, zero padding bottom/right
    image_sizes: list[tuple[int, int]]  # per image (h, w) after resize, before padding
    original_sizes: list[tuple[int, int]]  # per image (h, w) of the original file
    scales: list[tuple[float, float]]  # per image (sy, sx): resized = original * scale
    flipped: list[bool]  # per image: horizontally flipped by the transform
    image_ids: list[int | str]  # per image: ImageRecord.image_id
    pyramid: list[ImageBatch] = field(  # the same images at test.pyramid_sizes, ascending
        default_factory=list
    )

    def __len__(self) -> int:
        return len(self.image_sizes)

    def to(self, device: torch.device | str) -> ImageBatch:
        return ImageBatch(
            self.tensor.to(device, non_blocking=True),
            self.image_sizes,
            self.original_sizes,
            self.scales,
            self.flipped,
            self.image_ids,
            [level.to(device) for level in self.pyramid],
        )


@dataclass
class Proposals:
    """RPN output for one image."""

    boxes: Tensor  # (P, 4) float32 xyxy, network-input pixels, clipped to image_size
    objectness: Tensor  # (P,) float32 objectness logits


@dataclass
class Detections:
    """Final detections for one image."""

    boxes: Tensor  # (N, 4) float32 xyxy; network-input pixels until postprocessed
    scores: Tensor  # (N,) float32 class probability in [0, 1]
    labels: Tensor  # (N,) int64 0-based class indices

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Detections:
        return Detections(
            torch.zeros((0, 4), device=device),
            torch.zeros((0,), device=device),
            torch.zeros((0,), dtype=torch.int64, device=device),
        )


@dataclass
class DetectionBatch:
    """What the detection data loader yields: the model's input plus what evaluation needs."""

    images: ImageBatch  # padded, normalised batch
    targets: list[Targets]  # per image, network-input pixels (empty for unannotated images)
    records: list[ImageRecord]  # per image, the dataset record (original pixels), for evaluators
