"""`resdet make-dataset`: write the generated shapes data set as a VOC or COCO tree.

Example::

    resdet make-dataset --format voc --out data/shapes --num-images 300 --seed 0 --crops

writes ``data/shapes/VOC2007`` (train / val / trainval / test splits) and, with ``--crops``,
``data/shapes/crops/{train,val}/<class>/*.jpg`` for pretraining a backbone. The same seed gives
byte-identical files.
"""

from __future__ import annotations

import argparse

from detection.data.synthetic import SHAPE_CLASSES, write_coco_dataset, write_voc_dataset
from engine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["voc", "coco"], required=True, help="tree layout")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--num-images", type=int, default=300, help="images in all splits")
    parser.add_argument("--seed", type=int, default=0, help="the data set is a function of it")
    parser.add_argument("--size", type=int, default=256, help="longer image side in pixels")
    parser.add_argument(
        "--crops", action="store_true", help="also write 64x64 classification crops (ImageFolder)"
    )


def run(args: argparse.Namespace) -> int:
    if args.num_images < 3:
        raise UserError(f"--num-images must be at least 3 (train/val/test), got {args.num_images}")
    if not 64 <= args.size <= 4096:
        raise UserError(f"--size must be between 64 and 4096 pixels, got {args.size}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    write = write_voc_dataset if args.format == "voc" else write_coco_dataset
    summary = write(args.out, args.num_images, args.seed, args.size, args.crops)
    splits = ", ".join(f"{name} {count}" for name, count in summary.images.items())
    small, medium, large = summary.area_buckets
    print(f"wrote {sum(summary.images.values())} images ({splits}) to {summary.root}")
    print(
        f"{summary.objects} objects of {len(SHAPE_CLASSES)} classes ({', '.join(SHAPE_CLASSES)}): "
        f"{small} small, {medium} medium, {large} large, {summary.hard} difficult/crowd; "
        f"{summary.empty_images} images without objects"
    )
    if args.crops:
        print(f"{summary.crops} classification crops in {args.out}/crops/{{train,val}}")
    return 0
