"""`resdet split-dataset`: split files for a folder of photos with VOC / LabelImg XML files.

    resdet split-dataset data/raccoon --ann-dir annotations --fractions train=0.8,test=0.2
    resdet split-dataset ROOT --fractions trainval=0.9,test=0.1 --seed 1 --out splits/

Writes ``<name>.txt`` (one annotation stem per line, sorted) for every fraction into
``ROOT/ImageSets/Main`` (or ``--out``); the same seed always gives the same split. Every id
written is one the reader reads back: an annotation whose name holds a space or whose XML does
not parse is refused (one line naming it) before anything is written, and a fraction name must
be a file name (``../x`` is refused). A detection
config then reads the folder as it is: ``data.train: {format: voc, root: ROOT, image_dir:
images, ann_dir: annotations, splits: [train]}`` (and ``split_dir: DIR`` for ``--out DIR``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="the data set folder (images and annotations under it)")
    parser.add_argument(
        "--ann-dir", default="Annotations", help="XML folder under ROOT (default: Annotations)"
    )
    parser.add_argument(
        "--fractions", required=True, help="name=fraction,... summing to 1, e.g. train=0.8,test=0.2"
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    parser.add_argument("--out", help="where the split files go (default: ROOT/ImageSets/Main)")
    parser.add_argument("--force", action="store_true", help="replace split files that differ")


def run(args: argparse.Namespace) -> int:
    from detection.data.splits import (
        annotation_ids,
        parse_fractions,
        split_ids,
        write_split_files,
    )

    fractions = parse_fractions(args.fractions)
    ids = annotation_ids(os.path.join(args.root, args.ann_dir))
    parts = split_ids(ids, fractions, args.seed)
    out = Path(args.out) if args.out else Path(args.root) / "ImageSets" / "Main"
    for path, ids in zip(write_split_files(out, parts, args.force), parts.values(), strict=True):
        print(f"{path}: {len(ids)} images")
    return 0
