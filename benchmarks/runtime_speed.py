"""Our PyTorch Predictor against onnxruntime and OpenVINO on the same detector: CPU latency.

    python benchmarks/runtime_speed.py --config configs/detection/faster_rcnn_r50_fpn_coco_1x.yaml \
        --set model.backbone.weights= --images PHOTO.jpg [--weights W] [--repeats 11] \
        [--threads 2] [--runtimes torch:fp32 torch:bf16 onnxruntime:fp32 openvino:fp32 ...]

Every runtime runs the same weights (``--weights``, or one random initialisation, seed 0)
through `detection.predictor.Predictor` (``runtime=``, ``precision=``): PyTorch eager (BN
folded; bf16 as autocast), or the detector exported as one graph (`resdet export`) and run by
onnxruntime (fp32) or OpenVINO (fp32, or its bf16 inference hint). bf16 rows are left out
where the CPU has no native bf16. Each run is end to end: an RGB uint8 image in, detections
in original pixels out (all resize with OpenCV first). The first image of ``--images`` is
timed, one run of each runtime in turn (alternating, so machine noise hits all alike) after
a warm-up; the others are only compared: each runtime's detections against PyTorch fp32's
(count and labels in order; largest box and score difference).

Prints one markdown table: milliseconds as median and interquartile range, and the speed-up
over PyTorch fp32 and PyTorch bf16 (medians).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._machine import machine_description
from benchmarks.ensemble_speed import alternating_times
from detection.config import load_config
from detection.predictor import Predictor
from detection.structures import Detections
from engine.amp import cpu_has_native_bf16
from engine.images import decode_image

RUNTIMES = ("torch:fp32", "torch:bf16", "onnxruntime:fp32", "openvino:fp32", "openvino:bf16")


def difference(a: Detections, b: Detections) -> str:
    """How far two detection lists are apart, in order (after a count check)."""
    if len(a) != len(b) or not torch.equal(a.labels, b.labels):
        return f"DIFFERENT: {len(a)} vs {len(b)} detections"
    if not len(a):
        return "0 detections each"
    box = float((a.boxes - b.boxes).abs().max())
    score = float((a.scores - b.scores).abs().max())
    return f"{len(a)} detections each, max |box| {box:.2g} px, max |score| {score:.2g}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def build(cfg_path: str, overrides: list[str], weights: str | None, runtime: str) -> Predictor:
    name, precision = runtime.split(":")
    torch.manual_seed(0)  # without --weights: the same random detector for every runtime
    cfg = load_config(cfg_path, overrides)
    return Predictor(cfg, weights, runtime=name, precision=precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[])
    parser.add_argument("--weights", default=None, help="default: random weights (seed 0)")
    parser.add_argument("--images", nargs="+", required=True, help="the first one is timed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=11, help="timed runs of each")
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtimes = [r for r in args.runtimes if r.endswith("fp32") or cpu_has_native_bf16()]
    predictors = {r: build(args.config, args.overrides, args.weights, r) for r in runtimes}
    images = [decode_image(p) for p in args.images]
    reference = predictors[runtimes[0]]
    for path, image in zip(args.images, images):
        expected = reference(image)
        for name, predictor in list(predictors.items())[1:]:
            print(f"{path} {image.shape[1]}x{image.shape[0]}, {name} vs {runtimes[0]}: "
                  f"{difference(predictor(image), expected)}")  # fmt: skip
    runs = {r: _call(p, images[0]) for r, p in predictors.items()}
    times = alternating_times(runs, args.repeats)
    height, width = images[0].shape[:2]
    resized = reference.transform.resize(images[0])[0].shape[:2]
    print(f"\n{machine_description()}; {args.threads} threads; {args.config}; "
          f"{args.images[0]} ({height}x{width}, network input {resized[0]}x{resized[1]}); "
          f"{args.repeats} alternating runs after a warm-up\n")  # fmt: skip
    print("| runtime | ms, median | ms, IQR | speed-up over torch fp32 | over torch bf16 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians = {r: quartiles(v)[1] for r, v in times.items()}
    for runtime, values in times.items():
        q1, median, q3 = quartiles(values)
        ratios = [f"{medians[base] / median:.2f}x" if base in medians else "-"
                  for base in ("torch:fp32", "torch:bf16")]  # fmt: skip
        print(f"| {runtime} | {median * 1e3:.0f} | {q1 * 1e3:.0f}-{q3 * 1e3:.0f} | "
              f"{ratios[0]} | {ratios[1]} |")  # fmt: skip


def _call(predictor: Predictor, image: np.ndarray) -> Callable[[], object]:
    return lambda: predictor(image)


if __name__ == "__main__":
    main()
