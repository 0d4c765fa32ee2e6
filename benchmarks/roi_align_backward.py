"""RoIAlign's backward: torchvision's CPU kernel against resdet's two matrix products.

    python benchmarks/roi_align_backward.py [--repeats 7] [--threads 1]

Random maps and RoIs (seed 0) in the shapes of two training runs, both backwards of the same
gradient, alternating after one warm-up; prints one markdown table of milliseconds (median
and interquartile range), the speed-up, and the largest difference between the two
gradients relative to their largest value.

- demo: the quickstart / `resdet demo` C4 detector, 4 images at 288 x 384 (a 18 x 24 c4 map
  of 64 channels), 16 RoIs per image, 14 x 14 bins, 2 samples per bin;
- r101_c4: ResNet-101-C4 at the paper's 600 px (a 38 x 50 c4 map of 1,024 channels), 2 images
  of 128 RoIs, 14 x 14 bins, adaptive sampling;
- r50_fpn_p2: R50-FPN's finest level at 800 x 1056 (a 200 x 264 map of 256 channels), 2 images
  of 512 small RoIs (16-112 px, those the FPN rule sends to P2), 7 x 7 bins, 2 samples.
"""

from __future__ import annotations

import argparse
import functools

import torch

from benchmarks._machine import machine_description
from benchmarks.ensemble_speed import alternating_times
from benchmarks.runtime_speed import quartiles
from detection.modeling.roi_align_grad import roi_align_backward

# name: (images, channels, height, width, RoIs per image, bins, sampling ratio, stride,
#        box sides in input pixels (smallest, largest))
SHAPES = {
    "demo": (4, 64, 18, 24, 16, 14, 2, 16, (8, 230)),
    "r101_c4": (2, 1024, 38, 50, 128, 14, 0, 16, (12, 480)),
    "r50_fpn_p2": (2, 256, 200, 264, 512, 7, 2, 4, (16, 112)),
}


def random_rois(
    images: int, per_image: int, height: int, width: int, stride: int, sides: tuple[int, int]
) -> torch.Tensor:
    """(images * per_image, 5) boxes with sides in ``sides`` px, some across the edges."""
    g = torch.Generator().manual_seed(0)
    size = torch.tensor([width * stride, height * stride], dtype=torch.float32)
    low, high = sides
    rows = []
    for b in range(images):
        corner = torch.rand(per_image, 2, generator=g) * size * 1.1 - 0.05 * size
        extent = torch.rand(per_image, 2, generator=g) * (high - low) + low
        index = torch.full((per_image, 1), float(b))
        rows.append(torch.cat([index, corner, corner + extent], dim=1))
    return torch.cat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each backward")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats {args.repeats}: quartiles need at least 2 runs")
    torch.set_num_threads(args.threads)
    print(f"{machine_description()}, {args.threads} thread(s), {args.repeats} alternating runs\n")
    print("| shapes | torchvision ms | resdet ms | speed-up | max difference (relative) |")
    print("| --- | --- | --- | ---: | ---: |")
    backward = torch.ops.torchvision._roi_align_backward
    for name in args.shapes:
        n, c, h, w, per_image, bins, ratio, stride, sides = SHAPES[name]
        rois = random_rois(n, per_image, h, w, stride, sides)
        grad = torch.randn(len(rois), c, bins, bins, generator=torch.Generator().manual_seed(1))
        scale = 1.0 / stride

        theirs = functools.partial(backward, grad, rois, scale, bins, bins, n, c, h, w, ratio, True)
        ours = functools.partial(roi_align_backward, grad, rois, scale, ratio, True, (n, c, h, w))
        reference = theirs()
        difference = float((ours() - reference).abs().max() / reference.abs().max())
        times = alternating_times({"torchvision": theirs, "resdet": ours}, args.repeats)
        cells = []
        for run in ("torchvision", "resdet"):
            q1, median, q3 = quartiles(times[run])
            cells.append(f"{median * 1e3:.1f} ({q1 * 1e3:.1f}-{q3 * 1e3:.1f})")
        speedup = quartiles(times["torchvision"])[1] / quartiles(times["resdet"])[1]
        print(f"| {name} | {cells[0]} | {cells[1]} | {speedup:.1f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
