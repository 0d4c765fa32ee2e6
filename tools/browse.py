"""`resdet browse`: a data set's ground-truth boxes drawn on its images (Detectron2's
visualize_data, MMDetection's browse_dataset).

    resdet browse --config configs/detection/raccoon_r18_c4.yaml --split train --out browse/
    resdet browse --config C --split test --out DIR --max-images 20

Reads the config's ``data.<split>`` exactly as training does (records in original pixels,
after box cleaning) and writes one JPEG per image into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detection.config import load_config
from tools.arguments import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/raccoon_r18_c4.yaml")
    parser.add_argument("--split", choices=["train", "test"], default="train", help="data.<split>")
    parser.add_argument("--out", required=True, help="folder for the drawn images")
    parser.add_argument("--max-images", type=int, default=50, help="draw at most this many")


def run(args: argparse.Namespace) -> int:
    import cv2

    from detection.data.build import load_dataset_records, resolve_class_names
    from detection.visualize import draw_ground_truth
    from engine.images import decode_image

    cfg = load_config(args.config, args.overrides)
    names = resolve_class_names(cfg)
    records = load_dataset_records(getattr(cfg.data, args.split), names, f"data.{args.split}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for record in records[: max(args.max_images, 0)]:
        image = decode_image(record.path)
        drawn = draw_ground_truth(image, record.boxes, record.labels, record.ignore, names)
        cv2.imwrite(str(out / f"{record.image_id}.jpg"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    shown = min(len(records), max(args.max_images, 0))
    print(f"{shown} of {len(records)} images of data.{args.split} drawn in {out}")
    return 0
