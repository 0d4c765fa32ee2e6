"""Image transforms outside the model: resize, flip, colour jitter, normalise, pad, and back.

Resize rule (py-faster-rcnn / Detectron2's ResizeShortestEdge): scale ``s = min_size /
min(h, w)``, lowered to ``max_size / max(h, w)`` if the longer side would exceed ``max_size``;
the new size is ``(round(h * s), round(w * s))`` and the scale is recorded per axis as
``(sy, sx) = (new_h / h, new_w / w)`` so that mapping back is exact. Boxes are continuous
0-based pixels, so a box scales as ``x * sx`` and flips as ``new_w - x`` (no ``-1``).
Normalisation: ``(pixel - pixel_mean) / pixel_std`` on the 0..255 scale, channels in
``format`` order (BGR for MSRA/caffe weights, RGB for torchvision's).

The public test-time path (used by :class:`detection.Predictor`; none of it needs a config):

* ``TestTransform(min_size, max_size, format, pixel_mean, pixel_std)``: called on an RGB uint8
  (H, W, 3) numpy image, returns the normalised (3, h, w) float32 tensor and its ``(sy, sx)``.
* ``collate_images(images, original_sizes, scales, flipped=None, image_ids=None,
  size_divisibility=32) -> ImageBatch``: zero-pads (bottom/right) to a common size that is a
  multiple of ``size_divisibility``, recording each image's size, original size and scale.
* ``detections_to_original(det, image_size, original_size, scale, flipped) -> Detections``:
  the exact inverse of the resize (and flip), boxes clipped to the original image;
  ``postprocess_detections(dets, images)`` applies it to a whole batch.

Training uses :class:`TrainTransform`, an albumentations pipeline (bbox-aware: colour jitter,
multi-scale :class:`ResizeShortestEdge`, horizontal flip) whose randomness comes only from the
per-sample seed it is called with, so the training stream does not depend on worker count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from detection.structures import Detections, ImageBatch

# albumentations otherwise asks the network for a newer version on import
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A

__all__ = [
    "ResizeShortestEdge",
    "TestTransform",
    "TrainTransform",
    "TransformedSample",
    "collate_images",
    "detections_to_original",
    "normalize",
    "postprocess_detections",
    "resized_shape",
]


ScaledImage = tuple[Tensor, tuple[float, float]]  # normalised (3, h, w), its (sy, sx)


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w): shorter side ``min_size``, longer side capped at ``max_size``."""
    scale = min_size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def normalize(
    image: np.ndarray, format: str, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> Tensor:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W) in ``format`` channel order."""
    # cv2.split gives contiguous planes: (H, W, 3) -> 3 x (H, W), 4x faster than a strided copy
    planes = cv2.split(image)
    if format == "BGR":
        planes = planes[::-1]
    chw = torch.empty((3, *image.shape[:2]), dtype=torch.float32)
    for channel, plane in zip(chw.numpy(), planes):
        channel[...] = plane
    mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1)
    return chw.sub_(mean).div_(std)


def _check_format(format: str, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
    if format not in ("RGB", "BGR"):
        raise ValueError(f"format must be 'RGB' or 'BGR', got {format!r}")
    if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
        raise ValueError(f"need 3 means and 3 positive stds, got {pixel_mean} and {pixel_std}")


@dataclass
class TransformedSample:
    """An image and its boxes after a transform."""

    image: Tensor  # (3, h, w) float32, normalised, network-input pixels
    boxes: np.ndarray  # (G, 4) float32 xyxy, network-input pixels (same order as the input)
    scale: tuple[float, float]  # (sy, sx): resized = original * scale
    flipped: bool  # horizontally flipped after resizing
    pyramid: list[ScaledImage] = field(default_factory=list)  # test.pyramid_sizes, ascending


class TestTransform:
    """Deterministic test-time resize + normalisation (and the multi-scale test pyramid).

    Args:
        min_size: target shorter side.
        max_size: cap on the longer side.
        format: channel order fed to the network, "RGB" or "BGR".
        pixel_mean: per-channel mean in ``format`` order, 0..255 scale.
        pixel_std: per-channel std in ``format`` order, 0..255 scale.
        pyramid_sizes: shorter sides of the test pyramid (each resized from the original
            image like the main one); empty: no pyramid.
        pyramid_max_size: cap on the longer side of the pyramid's images.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        min_size: int,
        max_size: int,
        format: str,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        pyramid_sizes: Sequence[int] = (),
        pyramid_max_size: int = 2000,
    ) -> None:
        _check_format(format, pixel_mean, pixel_std)
        self.min_size, self.max_size = min_size, max_size
        self.format, self.pixel_mean, self.pixel_std = format, list(pixel_mean), list(pixel_std)
        self.pyramid_sizes, self.pyramid_max_size = sorted(pyramid_sizes), pyramid_max_size

    def __call__(self, image: np.ndarray) -> tuple[Tensor, tuple[float, float]]:
        """RGB uint8 (H, W, 3) -> (normalised (3, h, w) float32, (sy, sx))."""
        resized, scale = self.resize(image)
        return normalize(resized, self.format, self.pixel_mean, self.pixel_std), scale

    def resize(
        self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """RGB uint8 (H, W, 3) -> (resized RGB uint8 (h, w, 3), (sy, sx)), bilinear, to
        ``min_size`` / ``max_size`` (default: the transform's own)."""
        height, width = image.shape[:2]
        new_h, new_w = resized_shape(
            height, width, min_size or self.min_size, max_size or self.max_size
        )
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        return resized, (new_h / height, new_w / width)

    def pyramid(self, image: np.ndarray) -> list[ScaledImage]:
        """RGB uint8 (H, W, 3) -> the normalised image at every pyramid size, ascending."""
        levels = []
        for size in self.pyramid_sizes:
            resized, scale = self.resize(image, size, self.pyramid_max_size)
            levels.append((normalize(resized, self.format, self.pixel_mean, self.pixel_std), scale))
        return levels

    def transform_sample(
        self, image: np.ndarray, boxes: np.ndarray, seed: int = 0
    ) -> TransformedSample:
        """Transform an image and its (G, 4) xyxy boxes (``seed`` is unused: no randomness)."""
        tensor, (sy, sx) = self(image)
        scaled = (boxes * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
        return TransformedSample(tensor, scaled, (sy, sx), False, self.pyramid(image))


class ResizeShortestEdge(A.DualTransform):
    """albumentations resize: shorter side one of ``min_sizes`` (random), longer <= ``max_size``.

    Boxes need no change: albumentations keeps them normalised to the image size.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.min_sizes, self.max_size = list(min_sizes), max_size

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        min_size = self.py_random.choice(self.min_sizes)
        return {"size": resized_shape(height, width, min_size, self.max_size)}

    def apply(self, img: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes  # normalised coordinates are scale-invariant

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_sizes", "max_size")


class TrainTransform:
    """Training augmentation: colour jitter, multi-scale resize, horizontal flip, normalise.

    Args:
        min_sizes: shorter-side choices, one picked per image.
        max_size: cap on the longer side.
        flip_prob: probability of a horizontal flip.
        color_jitter: brightness/contrast/saturation strength (factor in [1-j, 1+j]); 0 = off.
        format: channel order fed to the network, "RGB" or "BGR".
        pixel_mean: per-channel mean in ``format`` order, 0..255 scale.
        pixel_std: per-channel std in ``format`` order, 0..255 scale.
    """

    def __init__(
        self,
        min_sizes: Sequence[int],
        max_size: int,
        flip_prob: float,
        color_jitter: float,
        format: str,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ) -> None:
        _check_format(format, pixel_mean, pixel_std)
        self.format, self.pixel_mean, self.pixel_std = format, list(pixel_mean), list(pixel_std)
        steps: list[A.BasicTransform] = []
        if color_jitter > 0:
            j = color_jitter
            steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
        steps.append(ResizeShortestEdge(min_sizes, max_size))
        steps.append(A.HorizontalFlip(p=flip_prob))
        # "order" tracks which input box each output box is (none is dropped: clip, no filter)
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["order"], clip=True)
        self.pipeline = A.Compose(steps, bbox_params=bbox_params, save_applied_params=True)

    def transform_sample(
        self, image: np.ndarray, boxes: np.ndarray, seed: int
    ) -> TransformedSample:
        """Augment an RGB uint8 (H, W, 3) image and its (G, 4) xyxy boxes with ``seed``."""
        self._reseed(seed)
        out = self.pipeline(image=image, bboxes=boxes.reshape(-1, 4), order=np.arange(len(boxes)))
        new_boxes = np.zeros((len(boxes), 4), np.float32)
        new_boxes[np.asarray(out["order"], np.int64)] = np.asarray(out["bboxes"]).reshape(-1, 4)
        flipped = any(name == "HorizontalFlip" for name, _ in out["applied_transforms"])
        height, width = image.shape[:2]
        new_h, new_w = out["image"].shape[:2]
        tensor = normalize(out["image"], self.format, self.pixel_mean, self.pixel_std)
        return TransformedSample(tensor, new_boxes, (new_h / height, new_w / width), flipped)

    def _reseed(self, seed: int) -> None:
        """Give every step its own stream from ``seed`` (one shared seed would correlate them)."""
        self.pipeline.set_random_seed(seed)
        for k, step in enumerate(self.pipeline.transforms):
            step.set_random_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))


def collate_images(
    images: Sequence[Tensor],
    original_sizes: Sequence[tuple[int, int]],
    scales: Sequence[tuple[float, float]],
    flipped: Sequence[bool] | None = None,
    image_ids: Sequence[int | str] | None = None,
    size_divisibility: int = 32,
    pyramids: Sequence[Sequence[ScaledImage]] | None = None,
) -> ImageBatch:
    """Pad normalised images into one batch (and each level of their test pyramid into one).

    Args:
        images: per image a (3, h_i, w_i) float32 normalised tensor.
        original_sizes: per image (h, w) of the original file.
        scales: per image (sy, sx) with resized = original * scale.
        flipped: per image, flipped by the transform (default: none).
        image_ids: per image, its record's id (default: 0, 1, ...).
        size_divisibility: pad height and width up to a multiple of this (0 or 1: no rounding).
        pyramids: per image, its (tensor, scale) at each pyramid size (`TestTransform.pyramid`).

    Returns:
        ImageBatch with tensor (B, 3, H_pad, W_pad), zero padding at the bottom/right; its
        ``pyramid`` holds one such batch per level.
    """
    height = max(int(image.shape[1]) for image in images)
    width = max(int(image.shape[2]) for image in images)
    if size_divisibility > 1:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    tensor = _zeros_for_batch(images[0], (len(images), 3, height, width))
    for i, image in enumerate(images):
        tensor[i, :, : image.shape[1], : image.shape[2]].copy_(image)
    ids: list[int | str] = list(image_ids) if image_ids is not None else list(range(len(images)))
    levels = []
    for k in range(len(pyramids[0]) if pyramids else 0):
        level_images, level_scales = zip(*(p[k] for p in pyramids or ()))
        levels.append(collate_images(
            level_images, original_sizes, level_scales, image_ids=ids,
            size_divisibility=size_divisibility,
        ))  # fmt: skip
    return ImageBatch(
        tensor=tensor,
        image_sizes=[(int(image.shape[1]), int(image.shape[2])) for image in images],
        original_sizes=[tuple(size) for size in original_sizes],  # type: ignore[misc]
        scales=[tuple(scale) for scale in scales],  # type: ignore[misc]
        flipped=list(flipped) if flipped is not None else [False] * len(images),
        image_ids=ids,
        pyramid=levels,
    )


def _zeros_for_batch(like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A zero tensor; in a DataLoader worker, in shared memory (saves a copy when sent back)."""
    if get_worker_info() is None or like.device.type != "cpu":
        return like.new_zeros(shape)
    numel = int(np.prod(shape))
    storage = like._typed_storage()._new_shared(numel, device=like.device)
    return like.new(storage).resize_(shape).zero_()


def detections_to_original(
    det: Detections,
    image_size: tuple[int, int],
    original_size: tuple[int, int],
    scale: tuple[float, float],
    flipped: bool,
) -> Detections:
    """Map detections from network-input pixels back to the original image.

    Args:
        det: boxes (N, 4) xyxy in network-input pixels.
        image_size: (h, w) of the resized image (before padding).
        original_size: (h, w) of the original image.
        scale: (sy, sx) of the resize.
        flipped: whether the input was flipped after resizing.

    Returns:
        Detections with boxes (N, 4) xyxy in original pixels, clipped to the image.
    """
    boxes = det.boxes
    if flipped:
        width = image_size[1]
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    sy, sx = scale
    boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
    height, width = original_size
    boxes = torch.stack(
        [
            boxes[:, 0].clamp(0, width),
            boxes[:, 1].clamp(0, height),
            boxes[:, 2].clamp(0, width),
            boxes[:, 3].clamp(0, height),
        ],
        dim=1,
    )
    return Detections(boxes, det.scores, det.labels)


def postprocess_detections(dets: Sequence[Detections], images: ImageBatch) -> list[Detections]:
    """:func:`detections_to_original` for every image of a batch."""
    return [
        detections_to_original(det, size, original, scale, flip)
        for det, size, original, scale, flip in zip(
            dets, images.image_sizes, images.original_sizes, images.scales, images.flipped
        )
    ]
