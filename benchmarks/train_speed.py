"""Training and inference throughput of a detection config, and peak GPU memory.

    python benchmarks/train_speed.py --config configs/detection/quickstart.yaml \
        --iters 200 --warmup 20 [--set k=v ...]

Runs ``--warmup`` + ``--iters`` training iterations through the real loader, model, loss,
backward and SGD step (AMP as ``solver.amp`` says, channels_last as ``channels_last`` says),
then ``--iters`` inference batches of the test split (precision as ``test.precision`` says,
weights prepared as ``resdet eval`` prepares them), and prints one markdown row: device,
config, input size, images/s for training and inference, and peak CUDA memory. Used by
tools/gpu_check.sh (cudnn.benchmark on there).

With ``--profile`` the timed iterations run under torch.profiler, each stage of the model
(backbone stages, RPN, RoI pooling, box head, predictor) marked as a range by forward hooks;
two tables follow the row, per phase: the stages' forward time, then the top ops by self
time (forward and backward). With random weights (``model.backbone.weights=``) add
``--calibrate-norms``: a deep network's activations otherwise grow ~1e6x through 101 layers of
identity frozen norms and no proposal survives, so the RoI head would run on nothing. For a
slow layout keep it to a few iterations:

    python benchmarks/train_speed.py \
        --config configs/detection/faster_rcnn_r101_c4_voc07plus12.yaml \
        --set model.backbone.weights= solver.ims_per_batch=1 ... --iters 2 --warmup 1 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from itertools import cycle, islice

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from backbones.layers import FrozenBatchNorm2d
from detection.config import Config, load_config
from detection.data.build import build_detection_test_loader, build_detection_train_loader
from detection.inference import inference_precision, prepare_for_inference
from detection.modeling.build import build_model
from detection.structures import DetectionBatch
from engine import distributed as dist
from engine.amp import autocast, make_grad_scaler
from engine.device import prepare_model
from engine.run import amp_dtype, build_solver


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


STAGES = (  # the modules marked as profiler ranges, where the model has them
    "backbone.stem", "backbone.res2", "backbone.res3", "backbone.res4", "backbone.res5",
    "backbone.features", "fpn", "rpn", "roi_heads.pooler", "roi_heads.box_head",
    "roi_heads.predictor",
)  # fmt: skip


def mark_stages(model: nn.Module) -> None:
    """Forward hooks that open a profiler range named after each stage in :data:`STAGES`."""
    modules = dict(model.named_modules())
    for name in STAGES:
        module = modules.get(name)
        if module is None or isinstance(module, nn.Identity):
            continue
        ranges: list[record_function] = []

        def enter(_m: nn.Module, _args: object, name: str = name, ranges: list = ranges) -> None:
            ranges.append(record_function(f"stage: {name}"))
            ranges[-1].__enter__()

        def leave(_m: nn.Module, _args: object, _out: object, ranges: list = ranges) -> None:
            ranges.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def profiled(enabled: bool) -> contextlib.AbstractContextManager:
    return profile(activities=[ProfilerActivity.CPU]) if enabled else contextlib.nullcontext()


def print_profile(prof: profile, title: str, iters: int, top: int) -> None:
    """Markdown tables: stage ranges (forward), then the top ops by self CPU time."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / iters
    print(f"\n{title}: {total:.2f} s per iteration in ops (profiler self times, wall clock)")
    print("\n| stage (forward) | s / iteration | share |\n| --- | ---: | ---: |")
    for e in sorted(events, key=lambda e: -e.cpu_time_total):
        if e.key.startswith("stage: "):
            seconds = e.cpu_time_total / 1e6 / iters
            print(f"| {e.key[7:]} | {seconds:.3f} | {seconds / total:.0%} |")
    print("\n| op | calls / iteration | self s / iteration | share |\n| --- | ---: | ---: | ---: |")
    ops = sorted((e for e in events if not e.key.startswith("stage: ")),
                 key=lambda e: -e.self_cpu_time_total)  # fmt: skip
    for e in ops[:top]:
        seconds = e.self_cpu_time_total / 1e6 / iters
        print(f"| `{e.key}` | {e.count / iters:.0f} | {seconds:.3f} | {seconds / total:.0%} |")


@torch.no_grad()
def calibrate_frozen_norms(model: nn.Module, batch: DetectionBatch) -> None:
    """Data-dependent init of random weights: each FrozenBatchNorm2d's mean and variance become
    its input's per-channel statistics in one forward of ``batch`` (eval mode, detections on),
    so that activations keep unit scale and the RPN proposes boxes (R, 4) for the head."""

    def set_statistics(norm: FrozenBatchNorm2d, args: tuple[torch.Tensor, ...]) -> None:
        norm.running_mean.copy_(args[0].mean(dim=(0, 2, 3)))
        norm.running_var.copy_(args[0].var(dim=(0, 2, 3)))

    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    hooks = [norm.register_forward_pre_hook(set_statistics) for norm in norms]
    mode = model.training
    model.eval()(batch.images, detect=True)
    model.train(mode)
    for hook in hooks:
        hook.remove()


def train_speed(
    cfg: Config,
    device: torch.device,
    warmup: int,
    iters: int,
    top: int = 0,
    calibrate: bool = False,
) -> float:
    """Training images per second (the timed iterations only); ``top`` > 0: profile them."""
    batches: Iterator[DetectionBatch] = iter(
        build_detection_train_loader(cfg, cfg.solver.ims_per_batch)
    )
    model: nn.Module = build_model(cfg)
    if calibrate:
        calibrate_frozen_norms(model, next(batches))
    model = prepare_model(model, device, cfg.channels_last).train()
    if top:
        mark_stages(model)
    optimizer, _ = build_solver(cfg.solver, model)
    amp = amp_dtype(cfg.solver, device)
    scaler = make_grad_scaler(amp, device)
    for _ in range(warmup):
        _train_step(model, next(batches), optimizer, scaler, amp, device)
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    with profiled(top > 0) as prof:
        for _ in range(iters):
            _train_step(model, next(batches), optimizer, scaler, amp, device)
        _sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if top:
        print_profile(prof, "training", iters, top)
    # CPU time of this process (all its threads, not the loader's workers): less sensitive
    # than wall time to other jobs on a shared machine, with one thread a measure of the work
    print(f"training: {seconds / iters:.3f} s and {cpu / iters:.3f} CPU s per iteration")
    return iters * cfg.solver.ims_per_batch / seconds


def _train_step(
    model: nn.Module,
    batch: DetectionBatch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    amp: str | None,
    device: torch.device,
) -> None:
    """One forward, backward and SGD step."""
    with autocast(device.type, amp):
        losses = model(batch.images.to(device), [t.to(device) for t in batch.targets]).losses
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


@torch.inference_mode()
def inference_speed(
    cfg: Config,
    device: torch.device,
    warmup: int,
    iters: int,
    top: int = 0,
    calibrate: bool = False,
) -> float:
    """Inference images per second over the test split (cycled), after ``warmup`` batches;
    ``top`` > 0: profile the timed batches."""
    amp = inference_precision(cfg.test.precision, device)
    loader, _, _ = build_detection_test_loader(cfg)
    model: nn.Module = build_model(cfg)
    if calibrate:
        calibrate_frozen_norms(model, next(iter(loader)))
    model = prepare_for_inference(model, device, cfg.channels_last, amp)
    if top:
        mark_stages(model)
    batches = islice(cycle(loader), warmup + iters)
    for batch in islice(batches, warmup):
        with autocast(device.type, amp):
            model(batch.images.to(device), detect=True)
    _sync(device)
    images, start, cpu_start = 0, time.perf_counter(), time.process_time()
    with profiled(top > 0) as prof:
        for batch in batches:
            with autocast(device.type, amp):
                model(batch.images.to(device), detect=True)
            images += len(batch.images)
        _sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if top:
        print_profile(prof, "inference", iters, top)
    print(f"inference: {seconds / images:.3f} s and {cpu / images:.3f} CPU s per image")
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile the timed iterations")
    parser.add_argument("--top", type=int, default=15, help="ops listed by --profile")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--calibrate-norms", action="store_true",
        help="random weights: frozen-norm statistics from one batch (see the docstring)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    device = dist.resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    top = args.top if args.profile else 0
    calibrate = args.calibrate_norms
    train = train_speed(cfg, device, args.warmup, args.iters, top, calibrate)
    infer = inference_speed(cfg, device, args.warmup, args.iters, top, calibrate)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    amp = amp_dtype(cfg.solver, device) or "fp32"
    test_amp = inference_precision(cfg.test.precision, device) or "fp32"
    print("| device | config | input | batch | AMP train / infer | channels_last "
          "| train img/s | infer img/s | peak mem GiB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {name} | {args.config} | {cfg.input.min_size_train[0]}/{cfg.input.max_size_train} "
        f"| {cfg.solver.ims_per_batch} | {amp} / {test_amp} | {cfg.channels_last} "
        f"| {train:.3g} | {infer:.3g} | {memory:.2f} |"
    )


if __name__ == "__main__":
    main()
