"""`resdet demo` (what `make demo` runs): the whole toolkit end to end on generated data.

1. `resdet make-dataset --format voc --out data/shapes --crops`: a VOC tree of shapes and
   64x64 classification crops of the same objects;
2. `resdet pretrain --config configs/pretrain/shapes_demo.yaml`: a narrow ResNet-18 learns the
   crops; its backbone.pth initialises
3. `resdet train --config configs/detection/quickstart.yaml --nproc auto`: a ResNet-18-C4
   Faster R-CNN, evaluated at the end on the test split (VOC07 mAP@.5 and COCO mAP@[.5,.95]),
   with coco_results.json and the VOC devkit files written. ``--nproc auto`` trains as one
   single-thread rank per idle core (two on a quiet 2-core machine, 1.6x the speed of one
   process for this small model; one beside a busy process);
4. `resdet infer` draws the detections on a few test images.
Prints a summary with the numbers and the paths. Runs from any folder: the data and outputs
go under it, and the configs are the checkout's or, without one, the shipped copies.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

PRETRAIN_CONFIG = "configs/pretrain/shapes_demo.yaml"
DETECTION_CONFIG = "configs/detection/quickstart.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/shapes", help="where the data set is generated")
    parser.add_argument("--output", default="output/demo", help="folder of the two runs")
    parser.add_argument("--num-images", type=int, default=400, help="generated images")
    parser.add_argument(
        "--nproc", default="auto", metavar="N|auto",
        help="processes of the detector's training (resdet train --nproc); default auto",
    )  # fmt: skip
    parser.add_argument(
        "--set-pretrain", dest="pretrain_overrides", metavar="KEY=VALUE", nargs="+",
        action="extend", default=[], help="override a key of the pretraining config",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
        help="override a key of the detection config",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    data, out = Path(args.data), Path(args.output)
    samples = out / "test_images"
    start = time.perf_counter()
    stages = [
        ("make-dataset", ["--format", "voc", "--out", str(data), "--num-images",
                          str(args.num_images), "--seed", "0", "--crops"]),
        ("pretrain", ["--config", PRETRAIN_CONFIG, "--restart",
                      "--set", f"output_dir={out}/pretrain",
                      f"data.train.root={data}/crops", f"data.test.root={data}/crops",
                      *args.pretrain_overrides]),
        ("train", ["--config", DETECTION_CONFIG, "--restart", "--nproc", args.nproc,
                   "--set", f"output_dir={out}/detector",
                   f"model.backbone.weights={out}/pretrain/backbone.pth",
                   f"data.train.root={data}/VOC2007", f"data.test.root={data}/VOC2007",
                   *args.overrides]),
        ("infer", ["--config", f"{out}/detector/config.yaml", "--weights",
                   f"{out}/detector/model_final.pth", "--input", str(samples),
                   "--output", f"{out}/drawn", "--score-thresh", "0.5"]),
    ]  # fmt: skip
    for name, argv in stages:
        print(f"\n=== resdet {name} {' '.join(argv)}", flush=True)
        if name == "infer":
            _pick_test_images(data, samples)
        # each stage in its own process, as a user would run it (and so no stage inherits
        # another's threads, CUDA context or process group)
        code = subprocess.call([sys.executable, "-m", "tools.cli", name, *argv])
        if code != 0:
            print(f"resdet demo: stage `{name}` failed with exit code {code}")
            return code
    print(summary(out, time.perf_counter() - start))
    return 0


def _pick_test_images(data: Path, folder: Path, count: int = 6) -> None:
    """Link the first test images into one folder for `resdet infer`."""
    from detection.data.voc import read_split_file  # its ids are checked file names

    folder.mkdir(parents=True, exist_ok=True)
    ids = read_split_file(str(data / "VOC2007/ImageSets/Main/test.txt"))[:count]
    for image_id in ids:
        link = folder / f"{image_id}.jpg"
        if not link.exists():
            link.symlink_to((data / "VOC2007/JPEGImages" / f"{image_id}.jpg").resolve())


def summary(out: Path, seconds: float) -> str:
    """What the demo produced: the headline numbers and where everything is."""
    from engine.runfolder import EVAL_RESULTS, MODEL_FINAL, RunFolder

    pretrain = RunFolder(out / "pretrain").eval_results()
    head = RunFolder(out / "detector").eval_results().get("headline", {})
    top1 = pretrain.get("headline", {}).get("top1_error")
    lines = [
        "",
        "=== resdet demo: done",
        f"total time            {seconds / 60:.1f} min",
        f"backbone top-1 error  {top1:.3f} (crops, centre view)" if top1 is not None else "",
        f"detector mAP@.5       {head.get('mAP@.5', float('nan')):.3f} (VOC07 11-point, test)",
        f"detector mAP@[.5,.95] {head.get('mAP@[.5,.95]', float('nan')):.3f} (COCO, test)",
        f"backbone              {out}/pretrain/backbone.pth",
        f"detector              {out}/detector/{MODEL_FINAL}",
        f"metrics               {out}/detector/{EVAL_RESULTS}",
        f"COCO results          {out}/detector/coco_results.json",
        f"VOC devkit results    {out}/detector/voc_results/",
        f"drawn detections      {out}/drawn/",
    ]
    return "\n".join(line for line in lines if line)
