"""The exported ONNX graph (onnxruntime) against our Predictor: same detections, CPU latency.

Exports --config/--weights to a temporary .onnx (as `resdet export` does), checks on every
image that both give the same detections (count, labels; largest box and score difference),
then times one image with alternating runs (ours, onnxruntime, ours, ...) at one thread
count for both. Each run is end to end: RGB uint8 image in, detections in original pixels
out (both resize with OpenCV first).

    python benchmarks/onnx_speed.py --config C --weights W --images A.jpg B.jpg --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detection.config import load_config
from detection.export import DEFAULT_OPSET, OnnxPredictor, export_onnx
from detection.predictor import Predictor
from detection.structures import Detections
from engine.images import decode_image


def difference(a: Detections, b: Detections) -> str:
    """How far two detection lists are apart, in order (after a count check)."""
    if len(a) != len(b) or not torch.equal(a.labels, b.labels):
        return f"DIFFERENT: {len(a)} vs {len(b)} detections"
    if not len(a):
        return "0 detections each"
    box = float((a.boxes - b.boxes).abs().max())
    score = float((a.scores - b.scores).abs().max())
    return f"{len(a)} detections each, max |box| {box:.2g} px, max |score| {score:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", nargs="+", required=True, help="the first one is timed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    ours = Predictor(cfg, args.weights)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(Predictor(cfg, args.weights), path, args.opset)
        onnx = OnnxPredictor(path, cfg.input, threads=args.threads)
    images = [decode_image(p) for p in args.images]
    for name, image in zip(args.images, images):
        print(f"{name} {image.shape[1]}x{image.shape[0]}: {difference(onnx(image), ours(image))}")
    runs = {"ours": lambda: ours(images[0]), "onnxruntime": lambda: onnx(images[0])}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{args.images[0]}, {args.threads} threads, {args.repeats} alternating runs:")
    for name, values in times.items():
        median, best = statistics.median(values) * 1e3, min(values) * 1e3
        print(f"  {name}: median {median:.1f} ms, best {best:.1f} ms")


if __name__ == "__main__":
    main()
