"""Data-loader throughput: decode + augment + collate at 600x1000, ours vs torchvision v2.

Both pipelines do the same work on the same generated JPEGs: decode, resize the shorter side
to 600 (longer side capped at 1000), random horizontal flip with its boxes, convert to float
and normalise, then pad the batch of 2 to a multiple of 32. Two cases (``--cases``):

* ``500x375``: VOC-sized photos, upscaled to 600x800;
* ``1600x1200``: large photos, shrunk by 2x to 600x800, where a reduced JPEG decode applies.

Ours is resdet's training path (:class:`DetectionDataset` + :func:`collate_detection`:
OpenCV decode, at 1/2, 1/4 or 1/8 scale when the resize shrinks that much, then the resize
and flip in uint8, normalised once into the padded batch); "resdet, full decode" turns the
reduced decode off (``input.reduced_decode: false``). The baseline decodes with PIL and
transforms with ``torchvision.transforms.v2`` (boxes as ``tv_tensors.BoundingBoxes``);
"torchvision + PIL draft" gives it the same lever (``Image.draft``, PIL's reduced JPEG decode).
Workers are persistent and one pass warms them up (a training loader is infinite, so start-up
does not count); the pipelines' passes alternate (ours, theirs, ours, ...) so that load from
other jobs hits all alike, and the median pass is reported as a markdown table.

    python benchmarks/data_loader.py --num-images 128 --workers 0 2 --passes 3
"""

from __future__ import annotations

import argparse
import os
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

from benchmarks._machine import machine_description
from detection.data.loader import DetectionDataset, collate_detection
from detection.data.synthetic import render_scene
from detection.data.transforms import TrainTransform, collate_images, resized_shape
from detection.structures import ImageRecord

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]  # RGB, 0..255 scale
# name -> (height, width, Gaussian blur sigma before encoding): the large scenes are smoothed
# to a camera photo's bytes per pixel (0.19 at quality 95; the real 2000x1333 raccoon-183.jpg
# has 0.17), since their per-pixel noise would otherwise make entropy decoding dominate
CASES = {"500x375": (375, 500, 0.0), "1600x1200": (1200, 1600, 1.2)}


def make_images(
    folder: str, count: int, height: int, width: int, blur: float = 0.0
) -> list[ImageRecord]:
    """Write ``count`` generated (height, width) JPEGs (quality 95) and return their records."""
    records = []
    for index in range(count):
        scene = render_scene(0, index, height, width)
        image = scene.image[..., ::-1]  # BGR for cv2.imwrite
        image = cv2.GaussianBlur(image, (0, 0), blur) if blur else image
        path = os.path.join(folder, f"{index:06d}.jpg")
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        boxes = np.array([o.box for o in scene.objects], np.float32).reshape(-1, 4)
        labels = np.array([o.label for o in scene.objects], np.int64)
        records.append(
            ImageRecord(index, path, width, height, boxes, labels, np.zeros(len(labels), bool))
        )
    return records


class TorchvisionDataset(Dataset):
    """The baseline: PIL decode (``draft``: at a reduced JPEG scale) + transforms.v2."""

    def __init__(self, records: list[ImageRecord], draft: bool = False) -> None:
        self.records, self.draft = records, draft
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
        image = Image.open(record.path)
        if self.draft:  # the smallest 1/2, 1/4, 1/8 scale still at least the resize's size
            height, width = resized_shape(record.height, record.width, 600, 1000)
            image.draft("RGB", (width, height))
        image = image.convert("RGB")
        scale = np.array([image.width / record.width, image.height / record.height] * 2)
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy((record.boxes * scale).astype(np.float32)),
            format="XYXY",
            canvas_size=(image.height, image.width),
        )
        return self.transform(image, boxes)


def _collate_torchvision(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    images = [image for image, _ in samples]
    sizes = [(int(i.shape[1]), int(i.shape[2])) for i in images]
    return collate_images(images, sizes, [(1.0, 1.0)] * len(images)), [b for _, b in samples]


def _loaders(
    records: list[ImageRecord], workers: int, batch_size: int, large: bool
) -> dict[str, DataLoader]:
    """The pipelines of a case, by name (the reduced-decode variants only for large photos)."""
    kwargs: dict[str, Any] = {"num_workers": workers, "persistent_workers": workers > 0}
    items = [(i, i) for i in range(len(records))]  # (index, augmentation seed)

    def ours(reduced: bool) -> DataLoader:
        transform = TrainTransform([600], 1000, 0.5, 0.0, "RGB", MEAN, STD, reduced)
        dataset = DetectionDataset(records, transform)
        return DataLoader(
            dataset, batch_size, sampler=items, collate_fn=collate_detection, **kwargs
        )

    def theirs(draft: bool) -> DataLoader:
        dataset = TorchvisionDataset(records, draft)
        return DataLoader(dataset, batch_size, collate_fn=_collate_torchvision, **kwargs)

    loaders = {"resdet": ours(True), "torchvision (PIL + transforms.v2)": theirs(False)}
    if large:
        loaders["resdet, full decode"] = ours(False)
        loaders["torchvision + PIL draft"] = theirs(True)
    return loaders


def time_passes(loaders: dict[str, DataLoader], images: int, passes: int) -> dict[str, float]:
    """Median images/s of each loader over ``passes`` full passes, after one warm-up pass;
    the loaders' passes alternate."""
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for k in range(passes + 1):
        for name, loader in loaders.items():
            start = time.perf_counter()
            for _batch in loader:
                pass
            if k:
                rates[name].append(images / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def run_benchmark(
    case: str, num_images: int, workers: int, batch_size: int, passes: int
) -> list[dict[str, Any]]:
    """Time every pipeline of ``case`` on the same generated files; one dict per pipeline."""
    height, width, blur = CASES[case]
    with tempfile.TemporaryDirectory() as folder:
        records = make_images(folder, num_images, height, width, blur)
        loaders = _loaders(records, workers, batch_size, large=case == "1600x1200")
        rates = time_passes(loaders, num_images, passes)
        del loaders  # stop the workers before the next case
    return [
        {"case": case, "pipeline": name, "workers": workers, "images_per_s": rate}
        for name, rate in rates.items()
    ]


def markdown_table(results: list[dict[str, Any]], batch_size: int) -> str:
    base = {
        (r["case"], r["workers"]): r["images_per_s"]
        for r in results
        if r["pipeline"].startswith("torchvision (")
    }
    lines = [
        "| photos -> network input | pipeline | workers | batch | images/s | vs torchvision |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        height, width, _ = CASES[r["case"]]
        new_h, new_w = resized_shape(height, width, 600, 1000)
        lines.append(
            f"| {width}x{height} -> {new_w}x{new_h} | {r['pipeline']} | {r['workers']} "
            f"| {batch_size} | {r['images_per_s']:.1f} "
            f"| {r['images_per_s'] / base[(r['case'], r['workers'])]:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=96)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="e.g. 0 2")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; keeps workers=0 comparable
    np.random.seed(0)
    torch.manual_seed(0)
    results = [
        row
        for case in args.cases
        for workers in args.workers
        for row in run_benchmark(case, args.num_images, workers, args.batch_size, args.passes)
    ]
    print(
        f"{args.num_images} generated JPEGs per case, {machine_description()}, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(markdown_table(results, args.batch_size))


if __name__ == "__main__":
    main()
