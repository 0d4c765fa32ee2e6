"""Split files for a folder of annotations: what ``resdet split-dataset`` writes.

A folder of photos with one PASCAL VOC XML per image (LabelImg's output) has no
``ImageSets/Main/<split>.txt``; :func:`split_ids` deals its annotation stems into named
fractions, deterministically for a seed, and :func:`write_split_files` writes one id per line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.io import atomic_write_text, read_text


def parse_fractions(text: str) -> dict[str, float]:
    """``"train=0.8,test=0.2"`` -> {"train": 0.8, "test": 0.2}; they must sum to 1.

    Raises:
        UserError: a malformed item, a repeated or empty name, a non-positive fraction, or a
            sum other than 1.
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
    """Stems of the ``*.xml`` files in ``ann_dir``, sorted.

    Raises:
        UserError: the folder does not exist or holds no XML file.
    """
    if not os.path.isdir(ann_dir):
        raise UserError(f"{ann_dir}: annotation folder not found (see --ann-dir)")
    ids = sorted(name[:-4] for name in os.listdir(ann_dir) if name.lower().endswith(".xml"))
    if not ids:
        raise UserError(f"{ann_dir}: no .xml annotation files")
    return ids


def write_split_files(out: Path, parts: Mapping[str, list[str]], force: bool) -> list[Path]:
    """``out/<name>.txt`` for each part, atomically; an existing file with other ids is kept
    unless ``force`` (a changed split would silently change every later experiment).

    Raises:
        UserError: a split file exists with different content and ``force`` is off.
    """
    texts = {out / f"{name}.txt": "".join(f"{i}\n" for i in ids) for name, ids in parts.items()}
    for path, text in texts.items():
        if path.is_file() and read_text(path, "split file") != text and not force:
            raise UserError(f"{path}: exists with other ids; --force replaces it")
    return [atomic_write_text(path, text) for path, text in texts.items()]
