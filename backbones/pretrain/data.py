"""Classification data: ImageNet-style folders and CIFAR-10's python format, samplers, batches.

Readers:
- ``imagefolder``: ``root/<split>/<class>/*.{jpg,jpeg,png,...}``; classes are the sorted
  folder names (ImageNet's wnids), labels their indices.
- ``cifar10``: the official ``cifar-10-batches-py`` folder: ``data_batch_1..5`` (split
  ``train``), ``test_batch`` (split ``test``), ``batches.meta`` (class names).

Images are decoded by ``engine.images.decode_image`` into RGB uint8. A file that cannot be
read comes back as a :class:`BadImage` instead of a sample, so the training process (not a
worker) applies the bad-image policy. Training batches come from engine's
``ResumableBatchSampler`` (shared with detection), so ``--resume`` sees exactly the batches
an uninterrupted run would have.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from backbones.pretrain.transforms import ImageTransform, ViewTransform
from engine.errors import UserError
from engine.images import BadImageError, decode_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CIFAR_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@dataclass
class ClassificationData:
    """One split, as a reader returns it (files or in-memory pixels)."""

    classes: list[str]  # class names in label order
    labels: np.ndarray  # (N,) int64 labels in 0..len(classes)-1
    paths: list[str] | None = None  # imagefolder: N image files
    images: np.ndarray | None = None  # cifar10: (N, 32, 32, 3) uint8 RGB

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (for messages)."""
        return self.paths[index] if self.paths is not None else f"array index {index}"


class BadImage(NamedTuple):
    """A file that could not be decoded: reported by the training process, not the worker."""

    path: str
    reason: str


def read_imagefolder(root: str | Path, split: str) -> ClassificationData:
    """Read ``root/split/<class>/<image>``; classes are the sorted sub-folder names.

    Raises:
        UserError: a missing split folder, no class folders, or an empty class folder.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise UserError(f"{folder}: split folder not found (expected {root}/{split}/<class>/)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{folder}: no class folders (expected {folder}/<class>/<image>)")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            str(p) for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise UserError(
                f"{folder / name}: empty class folder (no {', '.join(IMAGE_EXTENSIONS)} files)"
            )
        paths += files
        labels += [label] * len(files)
    return ClassificationData(classes, np.array(labels, np.int64), paths=paths)


def read_cifar10(root: str | Path, split: str) -> ClassificationData:
    """Read CIFAR-10's python batches (``split`` train: data_batch_1..5, test: test_batch).

    Raises:
        UserError: an unknown split, a missing or malformed batch file or ``batches.meta``.
    """
    if split not in CIFAR_SPLITS:
        raise UserError(f"cifar10 split {split!r} is not known; expected train or test")
    meta = _unpickle(Path(root) / "batches.meta")
    classes = [_text(n) for n in _field(meta, "label_names", Path(root) / "batches.meta")]
    images, labels = [], []
    for name in CIFAR_SPLITS[split]:
        path = Path(root) / name
        batch = _unpickle(path)
        data = np.asarray(_field(batch, "data", path), np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise UserError(f"{path}: 'data' has shape {data.shape}; expected (N, 3072)")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # -> (N, 32, 32, 3)
        labels.append(np.asarray(_field(batch, "labels", path), np.int64))
        if len(labels[-1]) != len(data) or labels[-1].max(initial=0) >= len(classes):
            raise UserError(f"{path}: 'labels' do not match 'data' and {len(classes)} classes")
    return ClassificationData(
        classes, np.concatenate(labels), images=np.ascontiguousarray(np.concatenate(images))
    )


def _unpickle(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise UserError(
            f"{path}: CIFAR-10 file not found (expected the cifar-10-batches-py folder)"
        )
    try:
        with path.open("rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise UserError(f"{path}: not a CIFAR-10 python pickle ({exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _field(obj: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # python-2 pickles have bytes keys
        if k in obj:
            return obj[k]
    raise UserError(f"{path}: missing key {key!r}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


READERS = {"imagefolder": read_imagefolder, "cifar10": read_cifar10}


def read_splits(format: str, root: str, splits: list[str]) -> ClassificationData:
    """Read and concatenate ``splits`` of a data set (classes must agree).

    Raises:
        UserError: unknown format, empty root, no split, or splits with different classes.
    """
    if format not in READERS:
        raise UserError(
            f"data format {format!r} is not a classification format; expected "
            f"{' or '.join(READERS)}"
        )
    if not root:
        raise UserError(f"data root is empty: set data.train.root / data.test.root ({format})")
    if not splits:
        raise UserError(f"{root}: no split given (data.*.splits is empty)")
    parts = [READERS[format](root, split) for split in splits]
    for split, part in zip(splits, parts):
        if part.classes != parts[0].classes:
            raise UserError(f"{root}/{split}: classes differ from split {splits[0]!r}")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    labels = np.concatenate([p.labels for p in parts])
    if first.paths is not None:
        paths = [path for p in parts for path in p.paths or []]
        return ClassificationData(first.classes, labels, paths=paths)
    images = np.concatenate([p.images for p in parts if p.images is not None])
    return ClassificationData(first.classes, labels, images=images)


# ------------------------------------------------------------------------------- decoding
def pixel_mean_image(data: ClassificationData, size: int) -> np.ndarray:
    """Per-pixel mean of the training images, (size, size, 3) float32 RGB 0..255.

    CIFAR images are averaged as they are; image files are each resized to size x size first
    (files that cannot be decoded are left out).
    """
    if data.images is not None:
        images = data.images
        if images.shape[1:3] != (size, size):
            images = np.stack([cv2.resize(im, (size, size)) for im in images])
        return images.mean(axis=0, dtype=np.float64).astype(np.float32)
    total, count = np.zeros((size, size, 3), np.float64), 0
    for path in data.paths or []:
        try:
            total += cv2.resize(decode_image(path), (size, size), interpolation=cv2.INTER_AREA)
            count += 1
        except BadImageError:
            continue
    if count == 0:
        raise UserError("input.per_pixel_mean: no training image could be read")
    return (total / count).astype(np.float32)


# ------------------------------------------------------------------------------- datasets
@dataclass
class Sample:
    """One training image after augmentation."""

    image: Tensor  # (3, crop, crop) float32, normalised
    label: int


@dataclass
class EvalSample:
    """One test image as its views (see transforms.eval_views)."""

    views: list[Tensor]  # per size: (V, 3, h, w) float32, normalised
    label: int


class TrainDataset(Dataset[Sample | BadImage]):
    """Indexed by ``(index, seed)``: the seed drives this sample's augmentation."""

    def __init__(self, data: ClassificationData, transform: ImageTransform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> Sample | BadImage:
        index, seed = key
        image = _load(self.data, index)
        if isinstance(image, BadImage):
            return image
        return Sample(self.transform(image, seed), int(self.data.labels[index]))


class EvalDataset(Dataset[EvalSample | BadImage]):
    """Indexed by position; each item is all the views of one test mode."""

    def __init__(self, data: ClassificationData, views: ViewTransform) -> None:
        self.data = data
        self.views = views

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> EvalSample | BadImage:
        image = _load(self.data, index)
        if isinstance(image, BadImage):
            return image
        return EvalSample(self.views(image), int(self.data.labels[index]))


def _load(data: ClassificationData, index: int) -> np.ndarray | BadImage:
    if data.images is not None:
        return data.images[index]
    assert data.paths is not None
    try:
        return decode_image(data.paths[index])
    except BadImageError as exc:
        return BadImage(data.paths[index], str(exc))


# ------------------------------------------------------------------------------- batches
@dataclass
class ClassBatch:
    """A training batch; unreadable files are listed, not included."""

    images: Tensor  # (B, 3, H, W) float32, normalised
    labels: Tensor  # (B,) int64
    bad: list[BadImage]  # files of this batch that could not be read

    def pin_memory(self) -> ClassBatch:
        """Page-locked copies (DataLoader(pin_memory=True) calls this) for async H2D copies."""
        return ClassBatch(self.images.pin_memory(), self.labels.pin_memory(), self.bad)


@dataclass
class EvalBatch:
    """A test batch: views per image (sizes may differ between images)."""

    views: list[list[Tensor]]  # per image, per size: (V, 3, h, w)
    labels: Tensor  # (B,) int64
    bad: list[BadImage]


def collate_train(items: list[Sample | BadImage]) -> ClassBatch:
    """Stack the good samples, list the bad ones."""
    good = [s for s in items if isinstance(s, Sample)]
    bad = [s for s in items if isinstance(s, BadImage)]
    images = torch.stack([s.image for s in good]) if good else torch.zeros(0, 3, 1, 1)
    return ClassBatch(images, torch.tensor([s.label for s in good], dtype=torch.int64), bad)


def collate_eval(items: list[EvalSample | BadImage]) -> EvalBatch:
    """Keep each image's views as they are (grouped by size later)."""
    good = [s for s in items if isinstance(s, EvalSample)]
    bad = [s for s in items if isinstance(s, BadImage)]
    labels = torch.tensor([s.label for s in good], dtype=torch.int64)
    return EvalBatch([s.views for s in good], labels, bad)
