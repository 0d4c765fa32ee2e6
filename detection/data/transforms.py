"""Image transforms outside the model: resize, flip, colour jitter, normalise, pad, and back.

Resize rule (py-faster-rcnn / Detectron2's ResizeShortestEdge): scale ``s = min_size /
min(h, w)``, lowered to ``max_size / max(h, w)`` if the longer side would exceed ``max_size``;
the new size is ``(round(h * s), round(w * s))`` and the scale is recorded per axis as
``(sy, sx) = (new_h / h, new_w / w)`` so that mapping back is exact. Boxes are continuous
0-based pixels, so a box scales as ``x * sx`` and flips as ``new_w - x`` (no ``-1``).
Normalisation: ``(pixel - pixel_mean) / pixel_std`` on the 0..255 scale, channels in
``format`` order (BGR for MSRA/caffe weights, RGB for torchvision's).

The public test-time path (none of it needs a config):

* ``TestTransform(min_size, max_size, format, pixel_mean, pixel_std)``: called on an RGB uint8
  (H, W, 3) numpy image, returns the normalised (3, h, w) float32 tensor and its ``(sy, sx)``;
  ``.resize`` (and ``.pyramid``) give the resized uint8 image(s) instead.
* ``collate_images(images, original_sizes, scales, flipped=None, image_ids=None,
  size_divisibility=32) -> ImageBatch``: zero-pads (bottom/right) to a common size that is a
  multiple of ``size_divisibility``, recording each image's size, original size and scale;
  ``collate_uint8_images`` does the same for uint8 images, normalising into the batch (what
  :class:`detection.Predictor` and the data loader use).
* ``detections_to_original(det, image_size, original_size, scale, flipped) -> Detections``:
  the exact inverse of the resize (and flip), boxes clipped to the original image;
  ``postprocess_detections(dets, images)`` applies it to a whole batch.

The data-loader path keeps pixels uint8 until the batch: ``transform_sample`` (of
:class:`TrainTransform`: colour jitter, multi-scale resize, horizontal flip; or of
:class:`TestTransform`) returns the resized RGB uint8 image, and :func:`collate_uint8_images`
normalises each image once, straight into the padded batch (:class:`Normalization`). The
training randomness comes only from the per-sample seed, so the training stream does not
depend on worker count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from detection.structures import Detections, ImageBatch
from engine.images import reduced_size

# albumentations otherwise asks the network for a newer version on import
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A

__all__ = [
    "Normalization",
    "TestTransform",
    "TrainTransform",
    "TransformedSample",
    "collate_images",
    "collate_uint8_images",
    "decode_reduction",
    "detections_to_original",
    "normalize",
    "postprocess_detections",
    "resize_shorter_side",
    "resized_shape",
]


ScaledImage = tuple[np.ndarray, tuple[float, float]]  # resized RGB uint8 (h, w, 3), its (sy, sx)


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w): shorter side ``min_size``, longer side capped at ``max_size``."""
    scale = min_size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class Normalization:
    """RGB uint8 pixels -> network input: channels in ``format`` order, ``(x - mean) / std``.

    Args:
        format: channel order fed to the network, "RGB" or "BGR".
        pixel_mean: per-channel mean in ``format`` order, 0..255 scale.
        pixel_std: per-channel std in ``format`` order, 0..255 scale.
    """

    format: str
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_format(self.format, self.pixel_mean, self.pixel_std)

    def __call__(self, image: np.ndarray) -> Tensor:
        """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W)."""
        return self.into(torch.empty((3, *image.shape[:2]), dtype=torch.float32), image)

    def into(self, out: Tensor, image: np.ndarray) -> Tensor:
        """Write RGB uint8 (h, w, 3) normalised into ``out`` (3, h, w) float32 (a batch slot)."""
        # cv2.split gives contiguous planes: (H, W, 3) -> 3 x (H, W), 4x faster than a strided
        # copy; one plane at a time stays in cache for the convert, subtract and divide
        planes = cv2.split(image)
        if self.format == "BGR":
            planes = planes[::-1]
        for channel, plane, mean, std in zip(out, planes, self.pixel_mean, self.pixel_std):
            channel.copy_(torch.from_numpy(plane)).sub_(mean).div_(std)
        return out


def normalize(
    image: np.ndarray, format: str, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> Tensor:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W) in ``format`` channel order."""
    return Normalization(format, tuple(pixel_mean), tuple(pixel_std))(image)


def _check_format(format: str, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
    if format not in ("RGB", "BGR"):
        raise ValueError(f"format must be 'RGB' or 'BGR', got {format!r}")
    if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
        raise ValueError(f"need 3 means and 3 positive stds, got {pixel_mean} and {pixel_std}")


def decode_reduction(original: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest r of 8, 4, 2 whose 1/r decode of ``original`` (h, w) still covers ``target``
    (h, w), else 1: a reduced decode only replaces part of a shrink, never adds an upscale."""
    for reduce in (8, 4, 2):
        height, width = reduced_size(*original, reduce)
        if height >= target[0] and width >= target[1]:
            return reduce
    return 1


def resize_shorter_side(
    image: np.ndarray,
    min_size: int,
    max_size: int,
    original_size: tuple[int, int] | None = None,
) -> ScaledImage:
    """RGB uint8 (H, W, 3) -> (resized to `resized_shape`, (sy, sx)), bilinear.

    ``image`` may be a reduced decode of an original of ``original_size`` (h, w); the size
    and the scale follow the original: ``(sy, sx) = (h / H_orig, w / W_orig)``.
    """
    height, width = original_size or image.shape[:2]
    new_h, new_w = resized_shape(height, width, min_size, max_size)
    return _resize(image, (new_h, new_w)), (new_h / height, new_w / width)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (H, W, 3) uint8 to ``size`` (h, w); the image itself if it has it."""
    if image.shape[:2] == size:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _scale_boxes(boxes: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """(G, 4) xyxy boxes -> float32 boxes times the per-axis scale."""
    return (boxes.reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)


@dataclass
class TransformedSample:
    """An image and its boxes after a transform (pixels still uint8, not normalised)."""

    image: np.ndarray  # (h, w, 3) uint8 RGB, network-input pixels (resized, maybe flipped)
    boxes: np.ndarray  # (G, 4) float32 xyxy, network-input pixels (same order as the input)
    scale: tuple[float, float]  # (sy, sx): resized = original * scale
    flipped: bool  # horizontally flipped after resizing
    normalization: Normalization  # how the batch turns ``image`` into the network's input
    pyramid: list[ScaledImage] = field(default_factory=list)  # test.pyramid_sizes, ascending


class TestTransform:
    """Deterministic test-time resize + normalisation (and the multi-scale test pyramid).

    Args:
        min_size: target shorter side.
        max_size: cap on the longer side.
        format: channel order fed to the network, "RGB" or "BGR".
        pixel_mean: per-channel mean in ``format`` order, 0..255 scale.
        pixel_std: per-channel std in ``format`` order, 0..255 scale.
        reduced_decode: let :meth:`decode_reduction` ask for a reduced decode (data loader).
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
        reduced_decode: bool = False,
        pyramid_sizes: Sequence[int] = (),
        pyramid_max_size: int = 2000,
    ) -> None:
        self.normalization = Normalization(format, tuple(pixel_mean), tuple(pixel_std))
        self.min_size, self.max_size, self.reduced_decode = min_size, max_size, reduced_decode
        self.pyramid_sizes, self.pyramid_max_size = sorted(pyramid_sizes), pyramid_max_size

    def __call__(self, image: np.ndarray) -> tuple[Tensor, tuple[float, float]]:
        """RGB uint8 (H, W, 3) -> (normalised (3, h, w) float32, (sy, sx))."""
        resized, scale = self.resize(image)
        return self.normalization(resized), scale

    def resize(
        self, image: np.ndarray, original_size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """RGB uint8 (H, W, 3) -> (resized RGB uint8 (h, w, 3), (sy, sx)) at the test size
        (`resize_shorter_side`)."""
        return resize_shorter_side(image, self.min_size, self.max_size, original_size)

    def pyramid(
        self, image: np.ndarray, original_size: tuple[int, int] | None = None
    ) -> list[ScaledImage]:
        """RGB uint8 (H, W, 3) -> the image at every pyramid size, ascending, with its
        (sy, sx); ``original_size`` as in :meth:`resize`."""
        return [
            resize_shorter_side(image, size, self.pyramid_max_size, original_size)
            for size in self.pyramid_sizes
        ]

    def decode_reduction(self, height: int, width: int, seed: int = 0) -> int:
        """How much smaller (1, 2, 4, 8) the data loader may decode an (H, W) original: as
        much as the largest image made from it (the main one or a pyramid level) allows."""
        if not self.reduced_decode:
            return 1
        targets = [resized_shape(height, width, self.min_size, self.max_size)]
        targets += [
            resized_shape(height, width, s, self.pyramid_max_size) for s in self.pyramid_sizes
        ]
        return min(decode_reduction((height, width), target) for target in targets)

    def transform_sample(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        seed: int = 0,
        original_size: tuple[int, int] | None = None,
    ) -> TransformedSample:
        """Resize an RGB uint8 image and its (G, 4) xyxy boxes (original pixels); ``seed`` is
        unused (no randomness); ``original_size`` as in :meth:`resize`."""
        resized, (sy, sx) = self.resize(image, original_size)
        return TransformedSample(
            resized, _scale_boxes(boxes, sy, sx), (sy, sx), False, self.normalization,
            self.pyramid(image, original_size),
        )  # fmt: skip


class TrainTransform:
    """Training augmentation: colour jitter, multi-scale resize, horizontal flip (uint8 pixels).

    Args:
        min_sizes: shorter-side choices, one picked per image.
        max_size: cap on the longer side.
        flip_prob: probability of a horizontal flip.
        color_jitter: brightness/contrast/saturation strength (factor in [1-j, 1+j]); 0 = off.
        format: channel order fed to the network, "RGB" or "BGR".
        pixel_mean: per-channel mean in ``format`` order, 0..255 scale.
        pixel_std: per-channel std in ``format`` order, 0..255 scale.
        reduced_decode: let :meth:`decode_reduction` ask for a reduced decode (data loader).
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
        reduced_decode: bool = False,
    ) -> None:
        self.normalization = Normalization(format, tuple(pixel_mean), tuple(pixel_std))
        self.min_sizes, self.max_size, self.flip_prob = list(min_sizes), max_size, flip_prob
        self.reduced_decode = reduced_decode
        j = color_jitter
        self.jitter = (
            A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0) if j > 0 else None
        )

    def _draw(self, seed: int) -> tuple[int, bool, int]:
        """(shorter side, flip, jitter seed) of sample ``seed``: successive draws of one stream."""
        rng = np.random.default_rng(seed)
        min_size = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        return min_size, bool(rng.random() < self.flip_prob), int(rng.integers(2**31))

    def decode_reduction(self, height: int, width: int, seed: int) -> int:
        """How much smaller (1, 2, 4, 8) the data loader may decode an (H, W) original."""
        if not self.reduced_decode:
            return 1
        target = resized_shape(height, width, self._draw(seed)[0], self.max_size)
        return decode_reduction((height, width), target)

    def transform_sample(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        seed: int,
        original_size: tuple[int, int] | None = None,
    ) -> TransformedSample:
        """Augment an RGB uint8 (H, W, 3) image and its (G, 4) xyxy boxes with ``seed``.

        ``image`` may be a reduced decode of an original of ``original_size`` (h, w): sizes,
        scale and boxes follow the original (boxes in original pixels, scale = new size /
        original size). Boxes are clipped to the image, then scaled and flipped with it (none
        is dropped).
        """
        min_size, flipped, jitter_seed = self._draw(seed)
        if self.jitter is not None:
            self.jitter.set_random_seed(jitter_seed)
            image = self.jitter(image=image)["image"]
        height, width = original_size or image.shape[:2]
        resized, (sy, sx) = resize_shorter_side(image, min_size, self.max_size, original_size)
        clipped = np.clip(boxes.reshape(-1, 4), 0, np.array([width, height, width, height]))
        new_boxes = _scale_boxes(clipped, sy, sx)
        if flipped:
            resized = cv2.flip(resized, 1)
            new_boxes[:, [0, 2]] = resized.shape[1] - new_boxes[:, [2, 0]]
        return TransformedSample(resized, new_boxes, (sy, sx), flipped, self.normalization)


def collate_images(
    images: Sequence[Tensor],
    original_sizes: Sequence[tuple[int, int]],
    scales: Sequence[tuple[float, float]],
    flipped: Sequence[bool] | None = None,
    image_ids: Sequence[int | str] | None = None,
    size_divisibility: int = 32,
) -> ImageBatch:
    """Pad normalised images into one batch.

    Args:
        images: per image a (3, h_i, w_i) float32 normalised tensor.
        original_sizes: per image (h, w) of the original file.
        scales: per image (sy, sx) with resized = original * scale.
        flipped: per image, flipped by the transform (default: none).
        image_ids: per image, its record's id (default: 0, 1, ...).
        size_divisibility: pad height and width up to a multiple of this (0 or 1: no rounding).

    Returns:
        ImageBatch with tensor (B, 3, H_pad, W_pad), zero padding at the bottom/right.
    """
    sizes = [(int(image.shape[1]), int(image.shape[2])) for image in images]
    tensor = _padded_batch(sizes, size_divisibility, images[0].dtype, images[0].device)
    for slot, image, (height, width) in zip(tensor, images, sizes):
        slot[:, :height, :width].copy_(image)
    return _image_batch(tensor, sizes, original_sizes, scales, flipped, image_ids)


def collate_uint8_images(
    images: Sequence[np.ndarray],
    normalization: Normalization,
    original_sizes: Sequence[tuple[int, int]],
    scales: Sequence[tuple[float, float]],
    flipped: Sequence[bool] | None = None,
    image_ids: Sequence[int | str] | None = None,
    size_divisibility: int = 32,
    pyramids: Sequence[Sequence[ScaledImage]] | None = None,
) -> ImageBatch:
    """:func:`collate_images` for RGB uint8 (h_i, w_i, 3) images, normalised into the batch.

    Each image is converted and normalised once, straight into its slot of the padded batch
    (no per-image float tensor, no second copy). Returns the same ImageBatch; with
    ``pyramids`` (per image, its (image, scale) at each pyramid size: `TestTransform.pyramid`)
    its ``pyramid`` holds one such batch per level.
    """
    sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    tensor = _padded_batch(sizes, size_divisibility, torch.float32, torch.device("cpu"))
    for slot, image, (height, width) in zip(tensor, images, sizes):
        normalization.into(slot[:, :height, :width], image)
    batch = _image_batch(tensor, sizes, original_sizes, scales, flipped, image_ids)
    for k in range(len(pyramids[0]) if pyramids else 0):
        level_images, level_scales = zip(*(p[k] for p in pyramids or ()))
        batch.pyramid.append(collate_uint8_images(
            level_images, normalization, original_sizes, level_scales,
            image_ids=batch.image_ids, size_divisibility=size_divisibility,
        ))  # fmt: skip
    return batch


def _padded_batch(
    sizes: Sequence[tuple[int, int]],
    size_divisibility: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """(B, 3, H_pad, W_pad) with only the padding zeroed (the images are written over the rest).

    In a DataLoader worker the batch is allocated in shared memory, which saves the copy torch
    otherwise makes to send it to the main process.
    """
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    if size_divisibility > 1:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    shape = (len(sizes), 3, height, width)
    if get_worker_info() is None or device.type != "cpu":
        tensor = torch.empty(shape, dtype=dtype, device=device)
    else:
        storage = (
            torch.empty(0, dtype=dtype)
            ._typed_storage()
            ._new_shared(int(np.prod(shape)), device=device)
        )
        tensor = torch.empty(0, dtype=dtype).new(storage).view(shape)
    for slot, (h, w) in zip(tensor, sizes):
        slot[:, h:].zero_()
        slot[:, :h, w:].zero_()
    return tensor


def _image_batch(
    tensor: Tensor,
    sizes: Sequence[tuple[int, int]],
    original_sizes: Sequence[tuple[int, int]],
    scales: Sequence[tuple[float, float]],
    flipped: Sequence[bool] | None,
    image_ids: Sequence[int | str] | None,
) -> ImageBatch:
    return ImageBatch(
        tensor=tensor,
        image_sizes=list(sizes),
        original_sizes=[tuple(size) for size in original_sizes],  # type: ignore[misc]
        scales=[tuple(scale) for scale in scales],  # type: ignore[misc]
        flipped=list(flipped) if flipped is not None else [False] * len(sizes),
        image_ids=list(image_ids) if image_ids is not None else list(range(len(sizes))),
    )


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
