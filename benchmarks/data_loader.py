"""Data-loader throughput: decode + augment + collate at 600x1000, ours vs torchvision v2.

Both pipelines do the same work on the same files: decode a 500x375 JPEG, resize the shorter
side to 600 (longer side capped at 1000: 600x800 here), random horizontal flip with its boxes,
convert to float and normalise, then pad the batch to a multiple of 32. Ours is resdet's
training path (OpenCV decode + albumentations, :class:`DetectionDataset` +
:func:`collate_detection`); the baseline decodes with PIL and transforms with
``torchvision.transforms.v2`` (boxes as ``tv_tensors.BoundingBoxes``). Workers are persistent
and one pass warms them up (a training loader is infinite, so start-up does not count); the
median of the timed passes is reported as a markdown table.

    python benchmarks/data_loader.py --num-images 96 --workers 0 2 --passes 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from detection.data.loader import DetectionDataset, collate_detection
from detection.data.synthetic import render_scene
from detection.data.transforms import TrainTransform, collate_images
from detection.structures import ImageRecord

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]  # RGB, 0..255 scale


def make_images(folder: str, count: int, seed: int = 0) -> list[ImageRecord]:
    """Write ``count`` generated 500x375 JPEGs and return their records."""
    records = []
    for index in range(count):
        scene = render_scene(seed, index, 375, 500)
        path = os.path.join(folder, f"{index:06d}.jpg")
        cv2.imwrite(path, scene.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        boxes = np.array([o.box for o in scene.objects], np.float32).reshape(-1, 4)
        labels = np.array([o.label for o in scene.objects], np.int64)
        records.append(
            ImageRecord(index, path, 500, 375, boxes, labels, np.zeros(len(labels), bool))
        )
    return records


class TorchvisionDataset(Dataset):
    """The baseline: PIL decode + transforms.v2 on the same records."""

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = records
        self.transform = v2.Compose(
            [
                v2.ToImage(),
                v2.RandomHorizontalFlip(0.5),
                v2.Resize(600, max_size=1000, antialias=True),
                v2.ToDtype(torch.float32, scale=False),
                v2.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        image = Image.open(record.path).convert("RGB")
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(record.boxes), format="XYXY", canvas_size=(record.height, record.width)
        )
        return self.transform(image, boxes)


def _collate_torchvision(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    images = [image for image, _ in samples]
    sizes = [(int(i.shape[1]), int(i.shape[2])) for i in images]
    return collate_images(images, sizes, [(1.0, 1.0)] * len(images)), [b for _, b in samples]


def time_passes(loader: DataLoader, images: int, passes: int) -> float:
    """Median images/s over ``passes`` full passes, after one warm-up pass."""
    rates = []
    for k in range(passes + 1):
        start = time.perf_counter()
        for _batch in loader:
            pass
        if k:
            rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def run_benchmark(
    num_images: int, workers: int, batch_size: int, passes: int
) -> list[dict[str, Any]]:
    """Time both pipelines on the same generated files; one result dict per pipeline."""
    with tempfile.TemporaryDirectory() as folder:
        records = make_images(folder, num_images)
        ours = DetectionDataset(records, TrainTransform([600], 1000, 0.5, 0.0, "RGB", MEAN, STD))
        theirs = TorchvisionDataset(records)
        results = []
        for name in ("resdet (OpenCV + albumentations)", "torchvision (PIL + transforms.v2)"):
            if name.startswith("resdet"):
                items = [(i, i) for i in range(num_images)]  # (index, augmentation seed)
                loader = DataLoader(
                    ours, batch_size, sampler=items, collate_fn=collate_detection,
                    num_workers=workers, persistent_workers=workers > 0,
                )  # fmt: skip
            else:
                loader = DataLoader(
                    theirs, batch_size, collate_fn=_collate_torchvision,
                    num_workers=workers, persistent_workers=workers > 0,
                )  # fmt: skip
            rate = time_passes(loader, num_images, passes)
            results.append({"pipeline": name, "workers": workers, "images_per_s": rate})
            del loader  # stop this pipeline's workers before timing the next
        return results


def markdown_table(results: list[dict[str, Any]], batch_size: int) -> str:
    base = {r["workers"]: r["images_per_s"] for r in results if r["pipeline"].startswith("torch")}
    lines = [
        "| pipeline | workers | batch | images/s | vs torchvision |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['pipeline']} | {r['workers']} | {batch_size} | {r['images_per_s']:.1f} "
            f"| {r['images_per_s'] / base[r['workers']]:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="e.g. 0 2")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; keeps workers=0 comparable
    np.random.seed(0)
    torch.manual_seed(0)
    results = [
        row
        for workers in args.workers
        for row in run_benchmark(args.num_images, workers, args.batch_size, args.passes)
    ]
    print(
        f"{args.num_images} generated 500x375 JPEGs -> 600x800, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, OpenCV {cv2.__version__}"
    )
    print(markdown_table(results, args.batch_size))


if __name__ == "__main__":
    main()
