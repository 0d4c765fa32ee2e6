"""COCO reader: an instances JSON (2014 or 2017 names) -> ImageRecords + the label mapping.

Conventions:

* Labels are contiguous and 0-based: categories sorted by id (1, 2, ..., 90 for COCO) become
  0, 1, ..., 79; :class:`CocoMeta` keeps the way back (``label_to_category_id``) for result
  files. With ``class_names`` given, label = index of the category's name in that list.
* ``bbox = [x, y, w, h]`` (continuous pixels) loads as xyxy ``(x, y, x + w, y + h)``.
* ``iscrowd = 1`` annotations are kept with ``ignore=True``: not a training target, and
  evaluation handles them as COCO does.
* Every image of the JSON is returned, annotated or not (evaluation needs them all); the
  builders drop images without a non-ignored box from training unless ``include_empty``.
* Boxes reaching outside the image are clipped and boxes with no area dropped, with one
  counted warning per file.
* ``image_id`` is the JSON's integer id; the image is ``<image root>/<file_name>``, where
  ``file_name`` may hold sub-folders (``train/0001.jpg``) but never ``..`` or an absolute
  path: no file outside the image root is ever opened.

Bad input raises :class:`UserError` naming the file: missing or malformed JSON, a missing
``images``/``categories`` list, an entry that is not an object, an image id that is not an
integer or appears twice, a ``file_name`` that is not a string or leaves the image root
(``../x.jpg``, ``/etc/x``), a width or height that is not a positive integer, an annotation of
an unknown image or category, a bbox that is not four finite numbers, a category name missing
from ``class_names``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.data.cleaning import BoxCleaner, check_annotated_size
from detection.structures import ImageRecord
from engine.errors import UserError
from engine.io import is_json_integer, read_json
from engine.paths import child_path

__all__ = [
    "CocoMeta",
    "coco_image_root",
    "coco_meta",
    "coco_records",
    "load_coco",
    "read_coco_json",
    "read_coco_meta",
    "resolve_ann_file",
]

# instances_<name>.json -> the image folder of that split (COCO's 2014 and 2017 layouts)
_SPLIT_PATTERN = re.compile(r"(?:instances|image_info)_(?P<split>[a-z-]+?)(?P<year>20\d\d)\.json$")
_SPLIT_FOLDER = {"minival": "val", "valminusminival": "val", "test-dev": "test"}


@dataclass(frozen=True)
class CocoMeta:
    """The mapping between contiguous labels and a COCO file's categories."""

    class_names: list[str]  # label -> category name
    label_to_category_id: list[int]  # label -> COCO category id

    @property
    def category_id_to_label(self) -> dict[int, int]:
        return {cat: label for label, cat in enumerate(self.label_to_category_id)}


def load_coco(
    ann_file: str,
    image_root: str,
    class_names: Sequence[str] | None = None,
    *,
    check_images: bool = False,
) -> tuple[list[ImageRecord], CocoMeta]:
    """Read a COCO instances JSON.

    Args:
        ann_file: the instances JSON (e.g. ``annotations/instances_val2017.json``).
        image_root: folder holding the images' ``file_name`` paths.
        class_names: class names in label order; None = the file's categories sorted by id.
        check_images: also require every image file to exist.

    Returns:
        (records in the JSON's image order, meta); boxes (G, 4) float32 xyxy.

    Raises:
        UserError: see the module docstring.
    """
    return coco_records(read_coco_json(ann_file), ann_file, image_root, class_names,
                        check_images=check_images)  # fmt: skip


def coco_records(
    data: dict[str, Any],
    ann_file: str,
    image_root: str,
    class_names: Sequence[str] | None = None,
    *,
    check_images: bool = False,
) -> tuple[list[ImageRecord], CocoMeta]:
    """:func:`load_coco` of a JSON already parsed by :func:`read_coco_json` (``ann_file``
    names it in messages), for a caller that also scores against it."""
    meta = coco_meta(data, ann_file, class_names)
    per_image = _annotations_by_image(data, ann_file, meta)
    cleaner = BoxCleaner(ann_file)
    cat_to_label = meta.category_id_to_label
    records = []
    for k, image in enumerate(data["images"]):
        path = image_path(image_root, image["file_name"], f"{ann_file}: images[{k}] file_name")
        if check_images and not os.path.isfile(path):
            raise UserError(f"{path}: image file not found (listed in {ann_file})")
        anns = per_image.get(image["id"], [])
        records.append(_record(image, path, anns, cat_to_label, ann_file, cleaner))
    cleaner.warn()
    return records, meta


def image_path(image_root: str, file_name: object, where: str) -> str:
    """``image_root/file_name``, sub-folders allowed, refused when it would leave the root.

    Raises:
        UserError: naming ``where``: ``file_name`` is not a string, is absolute, holds ``..``,
            a backslash or a control character.
    """
    if not isinstance(file_name, str):
        raise UserError(f"{where}: {file_name!r} is not a string; expected a file name")
    return str(child_path(image_root, file_name, where, nested=True))


def read_coco_meta(ann_file: str, class_names: Sequence[str] | None = None) -> CocoMeta:
    """The label mapping of an instances JSON, without building records."""
    return coco_meta(read_coco_json(ann_file), ann_file, class_names)


def coco_meta(
    data: dict[str, Any], ann_file: str, class_names: Sequence[str] | None = None
) -> CocoMeta:
    """:func:`read_coco_meta` of a JSON already parsed by :func:`read_coco_json`."""
    return _meta_from_categories(data["categories"], class_names, ann_file)


def resolve_ann_file(root: str, ann_file: str) -> str:
    """Find ``ann_file``: as given, else relative to ``root``, else to ``root``'s parent.

    So ``root: coco/val2017`` or ``root: coco`` with ``ann_file:
    annotations/instances_val2017.json`` both work. Raises UserError if none exists.
    """
    if not ann_file:
        raise UserError(f"{root}: COCO data needs ann_file (an instances JSON)")
    candidates = [ann_file]
    if not os.path.isabs(ann_file):
        candidates += [os.path.join(root, ann_file), os.path.join(os.path.dirname(root), ann_file)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"{ann_file}: annotation file not found (also looked under {root})")


def coco_image_root(root: str, ann_file: str) -> str:
    """The image folder: ``root/<split><year>`` when the JSON's name says so and it exists.

    ``instances_val2017.json`` -> ``val2017``; ``instances_minival2014.json`` and
    ``instances_valminusminival2014.json`` -> ``val2014``; ``image_info_test-dev2017.json`` ->
    ``test2017``. Otherwise ``root`` itself holds the images.
    """
    match = _SPLIT_PATTERN.search(os.path.basename(ann_file))
    if match:
        split = _SPLIT_FOLDER.get(match["split"], match["split"])
        folder = os.path.join(root, f"{split}{match['year']}")
        if os.path.isdir(folder):
            return folder
    return root


def read_coco_json(ann_file: str | os.PathLike[str]) -> dict[str, Any]:
    """A COCO instances (or test-set image info) JSON, its top-level layout checked.

    The one reader of COCO annotation files: the data loader, the evaluators, ``resdet
    score`` and ``resdet submit`` all go through it.

    Returns:
        The parsed object, with ``annotations`` = [] when the file has none (test sets).

    Raises:
        UserError: missing file, bad encoding, malformed JSON, or no ``images`` /
            ``categories`` list.
    """
    data = read_json(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise UserError(f"{ann_file}: expected a JSON object with 'images' and 'categories'")
    if data.get("annotations") is None:
        data["annotations"] = []  # image_info_*.json (test sets) have none
    for key in ("images", "categories", "annotations"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{ann_file}: missing the '{key}' list")
        for k, entry in enumerate(data[key]):
            if not isinstance(entry, dict):
                raise UserError(f"{ann_file}: {key}[{k}] is {entry!r}; expected an object")
    _check_image_ids(data["images"], ann_file)
    for k, category in enumerate(data["categories"]):
        cat_id, name = category.get("id"), category.get("name")
        if not (is_json_integer(cat_id) and isinstance(name, str)):
            raise UserError(
                f"{ann_file}: categories[{k}] needs an integer 'id' and a 'name' string, got "
                f"id {cat_id!r}, name {name!r}"
            )
    return data


def _check_image_ids(images: list[dict[str, Any]], ann_file: str | os.PathLike[str]) -> None:
    """Every image id an integer, and unique (a repeated id would share its boxes)."""
    seen: set[int] = set()
    for k, image in enumerate(images):
        image_id = image.get("id")
        if not is_json_integer(image_id):
            raise UserError(f"{ann_file}: images[{k}] has id {image_id!r}; expected an integer")
        if image_id in seen:
            raise UserError(f"{ann_file}: images[{k}] repeats image id {image_id}")
        seen.add(image_id)


def _meta_from_categories(
    categories: list[dict[str, Any]], class_names: Sequence[str] | None, ann_file: str
) -> CocoMeta:
    """Contiguous labels for the categories (sorted by id, or in ``class_names`` order)."""
    try:
        name_to_id = {
            str(c["name"]): int(c["id"]) for c in sorted(categories, key=lambda c: c["id"])
        }
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{ann_file}: every category needs an integer 'id' and a 'name'") from None
    if class_names is None:
        return CocoMeta(list(name_to_id), list(name_to_id.values()))
    for name in name_to_id:
        if name not in class_names:
            raise UserError(
                f"{ann_file}: unknown class '{name}' (class names: {', '.join(class_names)})"
            )
    missing = [name for name in class_names if name not in name_to_id]
    if missing:
        raise UserError(f"{ann_file}: no category named {', '.join(map(repr, missing))}")
    return CocoMeta(list(class_names), [name_to_id[name] for name in class_names])


def _annotations_by_image(
    data: dict[str, Any], ann_file: str, meta: CocoMeta
) -> dict[int, list[dict[str, Any]]]:
    """Group annotations by image id, checking their image and category exist."""
    for k, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and "id" in image and "file_name" in image):
            raise UserError(f"{ann_file}: images[{k}] needs an 'id' and a 'file_name'")
    image_ids = {image["id"] for image in data["images"]}
    cat_to_label = meta.category_id_to_label
    per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        if not is_json_integer(ann.get("image_id")) or ann["image_id"] not in image_ids:
            raise UserError(
                f"{ann_file}: annotation {ann.get('id')} refers to unknown image "
                f"{ann.get('image_id')!r}"
            )
        if not is_json_integer(ann.get("category_id")) or ann["category_id"] not in cat_to_label:
            raise UserError(
                f"{ann_file}: annotation {ann.get('id')} has unknown category_id "
                f"{ann.get('category_id')!r}"
            )
        per_image[ann["image_id"]].append(ann)
    return per_image


def _record(
    image: dict[str, Any],
    path: str,
    anns: list[dict[str, Any]],
    cat_to_label: dict[int, int],
    ann_file: str,
    cleaner: BoxCleaner,
) -> ImageRecord:
    """One JSON image entry and its annotations -> ImageRecord (xywh -> xyxy, cleaned)."""
    width, height = image.get("width"), image.get("height")
    if not all(is_json_integer(v) and v > 0 for v in (width, height)):
        raise UserError(
            f"{ann_file}: image {image.get('id')} needs positive integer width and height, "
            f"got {width!r} x {height!r}"
        )
    assert isinstance(width, int) and isinstance(height, int)
    check_annotated_size(width, height, f"{ann_file}: image {image.get('id')}")
    boxes = np.zeros((len(anns), 4), np.float32)
    for k, ann in enumerate(anns):
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            if not all(np.isfinite((x, y, w, h))):
                raise ValueError("not finite")
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"{ann_file}: annotation {ann.get('id')} bbox is not [x, y, w, h] numbers"
            ) from None
        boxes[k] = (x, y, x + w, y + h)
    labels = np.array([cat_to_label[ann["category_id"]] for ann in anns], np.int64)
    ignore = np.array([bool(ann.get("iscrowd", 0)) for ann in anns], bool)
    keep = cleaner.clean(boxes, width, height, f"{ann_file} image {image['id']}")
    return ImageRecord(image["id"], path, width, height, boxes[keep], labels[keep], ignore[keep])
