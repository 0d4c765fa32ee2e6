"""The generated shapes data set: a small detection problem anyone can make offline.

Five classes (:data:`SHAPE_CLASSES`) of filled shapes on textured, noisy backgrounds, with
varied colour, size (COCO's small / medium / large buckets all populated at ``size=256``),
aspect ratio, rotation, truncation at the border, partial occlusion and overlap. Some images
have no object; about one image in seven has a *cluster* of tiny shapes of one class,
annotated as one box and marked ``difficult`` (VOC) / ``iscrowd`` (COCO).

Image ``i`` depends only on ``(seed, i)``, so a data set is a deterministic function of the seed
(byte-identical files on one machine) and its first images do not change with ``num_images``.
Boxes are integers in 0-based continuous pixels: the tight extent of the shape's drawn pixels
(before later shapes occlude it), so the VOC files (1-based, ``xmin = x1 + 1``) and the COCO
files (``[x1, y1, x2 - x1, y2 - y1]``) describe the same boxes exactly.

Layouts:

* VOC: ``out/VOC2007/{JPEGImages,Annotations}``, ``ImageSets/Main/{train,val,trainval,test}.txt``
* COCO: ``out/images/*.jpg``, ``out/annotations/instances_{train,val,test}.json``
* crops (optional): ``out/crops/{train,val}/<class>/*.jpg``, ImageFolder layout for pretraining
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

SHAPE_CLASSES = ["circle", "square", "triangle", "star", "ring"]
SPLITS = ("train", "val", "test")
_SPLIT_SHARE = {"val": 0.2, "test": 0.2}  # the rest is train
_SIZE_BUCKETS = ((0.075, 0.16), (0.2, 0.46), (0.54, 0.78))  # box side / short image side
_BUCKET_P = (0.2, 0.45, 0.35)  # small, medium, large
_MAX_IOU = 0.35  # overlap allowed between two boxes
_MAX_COVERED = 0.45  # share of an earlier box a later box may cover


@dataclass(frozen=True)
class ShapeObject:
    """One annotated object of a scene."""

    label: int  # index into SHAPE_CLASSES
    box: tuple[int, int, int, int]  # xyxy, 0-based continuous pixels, integer valued
    hard: bool  # a cluster of tiny shapes: VOC difficult / COCO iscrowd


@dataclass
class Scene:
    """A rendered image and its objects."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[ShapeObject] = field(default_factory=list)


@dataclass
class DatasetSummary:
    """What a writer produced."""

    root: str  # the VOC20xx folder, or the COCO folder
    images: dict[str, int]  # split -> number of images
    objects: int = 0  # annotated objects, hard ones included
    hard: int = 0  # difficult / iscrowd objects
    empty_images: int = 0  # images without objects
    area_buckets: list[int] = field(default_factory=lambda: [0, 0, 0])  # small, medium, large
    crops: int = 0  # classification crops written


# ------------------------------------------------------------------------------- rendering
def image_shape(seed: int, index: int, size: int) -> tuple[int, int]:
    """(height, width) of image ``index``: mostly landscape 4:3, some portrait, some square."""
    rng = np.random.default_rng([seed, index, 1])
    short = round(0.75 * size)
    return [(short, size), (size, short), (size, size)][rng.choice(3, p=[0.6, 0.2, 0.2])]


def render_scene(seed: int, index: int, height: int, width: int) -> Scene:
    """Draw image ``index`` of the data set with seed ``seed``.

    Returns:
        The scene: (height, width, 3) uint8 RGB image and its objects.
    """
    rng = np.random.default_rng([seed, index])
    image = _background(rng, height, width)
    scene = Scene(image)
    if rng.random() < 0.08:  # an empty image
        scene.image = _add_noise(rng, image)
        return scene
    kinds = ["cluster"] * int(rng.random() < 0.15)
    kinds += ["single"] * int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.22, 0.18]))
    for kind in rng.permutation(kinds):
        for _ in range(20):  # placement attempts
            label = int(rng.integers(len(SHAPE_CLASSES)))
            mask = _cluster_mask(rng, label, height, width) if kind == "cluster" else None
            if mask is None:
                mask = _single_mask(rng, label, height, width)
            box = _mask_box(mask)
            if box is not None and _fits(box, [o.box for o in scene.objects]):
                image[mask] = _object_colour(rng)
                scene.objects.append(ShapeObject(label, box, kind == "cluster"))
                break
    scene.image = _add_noise(rng, image)
    return scene


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-saturation blotches (a coarse random grid, upsampled) plus a faint wave texture."""
    grid_h, grid_w = rng.integers(3, 8, size=2)
    grey = rng.uniform(70, 180, (grid_h, grid_w, 1))
    grid = (grey + rng.uniform(-25, 25, (grid_h, grid_w, 3))).astype(np.float32)
    background = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = 12 * np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period))
    return np.clip(background + wave[..., None], 0, 255).astype(np.uint8)


def _add_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal(image.shape, dtype=np.float32) * 8
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _object_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright colour (the backgrounds are greyish)."""
    hsv = np.array(
        [[[rng.integers(180), rng.integers(150, 256), rng.integers(150, 256)]]], np.uint8
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def _unit_polygons(rng: np.random.Generator, label: int) -> list[np.ndarray]:
    """The shape's outline (and a hole for the ring) as (K, 2) points around the origin."""
    name = SHAPE_CLASSES[label]
    if name in ("circle", "ring"):
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], axis=1)
        return [outer, outer * rng.uniform(0.45, 0.6)] if name == "ring" else [outer]
    if name == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)]
    if name == "triangle":
        t = math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        return [np.stack([np.cos(t), np.sin(t)], axis=1)]
    t = math.pi / 2 + np.arange(10) * math.pi / 5  # star: 5 points, inner radius 0.42
    radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return [np.stack([np.cos(t) * radius, np.sin(t) * radius], axis=1)]


def _draw(mask: np.ndarray, polygons: list[np.ndarray], box: tuple[float, ...]) -> None:
    """Fill the rotated outline into ``mask`` so that its extent is ``box`` (x0, y0, w, h)."""
    lo, hi = polygons[0].min(axis=0), polygons[0].max(axis=0)
    x0, y0, w, h = box
    for k, polygon in enumerate(polygons):
        # OpenCV fills pixels round(left)..round(right): span w - 1 covers w pixel columns
        points = (polygon - lo) / (hi - lo) * (w - 1, h - 1) + (x0, y0)
        fixed = np.round(points * 16).astype(np.int32)  # 4 fractional bits (shift=4)
        cv2.fillPoly(mask, [fixed], 1 if k == 0 else 0, lineType=cv2.LINE_8, shift=4)


def _rotated(rng: np.random.Generator, polygons: list[np.ndarray]) -> list[np.ndarray]:
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [p @ rotation.T for p in polygons]


def _single_mask(rng: np.random.Generator, label: int, height: int, width: int) -> np.ndarray:
    """One shape of a random size bucket, aspect ratio, rotation and position."""
    low, high = _SIZE_BUCKETS[rng.choice(3, p=_BUCKET_P)]
    side = min(height, width) * rng.uniform(low, high)
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(4 / 3)))  # width / height
    w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
    # up to 30% of the box may lie outside the image (truncated objects)
    x0, y0 = rng.uniform(-0.3 * w, width - 0.7 * w), rng.uniform(-0.3 * h, height - 0.7 * h)
    mask = np.zeros((height, width), np.uint8)
    _draw(mask, _rotated(rng, _unit_polygons(rng, label)), (x0, y0, w, h))
    return mask.astype(bool)


def _cluster_mask(rng: np.random.Generator, label: int, height: int, width: int) -> np.ndarray:
    """3-5 tiny shapes of one class packed into a small region (a crowd / difficult box)."""
    short = min(height, width)
    region = short * rng.uniform(0.14, 0.22)
    rx, ry = rng.uniform(0, width - region), rng.uniform(0, height - region)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        side = short * rng.uniform(0.035, 0.06)
        x0, y0 = rx + rng.uniform(0, region - side), ry + rng.uniform(0, region - side)
        _draw(mask, _rotated(rng, _unit_polygons(rng, label)), (x0, y0, side, side))
    return mask.astype(bool)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight xyxy box of the mask's pixels (pixel i spans [i, i+1)), None if empty."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if len(cols) == 0 or cols[-1] - cols[0] < 2 or rows[-1] - rows[0] < 2:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fits(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    """Overlap small enough that every earlier object stays recognisable."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in others:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        inter = max(iw, 0) * max(ih, 0)
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter / (area + other_area - inter) > _MAX_IOU or inter / other_area > _MAX_COVERED:
            return False
    return True


# --------------------------------------------------------------------------------- writers
def split_indices(num_images: int, seed: int) -> dict[str, list[int]]:
    """Image indices per split (train 60%, val 20%, test 20%, each non-empty), sorted."""
    if num_images < len(SPLITS):
        raise ValueError(f"need at least {len(SPLITS)} images for train/val/test, got {num_images}")
    order = np.random.default_rng([seed, 2**31]).permutation(num_images)
    n_val, n_test = (max(1, round(num_images * _SPLIT_SHARE[s])) for s in ("val", "test"))
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test]}
    parts["train"] = order[n_val + n_test :]
    return {split: sorted(int(i) for i in parts[split]) for split in SPLITS}


def iter_scenes(num_images: int, seed: int, size: int) -> Iterator[tuple[int, str, Scene]]:
    """(index, split, scene) for every image of the data set, in index order."""
    split_of = {i: s for s, indices in split_indices(num_images, seed).items() for i in indices}
    for index in range(num_images):
        yield index, split_of[index], render_scene(seed, index, *image_shape(seed, index, size))


def write_voc_dataset(
    out: str, num_images: int, seed: int, size: int = 256, crops: bool = False
) -> DatasetSummary:
    """Write a VOC devkit tree ``out/VOC2007`` (see the module docstring).

    Returns:
        What was written (counts per split, objects, size buckets).
    """
    root = os.path.join(out, "VOC2007")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    summary = DatasetSummary(root, {s: 0 for s in SPLITS})
    for index, split, scene in iter_scenes(num_images, seed, size):
        image_id = f"{index + 1:06d}"
        _write_jpeg(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), scene.image)
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(voc_xml(image_id, scene))
        ids[split].append(image_id)
        _count(summary, split, scene)
        if crops:
            summary.crops += write_crops(out, split, image_id, scene)
    ids["trainval"] = sorted(ids["train"] + ids["val"])
    for split, names in ids.items():
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(f"{name}\n" for name in names))
    return summary


def voc_xml(image_id: str, scene: Scene) -> str:
    """The VOC annotation of a scene (1-based inclusive pixel boxes)."""
    height, width = scene.image.shape[:2]
    objects = []
    for obj in scene.objects:
        x1, y1, x2, y2 = obj.box
        truncated = int(x1 == 0 or y1 == 0 or x2 == width or y2 == height)
        objects.append(
            f"\t<object>\n\t\t<name>{SHAPE_CLASSES[obj.label]}</name>\n"
            f"\t\t<pose>Unspecified</pose>\n\t\t<truncated>{truncated}</truncated>\n"
            f"\t\t<difficult>{int(obj.hard)}</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        )
    return (
        f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>resdet generated shapes</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
        f"{''.join(objects)}</annotation>\n"
    )


def write_coco_dataset(
    out: str, num_images: int, seed: int, size: int = 256, crops: bool = False
) -> DatasetSummary:
    """Write a COCO tree ``out/images`` + ``out/annotations/instances_<split>.json``.

    Image ids are ``index + 1``; category ids are 1..5 in :data:`SHAPE_CLASSES` order;
    ``area`` is the box area (``w * h``).

    Returns:
        What was written (counts per split, objects, size buckets).
    """
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    files: dict[str, dict[str, list[dict[str, object]]]] = {
        s: {"images": [], "annotations": []} for s in SPLITS
    }
    summary = DatasetSummary(out, {s: 0 for s in SPLITS})
    ann_id = 0
    for index, split, scene in iter_scenes(num_images, seed, size):
        file_name = f"{index + 1:06d}.jpg"
        _write_jpeg(os.path.join(out, "images", file_name), scene.image)
        height, width = scene.image.shape[:2]
        files[split]["images"].append(
            {"id": index + 1, "file_name": file_name, "width": width, "height": height}
        )
        for obj in scene.objects:
            ann_id += 1
            files[split]["annotations"].append(_coco_annotation(ann_id, index + 1, obj))
        _count(summary, split, scene)
        if crops:
            summary.crops += write_crops(out, split, file_name[:-4], scene)
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"}
        for i, name in enumerate(SHAPE_CLASSES)
    ]
    for split, content in files.items():
        data = {"info": {"description": "resdet generated shapes"}, "licenses": [], **content}
        data["categories"] = categories
        with open(os.path.join(out, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(data, f)
    return summary


def _coco_annotation(ann_id: int, image_id: int, obj: ShapeObject) -> dict[str, object]:
    x1, y1, x2, y2 = obj.box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.label + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": int(obj.hard),
        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
    }


def write_crops(out: str, split: str, image_id: str, scene: Scene, crop_size: int = 64) -> int:
    """Write the scene's (non-hard) objects as ``crop_size`` squares for classification.

    Train images feed ``out/crops/train``, val and test images ``out/crops/val``; every class
    folder exists in both (ImageFolder derives class indices from the folder names).

    Returns:
        The number of crops written.
    """
    crop_split = "train" if split == "train" else "val"
    for name in SHAPE_CLASSES:
        os.makedirs(os.path.join(out, "crops", crop_split, name), exist_ok=True)
    height, width = scene.image.shape[:2]
    written = 0
    for k, obj in enumerate(o for o in scene.objects if not o.hard):
        x1, y1, x2, y2 = obj.box
        margin = round(0.1 * max(x2 - x1, y2 - y1))  # a little context around the shape
        patch = scene.image[
            max(y1 - margin, 0) : min(y2 + margin, height),
            max(x1 - margin, 0) : min(x2 + margin, width),
        ]
        patch = cv2.resize(patch, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
        name = SHAPE_CLASSES[obj.label]
        _write_jpeg(os.path.join(out, "crops", crop_split, name, f"{image_id}_{k}.jpg"), patch)
        written += 1
    return written


def _write_jpeg(path: str, image_rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, image_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"{path}: could not write the image")


def _count(summary: DatasetSummary, split: str, scene: Scene) -> None:
    summary.images[split] += 1
    summary.objects += len(scene.objects)
    summary.hard += sum(o.hard for o in scene.objects)
    summary.empty_images += not scene.objects
    for obj in scene.objects:
        area = (obj.box[2] - obj.box[0]) * (obj.box[3] - obj.box[1])
        summary.area_buckets[(area >= 32**2) + (area > 96**2)] += 1
