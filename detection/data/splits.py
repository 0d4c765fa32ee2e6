"""Split files for a folder of annotations: what ``resdet split-dataset`` writes.

A folder of photos with one PASCAL VOC XML per image (LabelImg's output) has no
``ImageSets/Main/<split>.txt``; :func:`split_ids` deals its annotation stems into named
fractions, deterministically for a seed, and :func:`write_split_files` writes one id per line.

What is written is what the VOC reader reads back: an annotation whose stem cannot be an id of a
split file (a space, a control character, an ``.XML`` ending) or whose XML does not parse is
refused, naming the file, before anything is written; a fraction name is a file name in the
output folder (``../x`` is refused).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from detection.data.voc import SPLIT_ID_EXPECTED, split_id_reason
from engine.errors import UserError
from engine.io import atomic_write_text, read_text
from engine.paths import child_path, unsafe_name_reason


def parse_fractions(text: str) -> dict[str, float]:
    """``"train=0.8,test=0.2"`` -> {"train": 0.8, "test": 0.2}; they must sum to 1.

    Raises:
        UserError: a malformed item, a repeated or empty name, a name that is not a file name
            (it names ``<out>/<name>.txt``), a non-positive fraction, or a sum other than 1.
    """
    fractions: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        try:
            fraction = float(value)
        except ValueError:
            fraction = float("nan")
        if not sep or not name.strip() or name.strip() in fractions or not 0 < fraction <= 1:
            raise UserError(
                f"--fractions: {item!r} is not name=fraction with a new name and 0 < fraction <= 1"
            )
        reason = unsafe_name_reason(name.strip())
        if reason is not None:
            raise UserError(
                f"--fractions: {name.strip()!r} {reason}; expected a split name (it names the "
                "split file <name>.txt in the output folder)"
            )
        fractions[name.strip()] = fraction
    if not fractions or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise UserError(f"--fractions {text!r}: the fractions must sum to 1")
    return fractions


def split_ids(
    ids: Sequence[str], fractions: Mapping[str, float], seed: int
) -> dict[str, list[str]]:
    """Shuffle ``ids`` (sorted first, so the input order does not matter) with ``seed`` and cut
    them into consecutive parts of the given fractions (sizes rounded at the cumulative
    boundaries, so they add up to ``len(ids)``); each part sorted.

    Raises:
        UserError: a fraction that gets no image.
    """
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [sorted(ids)[i] for i in order]
    bounds = np.rint(np.cumsum([0.0, *fractions.values()]) * len(ids)).astype(int)
    parts = {}
    for (name, _), start, end in zip(fractions.items(), bounds[:-1], bounds[1:]):
        if end <= start:
            raise UserError(f"--fractions: '{name}' gets no image of the {len(ids)}")
        parts[name] = sorted(shuffled[start:end])
    return parts


def annotation_ids(ann_dir: str) -> list[str]:
    """Stems of the ``*.xml`` files in ``ann_dir``, sorted: ids the VOC reader reads back.

    Raises:
        UserError: the folder does not exist or holds no XML file; or, naming the first such
            file and counting the others, an annotation whose stem cannot be a split-file id,
            one named ``*.XML`` (the reader opens ``<id>.xml``) or XML that does not parse.
    """
    if not os.path.isdir(ann_dir):
        raise UserError(f"{ann_dir}: annotation folder not found (see --ann-dir)")
    names = sorted(name for name in os.listdir(ann_dir) if name.lower().endswith(".xml"))
    names = [name for name in names if os.path.isfile(os.path.join(ann_dir, name))]
    if not names:
        raise UserError(f"{ann_dir}: no .xml annotation files")
    problems = [p for p in (_annotation_problem(ann_dir, name) for name in names) if p]
    if problems:
        more = f" ({len(problems) - 1} more like it)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
    return [name[:-4] for name in names]


def _annotation_problem(ann_dir: str, name: str) -> str | None:
    """Why the VOC reader could not read ``ann_dir/name`` from a split file (None if it can)."""
    path, image_id = os.path.join(ann_dir, name), name[:-4]
    reason = split_id_reason(image_id)
    if reason is not None:
        return f"{path}: its id {image_id!r} {reason}; rename the file (and its image)"
    if not name.endswith(".xml"):
        return f"{path}: the reader opens '<id>.xml'; rename it to '{image_id}.xml'"
    try:
        ET.parse(path)
    except ET.ParseError as exc:
        return f"{path}: malformed XML ({exc}); fix or remove it"
    except OSError as exc:
        return f"{path}: cannot read it ({exc.strerror or exc})"
    return None


def write_split_files(out: Path, parts: Mapping[str, list[str]], force: bool) -> list[Path]:
    """``out/<name>.txt`` for each part, atomically, in the order of ``parts``; an existing
    file with other ids is kept unless ``force`` (a changed split would silently change every
    later experiment).

    Raises:
        UserError: a name that is not a file name, an id the reader would refuse (see
            :func:`~detection.data.voc.split_id_reason`), or a split file that exists with
            different content while ``force`` is off; nothing is written then.
    """
    texts = {}
    for name, ids in parts.items():
        path = child_path(out, f"{name}.txt", "--fractions")
        for image_id in ids:
            reason = split_id_reason(image_id)
            if reason is not None:
                raise UserError(f"{path}: {image_id!r} {reason}; {SPLIT_ID_EXPECTED}")
        texts[path] = "".join(f"{i}\n" for i in ids)
    for path, text in texts.items():
        if path.is_file() and read_text(path, "split file") != text and not force:
            raise UserError(f"{path}: exists with other ids; --force replaces it")
    return [atomic_write_text(path, text) for path, text in texts.items()]
