"""Result files: VOC devkit ``comp4_det_<split>_<class>.txt`` and COCO results JSON.

Writers take per-image :class:`Detections` already in original-image pixels (0-based
continuous xyxy). VOC files hold 1-based inclusive pixels, ``(x1 + 1, y1 + 1, x2, y2)``, with
scores as ``%.3f`` and coordinates as ``%.1f`` like py-faster-rcnn and Detectron2; COCO files
hold ``[x, y, w, h]`` rounded to 2 decimals and scores to 5. Readers check every line/entry and
raise :class:`UserError` naming the file and the line or entry index.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from detection.evaluation.voc import ClassDetections, to_voc_boxes
from detection.structures import Detections
from engine.errors import UserError
from engine.io import atomic_write_text, is_json_integer, is_json_number, read_json
from engine.paths import child_path

VOC_RESULT_PREFIX = "comp4_det_"
VOC_SERVER_DIR = "results/VOC2012/Main"  # layout inside the tarball the VOC2012 server takes
COCO_RESULT_FIELDS = ("image_id", "category_id", "bbox", "score")


def voc_result_filename(split: str, class_name: str) -> str:
    """``comp4_det_<split>_<class>.txt``: the devkit name of one class's result file."""
    return f"{VOC_RESULT_PREFIX}{split}_{class_name}.txt"


def _numpy(detections: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections (any device) -> boxes (N, 4) float64, scores (N,) float64, labels (N,)."""
    boxes = detections.boxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
    scores = detections.scores.detach().cpu().numpy().astype(np.float64).reshape(-1)
    labels = detections.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return boxes, scores, labels


def voc_result_lines(
    image_ids: Sequence[int | str], detections: Sequence[Detections], class_names: Sequence[str]
) -> dict[str, list[str]]:
    """Formats detections as devkit lines ``<image_id> <score> <xmin> <ymin> <xmax> <ymax>``.

    Args:
        image_ids: per image, the devkit image id (file stem).
        detections: per image, boxes (N, 4) xyxy in original 0-based pixels, scores (N,),
            labels (N,) 0-based into ``class_names``.
        class_names: the class list.

    Returns:
        class name -> its lines (no newline), in image order then detection order.
    """
    lines: dict[str, list[str]] = {name: [] for name in class_names}
    for image_id, dets in zip(image_ids, detections, strict=True):
        boxes, scores, labels = _numpy(dets)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"image {image_id}: labels outside 0..{len(class_names) - 1}")
        for (x1, y1, x2, y2), score, label in zip(to_voc_boxes(boxes), scores, labels):
            line = f"{image_id} {score:.3f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}"
            lines[class_names[label]].append(line)
    return lines


def write_voc_results(
    out_dir: str | Path,
    split: str,
    image_ids: Sequence[int | str],
    detections: Sequence[Detections],
    class_names: Sequence[str],
) -> list[Path]:
    """Writes one ``comp4_det_<split>_<class>.txt`` per class (empty files included).

    Args:
        out_dir: folder to write into (created).
        split: image set name in the file names ("test", "val", ...).
        image_ids: per image, the devkit image id.
        detections: per image, in original 0-based pixels (see :func:`voc_result_lines`).
        class_names: the class list the labels index.

    Returns:
        The written paths, in class order.
    """
    return write_voc_lines(out_dir, split, voc_result_lines(image_ids, detections, class_names))


def write_voc_lines(out_dir: str | Path, split: str, lines: dict[str, list[str]]) -> list[Path]:
    """Writes already formatted devkit lines, one file per class, atomically.

    Raises:
        UserError: a class or split name that would not name a file in ``out_dir`` (the config
            check refuses such class names first), or the folder cannot be written.
    """
    out = Path(out_dir)
    paths = [child_path(out, voc_result_filename(split, name), "class name") for name in lines]
    for path, class_lines in zip(paths, lines.values(), strict=True):
        atomic_write_text(path, "".join(line + "\n" for line in class_lines))
    return paths


def parse_voc_lines(
    lines: Sequence[str], source: str, known_image_ids: Collection[str] | None = None
) -> ClassDetections:
    """Parses devkit result lines; blank lines are skipped.

    Args:
        lines: the file's lines.
        source: file name used in error messages.
        known_image_ids: the data set's image ids; None skips the check.

    Returns:
        The class's detections (boxes stay in the file's 1-based frame).

    Raises:
        UserError: a malformed line, a non-finite number or an unknown image id, naming
            ``source`` and the 1-based line number.
    """
    # Count fields without keeping a list per line: 500k live lists make the garbage
    # collector rescan them again and again (3x slower reading VOC07-test-sized files).
    counts = np.array([len(line.split()) for line in lines], np.int64)
    wrong = np.flatnonzero((counts != 0) & (counts != 6))
    if wrong.size:
        n = int(wrong[0]) + 1
        raise UserError(
            f"{source}:{n}: expected 6 fields '<image_id> <score> <xmin> <ymin> <xmax> "
            f"<ymax>', got {counts[n - 1]}: {lines[n - 1].strip()!r}"
        )
    line_numbers = np.flatnonzero(counts) + 1  # (D,) 1-based line of each detection
    table = np.array(" ".join(lines).split(), dtype=object).reshape(-1, 6)
    try:
        values = table[:, 1:].astype(np.float64)  # (D, 5) score, x1, y1, x2, y2
    except ValueError:
        _raise_first_bad_number(lines, source)
        raise
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        n = int(line_numbers[bad[0]])
        raise UserError(f"{source}:{n}: non-finite number in {lines[n - 1].strip()!r}")
    image_ids = table[:, 0].tolist()
    if known_image_ids is not None:
        for n, image_id in zip(line_numbers.tolist(), image_ids):
            if image_id not in known_image_ids:
                raise UserError(f"{source}:{n}: unknown image id {image_id!r}")
    return ClassDetections(image_ids, values[:, 0], values[:, 1:])


def _raise_first_bad_number(lines: Sequence[str], source: str) -> None:
    for n, line in enumerate(lines, 1):
        for text in line.split()[1:]:
            try:
                float(text)
            except ValueError:
                raise UserError(f"{source}:{n}: {text!r} is not a number") from None


def find_voc_result_files(
    results_dir: str | Path, split: str, class_names: Sequence[str]
) -> dict[str, Path]:
    """Finds ``comp4_det_<split>_<class>.txt`` files in a folder.

    Args:
        results_dir: the folder.
        split: the image set in the file names.
        class_names: the valid classes.

    Returns:
        class name -> file, in ``class_names`` order, for the classes that have a file.

    Raises:
        UserError: the folder is missing, holds no such file, or a file names an unknown class.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: results folder not found")
    prefix = f"{VOC_RESULT_PREFIX}{split}_"
    found = {p.name[len(prefix) : -len(".txt")]: p for p in folder.glob(f"{prefix}*.txt")}
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise UserError(
            f"{found[unknown[0]]}: unknown class {unknown[0]!r}; valid: {', '.join(class_names)} "
            "(a data set with other classes: give its names with --classes, as listed under "
            "data.class_names in the run's config.yaml)"
        )
    if not found:
        raise UserError(f"{folder}: no {prefix}<class>.txt result files")
    return {name: found[name] for name in class_names if name in found}


def read_voc_results(
    results_dir: str | Path,
    split: str,
    class_names: Sequence[str],
    known_image_ids: Collection[str] | None = None,
) -> dict[str, ClassDetections]:
    """Reads every ``comp4_det_<split>_<class>.txt`` in a folder (see :func:`parse_voc_lines`).

    Returns:
        class name -> detections, for the classes that have a file, in ``class_names`` order.
    """
    files = find_voc_result_files(results_dir, split, class_names)
    return {
        name: parse_voc_lines(path.read_text().splitlines(), str(path), known_image_ids)
        for name, path in files.items()
    }


def package_voc_results(
    results_dir: str | Path,
    out_file: str | Path,
    class_names: Sequence[str],
    known_image_ids: Collection[str] | None = None,
) -> Path:
    """Packs ``comp4_det_test_<class>.txt`` files as the VOC2012 evaluation server expects.

    Every file is parsed first (a malformed one is a :class:`UserError`).

    Args:
        results_dir: folder holding the test-split result files.
        out_file: the ``.tar.gz`` to write.
        class_names: the valid classes.
        known_image_ids: the test split's image ids; None skips that check.

    Returns:
        ``out_file``; members are ``results/VOC2012/Main/comp4_det_test_<class>.txt``.
    """
    files = find_voc_result_files(results_dir, "test", class_names)
    for path in files.values():
        parse_voc_lines(path.read_text().splitlines(), str(path), known_image_ids)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for path in files.values():
            tar.add(path, arcname=f"{VOC_SERVER_DIR}/{path.name}")
    return out


def coco_results(
    image_ids: Sequence[int],
    detections: Sequence[Detections],
    label_to_category_id: Sequence[int],
) -> list[dict[str, object]]:
    """COCO results entries, ordered by image id, then score (descending).

    Args:
        image_ids: per image, the COCO image id.
        detections: per image, boxes (N, 4) xyxy in original 0-based pixels, scores (N,),
            labels (N,) contiguous 0-based.
        label_to_category_id: contiguous label -> original COCO category id.

    Returns:
        Entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; bbox rounded
        to 2 decimals, score to 5. Images without detections add nothing.
    """
    entries: list[dict[str, object]] = []
    for image_id, dets in sorted(zip(image_ids, detections, strict=True), key=lambda p: p[0]):
        boxes, scores, labels = _numpy(dets)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(label_to_category_id)):
            raise ValueError(f"image {image_id}: labels outside 0..{len(label_to_category_id) - 1}")
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # (N, 4)
        for k in np.argsort(-scores, kind="stable"):
            entries.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label_to_category_id[labels[k]]),
                    "bbox": [round(float(v), 2) for v in xywh[k]],
                    "score": round(float(scores[k]), 5),
                }
            )
    return entries


def write_coco_results(path: str | Path, entries: list[dict[str, object]]) -> Path:
    """Writes COCO results entries as compact JSON, atomically (parent folder created)."""
    return atomic_write_text(path, json.dumps(entries))


def _entry_error(entry: object, category_ids: Collection[int], strict: bool) -> str | None:
    """Why one results entry is invalid (``"field 'x': ..."``), or None when it is fine."""
    if not isinstance(entry, dict):
        return f"expected an object with {', '.join(COCO_RESULT_FIELDS)}, got {entry!r}"
    missing = [f for f in COCO_RESULT_FIELDS if f not in entry]
    if missing:
        return f"field {missing[0]!r} is missing"
    if not is_json_integer(entry["image_id"]):
        return f"field 'image_id': expected an integer, got {entry['image_id']!r}"
    category = entry["category_id"]
    if not is_json_integer(category) or category not in category_ids:
        return f"field 'category_id': unknown category {category!r}"
    bbox = entry["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_json_number, bbox))):
        return f"field 'bbox': expected [x, y, w, h] numbers, got {bbox!r}"
    if not all(math.isfinite(v) for v in bbox):
        return f"field 'bbox': non-finite number in {bbox!r}"
    if strict and (bbox[2] < 0 or bbox[3] < 0):
        return f"field 'bbox': width and height must be >= 0, got {bbox!r}"
    score = entry["score"]
    if not is_json_number(score) or not math.isfinite(score):
        return f"field 'score': expected a finite number, got {score!r}"
    if strict and not 0.0 <= score <= 1.0:
        return f"field 'score': expected a value in [0, 1], got {score!r}"
    return None


def validate_coco_results(
    entries: object,
    source: str,
    image_ids: Collection[int],
    category_ids: Collection[int],
    strict: bool = True,
) -> list[dict[str, object]]:
    """Checks COCO results entries against an annotation file's images and categories.

    Args:
        entries: the parsed JSON.
        source: file name used in error messages.
        image_ids: the known image ids.
        category_ids: the valid category ids.
        strict: also require w, h >= 0 and scores in [0, 1] (what the server accepts).

    Returns:
        ``entries``, unchanged.

    Raises:
        UserError: naming ``source``, the entry index and the field.
    """
    if not isinstance(entries, list):
        kind = type(entries).__name__
        raise UserError(f"{source}: expected a JSON list of detections, got a {kind}")
    image_ids = image_ids if isinstance(image_ids, (set, frozenset)) else set(image_ids)
    category_ids = category_ids if isinstance(category_ids, (set, frozenset)) else set(category_ids)
    for index, entry in enumerate(entries):
        error = _entry_error(entry, category_ids, strict)
        if error is None and entry["image_id"] not in image_ids:
            error = f"field 'image_id': unknown image id {entry['image_id']!r}"
        if error is not None:
            raise UserError(f"{source}: entry {index}: {error}")
    return entries


def load_coco_results(
    path: str | Path,
    image_ids: Collection[int],
    category_ids: Collection[int],
    strict: bool = False,
) -> list[dict[str, object]]:
    """Reads and checks a COCO results JSON (see :func:`validate_coco_results`)."""
    entries = read_json(path, "results file", allow_nan=True)  # validation names the entry
    return validate_coco_results(entries, str(path), image_ids, category_ids, strict)
