"""NMS on a real detector's candidates: torchvision's full NMS cut to k, against NMS that stops
at k (`detection.modeling.nms`), call by call on the same inputs.

Runs a trained detector over ``--batches`` training batches (train mode: the RPN keeps
`model.rpn.post_nms_topk_train` proposals) and the test split's first ``--batches`` batches
(eval mode: the RPN's test cut, then the RoI head's `test.detections_per_image`), recording
every NMS call's arguments. Each recorded call is then timed both ways, alternating,
``--repeats`` times; the table gives, per call site, the median per image and the ratio, and
checks the two return the same indices.

    python benchmarks/nms_speed.py --config output/demo/detector/config.yaml \\
        --weights output/demo/detector/model_final.pth [--batches 8 --repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms

import detection.modeling.roi_heads as roi_heads
import detection.modeling.rpn as rpn
from benchmarks._machine import machine_description
from detection.config import load_config
from detection.data.build import build_detection_test_loader, build_detection_train_loader
from detection.inference import load_detector
from detection.modeling.nms import batched_nms_top_k
from detection.structures import DetectionBatch


@dataclass(frozen=True)
class Call:
    """One NMS call as the detector made it."""

    site: str  # "rpn train", "rpn test" or "roi head test"
    boxes: torch.Tensor  # (N, 4)
    scores: torch.Tensor  # (N,)
    idxs: torch.Tensor  # (N,)
    iou_threshold: float
    k: int

    def full(self) -> torch.Tensor:
        return batched_nms(self.boxes, self.scores, self.idxs, self.iou_threshold)[: self.k]

    def stopping(self) -> torch.Tensor:
        return batched_nms_top_k(self.boxes, self.scores, self.idxs, self.iou_threshold, self.k)


def record_calls(config: str, weights: str, batches: int) -> tuple[list[Call], dict[str, int]]:
    """Every NMS call of `batches` training and test batches, and the images per call site."""
    cfg = load_config(config, [])
    model, _ = load_detector(cfg, weights)
    calls: list[Call] = []
    phase = "train"  # read by the recorders at each call

    def recorder(stage: str) -> Callable[..., torch.Tensor]:
        def record(
            boxes: torch.Tensor,
            scores: torch.Tensor,
            idxs: torch.Tensor,
            iou_threshold: float,
            k: int,
        ) -> torch.Tensor:
            site = f"{stage} {phase}"
            calls.append(Call(site, boxes.clone(), scores.clone(), idxs.clone(), iou_threshold, k))
            return batched_nms_top_k(boxes, scores, idxs, iou_threshold, k)

        return record

    rpn.batched_nms_top_k = recorder("rpn")
    roi_heads.batched_nms_top_k = recorder("roi head")
    images: dict[str, int] = defaultdict(int)
    try:
        train: Iterator[DetectionBatch] = iter(
            build_detection_train_loader(cfg, cfg.solver.ims_per_batch)
        )
        model.train()
        with torch.no_grad():
            for _ in range(batches):
                batch = next(train)
                model(batch.images, batch.targets)
                images["rpn train"] += len(batch.targets)
        phase = "test"
        loader, _, _ = build_detection_test_loader(cfg)
        model.eval()
        with torch.no_grad():
            for _, batch in zip(range(batches), loader, strict=False):
                model(batch.images, detect=True)
                images["rpn test"] += len(batch.records)
                images["roi head test"] += len(batch.records)
    finally:
        rpn.batched_nms_top_k = batched_nms_top_k
        roi_heads.batched_nms_top_k = batched_nms_top_k
    return calls, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    calls, images = record_calls(args.config, args.weights, args.batches)
    times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    identical = 0
    for call in calls:  # equal scores may come in another order (detection/modeling/nms.py)
        cut, stopped = call.full(), call.stopping()
        if not torch.equal(call.scores[cut], call.scores[stopped]):
            raise SystemExit(f"nms_speed: the two keep different scores on a {call.site} call")
        identical += torch.equal(cut, stopped)
    for _ in range(args.repeats):
        per_site: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for call in calls:
            for way, fn in (("full", call.full), ("stopping", call.stopping)):
                start = time.perf_counter()
                fn()
                per_site[call.site][way] += time.perf_counter() - start
        for site, sums in per_site.items():
            for way, seconds in sums.items():
                times[site][way].append(seconds / images[site])
    print(f"{machine_description()}, {args.threads} thread(s); {args.repeats} alternating rounds")
    print(
        f"{len(calls)} calls: the same scores in the same order in all, the same indices in "
        f"{identical} (the others order equal scores differently)"
    )
    print(
        "\n| call site | candidates per call (median) | k | torchvision ms / image "
        "| stopping at k ms / image | speed-up |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for site, measured in times.items():
        sizes = [c.scores.shape[0] for c in calls if c.site == site]
        k = next(c.k for c in calls if c.site == site)
        slow, fast = statistics.median(measured["full"]), statistics.median(measured["stopping"])
        print(
            f"| {site} | {statistics.median(sizes):.0f} | {k} | {slow * 1e3:.2f} "
            f"| {fast * 1e3:.2f} | {slow / fast:.1f}x |"
        )


if __name__ == "__main__":
    main()
