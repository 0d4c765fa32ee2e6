"""One R50-FPN training step, ours against torchvision's fasterrcnn_resnet50_fpn, fp32 and bf16.

Both models get the same random weights (torchvision's, converted as `resdet convert` does),
frozen BN with conv1 and res2 frozen (torchvision's trainable_backbone_layers=3), the same
batch of images at network size (so torchvision's internal resize is the identity) with the
same boxes, and SGD on the trainable parameters. Steps alternate in one process (ours fp32,
torchvision fp32, ours bf16, torchvision bf16, ...) so that machine noise hits all alike; a
step is forward with the four losses, backward and the optimiser update.

    python benchmarks/train_step.py                         # 2 images of 800x1056, 3 steps
    python benchmarks/train_step.py --write-docs            # also update docs/PERFORMANCE.md

Boxes (``--boxes``): ``random`` (3 per image, 32 px and up; the default), ``fixed`` (the same
three per image: [100,120,400,500], [500,300,900,700], [50,50,200,150]) or ``data`` (the
ground truth of real annotation files: ``--boxes-from CONFIG``, whose ``data.train`` is read
by the project's own readers; e.g. configs/mini/_bccd_detector.yaml, ~13 small cells per
image, or the raccoon config, one large box). Each step draws its images' boxes from the
records in turn, scaled from the annotated image size to the network size, so the spread
over ``--repeats`` covers the data's layouts. Times are reported as median and
interquartile range.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmarks._machine import machine_description
from benchmarks.detector_speed import CONFIG, random_torchvision_model, timed
from benchmarks.detector_speed import write_section as write_doc_section
from detection.config import load_config
from detection.modeling.build import build_model, load_detector_weights
from detection.modeling.convert import from_torchvision_detector
from detection.structures import ImageBatch, ImageRecord, Targets
from engine.amp import autocast, cpu_has_native_bf16
from engine.device import prepare_model

SECTION = "## Training step"
Step = Callable[[int], float]  # one step on layout i; returns the loss


FIXED_BOXES = [
    [100.0, 120.0, 400.0, 500.0],
    [500.0, 300.0, 900.0, 700.0],
    [50.0, 50.0, 200.0, 150.0],
]
Boxes = list[tuple[Tensor, Tensor]]  # per image: (G, 4) xyxy network pixels, (G,) labels 1..90


def batch(n: int, h: int, w: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """n images (n, 3, h, w) in 0..1, and per image 3 boxes (3, 4) xyxy and labels (3,) 1..90."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, h, w, generator=g)
    corners = torch.rand(n, 3, 2, generator=g) * torch.tensor([w, h]) * 0.6
    sizes = torch.rand(n, 3, 2, generator=g) * torch.tensor([w, h]) * 0.3 + 32
    boxes = torch.cat([corners, corners + sizes], dim=2)
    labels = torch.randint(1, 91, (n, 3), generator=g)
    return images, list(boxes), list(labels)


def fixed_boxes(n: int) -> Boxes:
    """The same three boxes on every image (an independent probe's layout)."""
    return [(torch.tensor(FIXED_BOXES), torch.tensor([1, 2, 3])) for _ in range(n)]


def annotated_records(config: str) -> list[ImageRecord]:
    """The records of ``config``'s training data that hold at least one box."""
    from detection.data.build import load_dataset_records, resolve_class_names

    cfg = load_config(config)
    records = load_dataset_records(cfg.data.train, resolve_class_names(cfg), "data.train")
    return [r for r in records if len(r.boxes)]


def data_boxes(records: list[ImageRecord], n: int, h: int, w: int, index: int) -> Boxes:
    """The ground truth of ``records[index * n ..]`` (cycling), scaled to ``h x w``; labels
    shifted to 1.. (torchvision's background is 0)."""
    out: Boxes = []
    for k in range(n):
        record = records[(index * n + k) % len(records)]
        scale = torch.tensor([w / record.width, h / record.height] * 2)
        boxes = torch.as_tensor(record.boxes, dtype=torch.float32) * scale
        out.append((boxes, torch.as_tensor(record.labels, dtype=torch.int64) % 90 + 1))
    return out


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 1e-4, 0.9)


def step_fn(forward: Callable[[int], dict[str, Tensor]], model: nn.Module, amp: str | None) -> Step:
    """forward on layout i -> summed losses -> backward -> SGD step, under autocast ``amp``."""
    optimizer = sgd(model)

    def step(i: int) -> float:
        with autocast("cpu", amp):
            loss = sum(forward(i).values())
        assert isinstance(loss, Tensor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def steps(n: int, h: int, w: int, bf16: bool, layouts: list[Boxes | None]) -> dict[str, Step]:
    """The models to time: ours and torchvision's, fp32 and (if ``bf16``) bf16 autocast, built
    once; step ``i`` of each trains on ``layouts[i]``'s boxes (None: `batch`'s random ones)."""
    images, boxes, labels = batch(n, h, w)
    per_step = [
        (boxes, labels) if lay is None else ([b for b, _ in lay], [lab for _, lab in lay])
        for lay in layouts
    ]
    cfg = load_config(CONFIG)
    mean = torch.tensor(cfg.input.pixel_mean).view(1, 3, 1, 1) / 255
    std = torch.tensor(cfg.input.pixel_std).view(1, 3, 1, 1) / 255
    ours_batch = ImageBatch((images - mean) / std, [(h, w)] * n, [(h, w)] * n,
                            [(1.0, 1.0)] * n, [False] * n, list(range(n)))  # fmt: skip
    targets = [[Targets(b, lab - 1, torch.zeros(len(b), dtype=torch.bool))
                for b, lab in zip(*step)] for step in per_step]  # fmt: skip
    tv_targets = [[{"boxes": b, "labels": lab} for b, lab in zip(*step)] for step in per_step]
    runs: dict[str, Step] = {}
    for amp in ["fp32", "bf16"] if bf16 else ["fp32"]:
        tv = random_torchvision_model("cpu").train()
        fresh = build_model(cfg, load_backbone_weights=False)
        load_detector_weights(fresh, {"model": from_torchvision_detector(tv.state_dict())})
        ours = prepare_model(fresh.train(), torch.device("cpu"), cfg.channels_last)
        dtype = None if amp == "fp32" else amp

        def ours_forward(i: int, m: nn.Module = ours) -> dict[str, Tensor]:
            return dict(m(ours_batch, targets[i]).losses)

        def tv_forward(i: int, m: nn.Module = tv) -> dict[str, Tensor]:
            return dict(m(list(images), tv_targets[i]))

        runs[f"ours {amp}"] = step_fn(ours_forward, ours, dtype)
        runs[f"torchvision {amp}"] = step_fn(tv_forward, tv, dtype)
    return runs


def markdown(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    """The section: machine line, one row per model, speed-up over torchvision fp32."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    tv = statistics.median(times["torchvision fp32"]), min(times["torchvision fp32"])
    lines = [
        SECTION,
        "",
        f"Machine: {machine_description()}; load average {load} at the end (this "
        "benchmark's own threads count in it); "
        f"torch {torch.__version__}, {args.threads} threads, {platform.python_implementation()} "
        f"{platform.python_version()}. Command: `python benchmarks/train_step.py --batch "
        f"{args.batch} --size {args.size} --repeats {args.repeats}` (R50-FPN, same random "
        f"weights and batch of {args.batch} images at {args.size}, frozen BN, conv1 + res2 "
        f"frozen; {args.repeats} alternating steps each after one warm-up; seconds as median "
        "(best)).",
        "",
        f"Boxes: {args.boxes}" + (f" from {args.boxes_from}" if args.boxes == "data" else "") + ".",
        "",
        "| model | precision | s / step, median (best) | IQR | speed-up vs torchvision fp32 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, values in times.items():
        who, precision = name.split()
        med, best = statistics.median(values), min(values)
        lines.append(f"| {who} | {precision} | {med:.2f} ({best:.2f}) | {iqr(values)} "
                     f"| {tv[0] / med:.2f}x ({tv[1] / best:.2f}x) |")  # fmt: skip
    return "\n".join(lines) + "\n"


def iqr(values: list[float]) -> str:
    """``q1-q3`` of the values (— for fewer than 4)."""
    if len(values) < 4:
        return "—"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}"


def layouts(args: argparse.Namespace, h: int, w: int) -> list[Boxes | None]:
    """One box layout per timed step (None: the random boxes of `batch`)."""
    if args.boxes == "fixed":
        return [fixed_boxes(args.batch)] * args.repeats
    if args.boxes == "data":
        records = annotated_records(args.boxes_from)  # read once for every step
        return [data_boxes(records, args.batch, h, w, i) for i in range(args.repeats)]
    return [None] * args.repeats


NOTES = """
- Ours trains with channels_last weights and activations (config `channels_last: true`, the
  default) and, with `solver.amp: true` + `solver.amp_dtype: bf16`, under CPU bf16 autocast
  where the CPU has native bf16 (AVX512-BF16 / AMX; else fp32 with a warning). The losses
  are computed in fp32 in both models. "torchvision bf16" is the same autocast around
  torchvision's model, for reference.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="images per step")
    parser.add_argument("--size", default="800x1056", help="network input h x w")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-bf16", action="store_true", help="fp32 only")
    parser.add_argument("--write-docs", action="store_true", help="update docs/PERFORMANCE.md")
    parser.add_argument("--boxes", choices=("random", "fixed", "data"), default="random")
    parser.add_argument("--boxes-from", metavar="CONFIG", help="--boxes data: its data.train")
    args = parser.parse_args()
    if args.boxes == "data" and not args.boxes_from:
        parser.error("--boxes data needs --boxes-from CONFIG")
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    bf16 = cpu_has_native_bf16() and not args.no_bf16
    runs = steps(args.batch, h, w, bf16, layouts(args, h, w))
    for run in runs.values():
        run(0)  # warm-up, on the first layout
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.repeats):
        for name, run in runs.items():
            times[name].append(timed(functools.partial(run, i), "cpu"))
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    table = markdown(times, args)
    print(table)
    if args.write_docs:
        write_doc_section(table, NOTES, SECTION)


if __name__ == "__main__":
    main()
