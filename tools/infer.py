"""`resdet infer`: run a detector on images and draw the detections.

    resdet infer --config C --weights W --input IMG_OR_DIR --output DIR [--score-thresh 0.5]

For every input image writes DIR/<name> (boxes, class names and scores drawn) and
DIR/<stem>.json ({"image", "width", "height", "detections": [{"box" [x1, y1, x2, y2] in
original pixels, "score", "label", "class"}]}). Detections below --score-thresh are neither
drawn nor listed. DIR must be a writable folder (created if missing) other than the one the
images are read from: a drawn image never replaces its input; every write is checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detection.config import load_config
from engine.errors import UserError
from tools.arguments import (
    add_config_arguments,
    add_runtime_argument,
    add_trust_weights_argument,
    fraction,
    trusted,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/quickstart.yaml")
    parser.add_argument("--weights", required=True, help="detector checkpoint (model_final.pth)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for drawn images and JSON")
    parser.add_argument(
        "--score-thresh",
        type=fraction,
        default=0.5,
        help="draw and list detections scoring at least this, 0 to 1 (default 0.5; the model "
        "keeps everything above test.score_thresh, 0.05 by default)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: config)")
    add_runtime_argument(parser)
    add_trust_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from detection.predictor import Predictor
    from detection.visualize import draw_detections
    from engine.images import decode_image
    from engine.io import atomic_write_image, atomic_write_json, output_folder
    from engine.metrics import Progress

    cfg = trusted(load_config(args.config, args.overrides), args)
    paths = list_images(Path(args.input))
    out = output_folder(args.output, "--output")  # before the model is loaded
    check_not_an_input(out, paths)
    device = args.device or ("cpu" if args.runtime != "torch" else cfg.device)
    predictor = Predictor(cfg, args.weights, device=device, runtime=args.runtime)
    names = predictor.class_names
    progress = Progress(len(paths), "infer", every_seconds=10.0)
    for path in paths:
        image = decode_image(str(path))  # RGB uint8; UserError naming the file if unreadable
        detections = predictor(image)
        drawn = draw_detections(image, detections, names, args.score_thresh)
        atomic_write_image(out / path.name, drawn)  # UserError on a full disk
        keep = detections.scores >= args.score_thresh
        entries = [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 5),
             "label": int(label), "class": names[int(label)]}
            for box, score, label in zip(
                detections.boxes[keep], detections.scores[keep], detections.labels[keep]
            )
        ]  # fmt: skip
        record = {"image": str(path), "width": image.shape[1], "height": image.shape[0]}
        atomic_write_json(out / f"{path.stem}.json", {**record, "detections": entries})
        progress.update()
    progress.close()
    print(f"{len(paths)} images with detections drawn in {out}")
    return 0


def check_not_an_input(out: Path, images: list[Path]) -> None:
    """Refuse an output folder that holds one of the input images (its drawing would
    replace it).

    Raises:
        UserError: ``out`` is the folder of an input image.
    """
    folder = out.resolve()
    if any(p.resolve().parent == folder for p in images):
        raise UserError(
            f"--output {out} is the folder of the input images: their drawings would replace "
            "them; choose another folder"
        )


def list_images(source: Path) -> list[Path]:
    """The image itself, or the images of a folder (sorted); UserError when there are none."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise UserError(f"--input {source}: no such file or folder")
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"--input {source}: no {'/'.join(IMAGE_SUFFIXES)} images in the folder")
    return paths
