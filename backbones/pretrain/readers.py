"""Classification data sets as they come on disk -> :class:`ClassificationData`.

Formats (``data.*.format``):
- ``imagefolder``: ``root/<split>/<class>/*.{jpg,jpeg,png,...}``; classes are the sorted
  folder names (ImageNet's wnids), labels their indices.
- ``cifar10``: the official ``cifar-10-batches-py`` folder: ``data_batch_1..5`` (split
  ``train``), ``test_batch`` (split ``test``), ``batches.meta`` (class names). The batches
  are pickles; they are read by an unpickler that builds only what they hold (dicts, lists,
  bytes, ints and uint8 numpy arrays) and refuses anything else, so a planted file cannot
  run code.
- ``tinyimagenet``: Tiny ImageNet-200 as distributed (``tiny-imagenet-200/``): class order
  from ``wnids.txt``; split ``train`` is ``train/<wnid>/images/*.JPEG``, split ``val`` is
  ``val/images/*`` labelled by ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box``);
  ``words.txt`` (``wnid<TAB>names``), when present, names the classes in messages and in the
  weights' metadata. The unlabelled ``test`` split is refused.

Every reader raises :class:`UserError` naming the file (and line) for a missing or malformed
file; names read from a file that become paths must stay inside the root
(:func:`engine.paths.child_path`).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.errors import UserError
from engine.io import read_text
from engine.paths import child_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CIFAR_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@dataclass
class ClassificationData:
    """One split, as a reader returns it (files or in-memory pixels)."""

    classes: list[str]  # class ids in label order (folder names, wnids)
    labels: np.ndarray  # (N,) int64 labels in 0..len(classes)-1
    paths: list[str] | None = None  # imagefolder, tinyimagenet: N image files
    images: np.ndarray | None = None  # cifar10: (N, 32, 32, 3) uint8 RGB
    descriptions: dict[str, str] | None = None  # class id -> words (tinyimagenet's words.txt)

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (for messages)."""
        return self.paths[index] if self.paths is not None else f"array index {index}"


# ------------------------------------------------------------------------------- imagefolder
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
        files = _images_in(folder / name)
        paths += files
        labels += [label] * len(files)
    return ClassificationData(classes, np.array(labels, np.int64), paths=paths)


def _images_in(folder: Path) -> list[str]:
    """The sorted image files of a class folder; an empty one is an error."""
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"{folder}: empty class folder (no {', '.join(IMAGE_EXTENSIONS)} files)")
    return files


# ------------------------------------------------------------------------------- cifar10
def read_cifar10(root: str | Path, split: str) -> ClassificationData:
    """Read CIFAR-10's python batches (``split`` train: data_batch_1..5, test: test_batch).

    Raises:
        UserError: an unknown split, a missing or malformed batch file or ``batches.meta``,
            or a pickle that holds anything but CIFAR-10's plain data.
    """
    if split not in CIFAR_SPLITS:
        raise UserError(f"cifar10 split {split!r} is not known; expected train or test")
    meta_path = Path(root) / "batches.meta"
    meta = _unpickle(meta_path)
    classes = [_text(n, meta_path) for n in _field(meta, "label_names", meta_path)]
    images, labels = [], []
    for name in CIFAR_SPLITS[split]:
        path = Path(root) / name
        batch = _unpickle(path)
        data = _field(batch, "data", path)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3072:  # fmt: skip
            shape = getattr(data, "shape", type(data).__name__)
            raise UserError(f"{path}: 'data' is {shape}; expected a (N, 3072) uint8 array")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # -> (N, 32, 32, 3)
        labels.append(_labels(_field(batch, "labels", path), len(data), len(classes), path))
    return ClassificationData(
        classes, np.concatenate(labels), images=np.ascontiguousarray(np.concatenate(images))
    )


class _CifarUnpickler(pickle.Unpickler):
    """Builds CIFAR-10's own objects only: numpy arrays and dtypes besides the builtins the
    pickle opcodes make (dict, list, bytes, str, int); any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (not CIFAR-10 data)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise UserError(
            f"{path}: CIFAR-10 file not found (expected the cifar-10-batches-py folder)"
        )
    try:
        obj = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a CIFAR-10 python pickle ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the CIFAR-10 file ({exc.strerror or exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _field(obj: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # python-2 pickles have bytes keys
        if k in obj:
            return obj[k]
    raise UserError(f"{path}: missing key {key!r}")


def _text(value: object, path: Path) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    raise UserError(f"{path}: a label name is {type(value).__name__}; expected text")


def _labels(values: object, count: int, num_classes: int, path: Path) -> np.ndarray:
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise UserError(f"{path}: 'labels' is not a list of integers")
    labels = np.asarray(values, np.int64)
    if len(labels) != count or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise UserError(f"{path}: 'labels' do not match 'data' and {num_classes} classes")
    return labels


# ------------------------------------------------------------------------------- tinyimagenet
def read_tinyimagenet(root: str | Path, split: str) -> ClassificationData:
    """Read Tiny ImageNet-200's ``train`` or ``val`` split (class order: ``wnids.txt``).

    Raises:
        UserError: an unknown split; a missing ``wnids.txt``, class folder or annotation file;
            a malformed line (file and line named); an unknown wnid; a missing image.
    """
    if split not in ("train", "val"):
        hint = " (Tiny ImageNet's test split has no labels)" if split == "test" else ""
        raise UserError(f"tinyimagenet split {split!r} is not known; expected train or val{hint}")
    root = Path(root)
    classes = _read_wnids(root / "wnids.txt")
    if split == "train":
        paths, labels = _tiny_train(root, classes)
    else:
        paths, labels = _tiny_val(root, {wnid: i for i, wnid in enumerate(classes)})
    descriptions = _read_words(root / "words.txt", classes)
    return ClassificationData(classes, np.array(labels, np.int64), paths, None, descriptions)


def _read_wnids(path: Path) -> list[str]:
    wnids = []
    for number, line in enumerate(read_text(path, "Tiny ImageNet wnids.txt").splitlines(), 1):
        wnid = line.strip()
        if not wnid:
            continue
        child_path(path.parent, wnid, f"{path}:{number}")  # a wnid names a folder
        if wnid in wnids:
            raise UserError(f"{path}:{number}: wnid {wnid!r} is listed twice")
        wnids.append(wnid)
    if not wnids:
        raise UserError(f"{path}: no wnids (expected one class id per line)")
    return wnids


def _tiny_train(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(classes):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise UserError(
                f"{folder}: class folder not found (wnids.txt lists {wnid}; expected "
                f"train/<wnid>/images/*.JPEG)"
            )
        files = _images_in(folder)
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _tiny_val(root: Path, index: dict[str, int]) -> tuple[list[str], list[int]]:
    path = root / "val" / "val_annotations.txt"
    images = root / "val" / "images"
    paths: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(read_text(path, "Tiny ImageNet annotation file").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) not in (2, 6):
            raise UserError(
                f"{where}: {len(fields)} tab-separated fields; expected file, wnid and a box"
            )
        file, wnid = fields[0], fields[1]
        if wnid not in index:
            raise UserError(f"{where}: wnid {wnid!r} is not in wnids.txt ({len(index)} listed)")
        image = child_path(images, file, where)
        if not image.is_file():
            raise UserError(f"{where}: image {image} not found")
        paths.append(str(image))
        labels.append(index[wnid])
    if not paths:
        raise UserError(f"{path}: no annotated images")
    return paths, labels


def _read_words(path: Path, classes: list[str]) -> dict[str, str] | None:
    """wnid -> words for the classes, from ``words.txt`` (None when the file is absent)."""
    if not path.exists():
        return None
    wanted, words = set(classes), {}
    for number, line in enumerate(read_text(path, "Tiny ImageNet words.txt").splitlines(), 1):
        if not line.strip():
            continue
        wnid, sep, text = line.partition("\t")
        if not sep:
            raise UserError(f"{path}:{number}: expected 'wnid<TAB>words'")
        if wnid in wanted:
            words[wnid] = text.strip()
    return words


# ------------------------------------------------------------------------------- any format
READERS = {
    "imagefolder": read_imagefolder,
    "cifar10": read_cifar10,
    "tinyimagenet": read_tinyimagenet,
}


def read_splits(format: str, root: str, splits: list[str]) -> ClassificationData:
    """Read and concatenate ``splits`` of a data set (classes must agree).

    Raises:
        UserError: unknown format, empty root, no split, or splits with different classes.
    """
    if format not in READERS:
        raise UserError(
            f"data format {format!r} is not a classification format; expected {', '.join(READERS)}"
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
        return ClassificationData(first.classes, labels, paths, None, first.descriptions)
    images = np.concatenate([p.images for p in parts if p.images is not None])
    return ClassificationData(first.classes, labels, images=images)
