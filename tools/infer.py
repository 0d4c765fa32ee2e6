"""`resdet infer`: run a detector on images and draw the detections.

    resdet infer --config C --weights W --input IMG_OR_DIR --output DIR [--score-thresh 0.5]

For every input image writes DIR/<name> (boxes, class names and scores drawn) and
DIR/<stem>.json ({"image", "width", "height", "detections": [{"box" [x1, y1, x2, y2] in
original pixels, "score", "label", "class"}]}). Detections below --score-thresh are neither
drawn nor listed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detection.config import load_config
from engine.errors import UserError
from tools.arguments import add_config_arguments

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/quickstart.yaml")
    parser.add_argument("--weights", required=True, help="detector checkpoint (model_final.pth)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for drawn images and JSON")
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=0.5,
        help="draw and list detections scoring at least this (default 0.5; the model keeps "
        "everything above test.score_thresh, 0.05 by default)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: config)")


def run(args: argparse.Namespace) -> int:
    import cv2

    from detection.predictor import Predictor
    from detection.visualize import draw_detections
    from engine.images import decode_image
    from engine.io import atomic_write_bytes, atomic_write_json
    from engine.metrics import Progress

    cfg = load_config(args.config, args.overrides)
    paths = list_images(Path(args.input))
    predictor = Predictor(cfg, args.weights, device=args.device or cfg.device)
    names = predictor.class_names
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(paths), "infer", every_seconds=10.0)
    for path in paths:
        image = decode_image(str(path))  # RGB uint8; UserError naming the file if unreadable
        detections = predictor(image)
        drawn = draw_detections(image, detections, names, args.score_thresh)
        ok, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if not ok:
            raise UserError(f"{path}: OpenCV cannot encode a drawn image as {path.suffix!r}")
        atomic_write_bytes(out / path.name, encoded.tobytes())
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
