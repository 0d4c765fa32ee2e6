"""`resdet browse`: a data set's ground-truth boxes drawn on its images (Detectron2's
visualize_data, MMDetection's browse_dataset).

    resdet browse --config configs/detection/raccoon_r18_c4.yaml --split train --out browse/
    resdet browse --config C --split test --out DIR --max-images 20

Reads the config's ``data.<split>`` exactly as training does (records in original pixels,
after box cleaning) and writes one JPEG per image into ``--out``, named by its image id; an id
that would name a file outside ``--out`` is refused (the readers refuse those already).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detection.config import load_config
from tools.arguments import add_config_arguments, non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/raccoon_r18_c4.yaml")
    parser.add_argument("--split", choices=["train", "test"], default="train", help="data.<split>")
    parser.add_argument("--out", required=True, help="folder for the drawn images")
    parser.add_argument(
        "--max-images", type=non_negative_int, default=50, help="draw at most this many"
    )


def run(args: argparse.Namespace) -> int:
    from detection.data.build import load_dataset_records, resolve_class_names
    from detection.visualize import draw_ground_truth
    from engine.images import decode_image
    from engine.io import atomic_write_image
    from engine.paths import child_path

    cfg = load_config(args.config, args.overrides)
    names = resolve_class_names(cfg)
    records = load_dataset_records(getattr(cfg.data, args.split), names, f"data.{args.split}")
    out = Path(args.out)
    shown = records[: max(args.max_images, 0)]
    paths = [child_path(out, f"{r.image_id}.jpg", f"data.{args.split} image id") for r in shown]
    for record, path in zip(shown, paths, strict=True):
        image = decode_image(record.path)
        drawn = draw_ground_truth(image, record.boxes, record.labels, record.ignore, names)
        atomic_write_image(path, drawn)  # one line on a full disk or a file in the way
    print(f"{len(shown)} of {len(records)} images of data.{args.split} drawn in {out}")
    return 0
