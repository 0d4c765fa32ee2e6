"""PASCAL VOC reader: ``VOC20xx/{Annotations,JPEGImages,ImageSets/Main}`` -> ImageRecords.

Conventions:

* ``image_id`` is the annotation's file stem (``"000005"``), its annotation is
  ``Annotations/<id>.xml`` and its image the XML's ``<filename>`` in ``JPEGImages/``, else
  ``<id>`` with the first image extension that exists (``.jpg`` when none does). The three
  folders are settable (``image_dir``, ``ann_dir``, ``split_dir``), so a LabelImg folder
  (``images/`` + ``annotations/``, split files written by ``resdet split-dataset``) reads as
  it is.
* VOC's XML boxes are 1-based and inclusive; they load as ``(xmin - 1, ymin - 1, xmax, ymax)``
  in 0-based continuous pixels (Detectron2's convention). The result writers add the 1 back.
* ``<difficult>1</difficult>`` objects are kept with ``ignore=True`` (the evaluation needs them,
  the training losses skip them); ``truncated`` is read by nobody.
* The image size comes from ``<size>``; when it is missing the image header is read.
* Boxes reaching outside the image are clipped and boxes with no area dropped, with one
  counted warning per split (:class:`~detection.data.cleaning.BoxCleaner`).

Bad input raises :class:`UserError` naming the file: a missing split or annotation file, an
empty split file, an id that is not a plain file name (``../../outside/evil``, ``/etc/x``: named
with the split file and line, so no file outside ``root`` is ever opened), XML that does not
parse or lacks a box coordinate, an unknown class name. Of an XML's ``<filename>`` only the last
part is used (tools write the labelling machine's path there), so it stays in the image folder.
Images are not opened here (a tree of annotations alone, as ``resdet score`` reads, is fine)
unless ``check_images=True``; a missing or corrupt image is otherwise reported by the loader.

The config form (``data.train.root`` + ``data.train.splits``) is :func:`load_voc_splits`:
``"trainval"`` reads ``root/ImageSets/Main/trainval.txt`` and ``"VOC2012/trainval"`` reads
``root/VOC2012/ImageSets/Main/trainval.txt``, so with ``root`` a VOCdevkit folder the paper's
07+12 is ``["VOC2007/trainval", "VOC2012/trainval"]`` and 07++12 adds ``"VOC2007/test"``.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from detection.data.cleaning import BoxCleaner, check_annotated_size
from detection.structures import ImageRecord
from engine.errors import UserError
from engine.io import read_text
from engine.paths import child_path, unsafe_name_reason

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip

__all__ = ["VOC_CLASSES", "load_voc", "load_voc_splits", "read_split_file", "split_id_reason"]

_COORDS = ("xmin", "ymin", "xmax", "ymax")
SPLIT_ID_EXPECTED = "expected an image id: the stem of a file in the annotation folder"


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class VOCLayout:
    """Where the parts of a VOC-style folder are, relative to its root (or absolute)."""

    image_dir: str = "JPEGImages"
    ann_dir: str = "Annotations"
    split_dir: str = os.path.join("ImageSets", "Main")


def load_voc(
    root: str,
    split: str,
    class_names: Sequence[str] = VOC_CLASSES,
    *,
    check_images: bool = False,
    layout: VOCLayout = VOCLayout(),
) -> list[ImageRecord]:
    """Read one split of one VOC20xx (or LabelImg-style) folder.

    Args:
        root: a VOC20xx folder (holding Annotations/, JPEGImages/, ImageSets/Main/).
        split: split name, read from ``root/<split_dir>/<split>.txt``.
        class_names: class names in label order (label = index in this list).
        check_images: also require every image file to exist (UserError otherwise).
        layout: the folders of images, annotations and split files.

    Returns:
        One record per listed image, in split-file order; boxes (G, 4) float32 xyxy 0-based.

    Raises:
        UserError: missing/empty split file, missing or malformed XML, unknown class name,
            missing image (with ``check_images``, or when the XML has no ``<size>``).
    """
    split_file = os.path.join(root, layout.split_dir, f"{split}.txt")
    image_ids = read_split_file(split_file)
    class_to_label = {name: i for i, name in enumerate(class_names)}
    cleaner = BoxCleaner(split_file)
    image_dir = os.path.join(root, layout.image_dir)
    ann_dir = os.path.join(root, layout.ann_dir)
    records = []
    for image_id in image_ids:
        xml_path = str(child_path(ann_dir, f"{image_id}.xml", split_file))
        tree = _read_xml(xml_path, split_file)
        image_path = find_image(image_dir, image_id, tree.findtext("filename"))
        if check_images and not os.path.isfile(image_path):
            raise UserError(f"{image_path}: image file not found (listed in {split_file})")
        records.append(_record(tree, xml_path, image_id, image_path, class_to_label, cleaner))
    cleaner.warn()
    return records


def find_image(image_dir: str, image_id: str, filename: str | None) -> str:
    """The image of an annotation: its ``<filename>`` if that file exists, else ``<id>`` with
    the first extension that exists, else ``<id>.jpg`` (reported missing by the loader).

    Only the last part of ``<filename>`` counts (``C:\\photos\\a.jpg`` -> ``a.jpg``), and not
    at all when that is ``..`` or empty: the image is always a file of ``image_dir``.

    Raises:
        UserError: ``image_id`` is not a plain file name (``read_split_file`` refuses those).
    """
    last_part = re.split(r"[\\/]", filename.strip())[-1] if filename else ""
    candidates = [last_part] if unsafe_name_reason(last_part) is None else []
    candidates += [image_id + ext for ext in IMAGE_EXTENSIONS]
    candidates += [image_id + ext.upper() for ext in IMAGE_EXTENSIONS]
    for name in candidates:
        path = str(child_path(image_dir, name, f"image {image_id!r}"))
        if os.path.isfile(path):
            return path
    return str(child_path(image_dir, f"{image_id}.jpg", f"image {image_id!r}"))


def load_voc_splits(
    root: str,
    splits: Sequence[str],
    class_names: Sequence[str] = VOC_CLASSES,
    *,
    check_images: bool = False,
    layout: VOCLayout = VOCLayout(),
) -> list[ImageRecord]:
    """Read and concatenate several splits given as ``"split"`` or ``"VOC20xx/split"``.

    Args:
        root: a VOCdevkit folder or a VOC20xx folder.
        splits: entries relative to ``root``, e.g. ``["VOC2007/trainval", "VOC2012/trainval"]``.
        class_names: class names in label order.
        check_images: also require every image file to exist.
        layout: the folders of images, annotations and split files (under each VOC20xx).

    Returns:
        The records of all entries, in order.

    Raises:
        UserError: as :func:`load_voc`, no splits at all, or an image listed twice.
    """
    if not splits:
        raise UserError(f"{root}: no VOC splits given (e.g. 'trainval' or 'VOC2007/trainval')")
    records: list[ImageRecord] = []
    seen: dict[int | str, str] = {}
    for entry in splits:
        folder, _, split = entry.strip("/").rpartition("/")
        voc_root = os.path.join(root, folder) if folder else root
        split_dir = os.path.join(voc_root, layout.split_dir)
        if not os.path.isdir(split_dir):
            raise UserError(
                f"{split_dir}: no split folder for split '{entry}' (expected a VOC20xx folder, "
                "'VOC2007/trainval'-style splits under a VOCdevkit root, or split files written "
                "by `resdet split-dataset`)"
            )
        records_of_entry = load_voc(
            voc_root, split, class_names, check_images=check_images, layout=layout
        )
        for record in records_of_entry:
            if record.image_id in seen:
                raise UserError(
                    f"image '{record.image_id}' is listed by both split '{seen[record.image_id]}' "
                    f"and '{entry}' under {root}"
                )
            seen[record.image_id] = entry
            records.append(record)
    return records


def read_split_file(path: str) -> list[str]:
    """Image ids of a VOC split file, one per line (blank lines ignored).

    Raises:
        UserError: the file is missing or lists no image, or an id is not a plain file name
            (see :func:`split_id_reason`; the message names the file and the line).
    """
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        known = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt"))[:20]
        hint = f" (found: {', '.join(known)})" if os.path.isdir(folder) and known else ""
        raise UserError(f"{path}: split file not found{hint}")
    ids = []
    for number, line in enumerate(read_text(path, "split file").split("\n"), 1):
        if not line.strip():
            continue
        # class-specific split files have a second column (" 1"/"-1"); the id comes first
        image_id = line.split()[0]
        reason = split_id_reason(image_id)
        if reason is not None:
            raise UserError(f"{path}:{number}: {image_id!r} {reason}; {SPLIT_ID_EXPECTED}")
        ids.append(image_id)
    if not ids:
        raise UserError(f"{path}: split file lists no images")
    return ids


def split_id_reason(image_id: str) -> str | None:
    """Why ``image_id`` cannot be a line of a split file (None when it can).

    An id names ``<ann_dir>/<id>.xml`` and, by default, ``<image_dir>/<id>.jpg``, so it must be
    a plain file name (no ``/``, ``\\``, ``..``, control character); and split files separate
    columns by white space, so it cannot hold any.
    """
    reason = unsafe_name_reason(image_id)
    if reason is None and any(c.isspace() for c in image_id):
        reason = "holds a space (split files separate columns by spaces)"
    return reason


def _read_xml(xml_path: str, split_file: str) -> ET.Element:
    try:
        return ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise UserError(f"{xml_path}: annotation file not found (listed in {split_file})") from None
    except ET.ParseError as exc:
        raise UserError(f"{xml_path}: malformed XML: {exc}") from None


def _record(
    tree: ET.Element,
    xml_path: str,
    image_id: str,
    image_path: str,
    class_to_label: dict[str, int],
    cleaner: BoxCleaner,
) -> ImageRecord:
    """One parsed annotation XML -> ImageRecord (boxes converted to 0-based, cleaned)."""
    width, height = _image_size(tree, xml_path, image_path)
    boxes, labels, ignore = [], [], []
    for k, obj in enumerate(tree.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in class_to_label:
            raise UserError(
                f"{xml_path}: object {k} has unknown class '{name}' "
                f"(known: {', '.join(class_to_label)})"
            )
        box = [_coordinate(obj, c, xml_path, k) for c in _COORDS]
        # 1-based inclusive -> 0-based continuous
        boxes.append([box[0] - 1, box[1] - 1, box[2], box[3]])
        labels.append(class_to_label[name])
        ignore.append(_flag(obj.findtext("difficult")))
    box_array = np.asarray(boxes, np.float32).reshape(-1, 4)
    keep = cleaner.clean(box_array, width, height, xml_path)
    return ImageRecord(
        image_id=image_id,
        path=image_path,
        width=width,
        height=height,
        boxes=box_array[keep],
        labels=np.asarray(labels, np.int64)[keep],
        ignore=np.asarray(ignore, bool)[keep],
    )


def _image_size(root: ET.Element, xml_path: str, image_path: str) -> tuple[int, int]:
    """(width, height) from ``<size>``, else from the image header."""
    try:
        width = int(float(root.findtext("size/width") or 0))
        height = int(float(root.findtext("size/height") or 0))
    except (ValueError, OverflowError):  # "abc", "inf"
        width = height = 0
    if width > 0 and height > 0:
        check_annotated_size(width, height, f"{xml_path}: <size>")
        return width, height
    try:
        with Image.open(image_path) as image:
            return image.size
    except OSError as exc:
        raise UserError(
            f"{xml_path}: no valid <size>, and the image header of {image_path} cannot be read "
            f"({exc.__class__.__name__})"
        ) from None


def _coordinate(obj: ET.Element, name: str, xml_path: str, index: int) -> float:
    text = obj.findtext(f"bndbox/{name}")
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(
            f"{xml_path}: object {index} has no numeric bndbox/{name} (got {text!r})"
        ) from None


def _flag(text: str | None) -> bool:
    """A VOC 0/1 flag; anything but a non-zero number (or empty) reads as 0."""
    try:
        return float(text or 0) != 0
    except ValueError:
        return False
