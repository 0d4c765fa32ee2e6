"""Inference time of an ensemble against its members alone (the Predictor, BN folded).

Cases: each --weights alone, then their ensemble with test.ensemble_proposals all and nms
(every member built from --config). Each timed run passes every --images image through a
case (one image per call, RGB uint8 in, detections in original pixels out); the cases
alternate (a, b, c, a, b, c, ...), so load from other processes reaches them alike.

    python benchmarks/ensemble_speed.py --config C --weights A.pth --weights B.pth \
        --images A.jpg B.jpg --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from detection.config import Config, load_config
from detection.predictor import Predictor
from engine.images import decode_image


def cases(cfg: Config, weights: list[str]) -> dict[str, Predictor]:
    """Name -> predictor: each member alone, then the ensemble with each RoI policy."""
    out = {f"member {i} alone": Predictor(cfg, w) for i, w in enumerate(weights)}
    for union in ("all", "nms"):
        ensemble_cfg = copy.deepcopy(cfg)
        ensemble_cfg.test.ensemble_proposals = union
        out[f"ensemble ({union})"] = Predictor(ensemble_cfg, weights)
    return out


def alternating_times(
    runs: Mapping[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Seconds of each run, `repeats` times, the runs taking turns (after one warm-up)."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", action="append", required=True, help="repeat: members")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images: list[np.ndarray] = [decode_image(p) for p in args.images]
    predictors = cases(load_config(args.config), args.weights)
    runs = {name: (lambda p=p: p(images)) for name, p in predictors.items()}
    times = alternating_times(runs, args.repeats)
    print(f"{len(images)} images, {args.threads} threads, {args.repeats} alternating passes")
    print("| case | median s/image | best s/image |\n| --- | --- | --- |")
    for name, values in times.items():
        median, best = statistics.median(values) / len(images), min(values) / len(images)
        print(f"| {name} | {median:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
