"""Training and inference throughput of a detection config, and peak GPU memory.

    python benchmarks/train_speed.py --config configs/detection/quickstart.yaml \
        --iters 200 --warmup 20 [--set k=v ...]

Runs ``--warmup`` + ``--iters`` training iterations through the real loader, model, loss,
backward and SGD step (AMP as ``solver.amp`` says, channels_last as ``channels_last`` says),
then ``--iters`` inference batches of the test split (precision as ``test.precision`` says,
weights prepared as ``resdet eval`` prepares them), and prints one markdown row: device,
config, input size, images/s for training and inference, and peak CUDA memory. Used by
tools/gpu_check.sh (cudnn.benchmark on there).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from itertools import cycle, islice

import torch

from detection.config import Config, load_config
from detection.data.build import build_detection_test_loader, build_detection_train_loader
from detection.modeling.build import build_model
from detection.predictor import inference_amp, prepare_for_inference
from detection.structures import DetectionBatch
from engine import distributed as dist
from engine.amp import autocast, make_grad_scaler
from engine.loop import prepare_model
from engine.run import amp_dtype, build_solver


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_speed(cfg: Config, device: torch.device, warmup: int, iters: int) -> float:
    """Training images per second (the timed iterations only)."""
    model = prepare_model(build_model(cfg), device, cfg.channels_last).train()
    optimizer, _ = build_solver(cfg.solver, model)
    amp = amp_dtype(cfg.solver, device)
    scaler = make_grad_scaler(amp, device)
    batches: Iterator[DetectionBatch] = iter(
        build_detection_train_loader(cfg, cfg.solver.ims_per_batch)
    )
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = next(batches)
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
    _sync(device)
    return iters * cfg.solver.ims_per_batch / (time.perf_counter() - start)


@torch.inference_mode()
def inference_speed(cfg: Config, device: torch.device, warmup: int, iters: int) -> float:
    """Inference images per second over the test split (cycled), after ``warmup`` batches."""
    amp = inference_amp(cfg, device)
    model = prepare_for_inference(build_model(cfg), device, cfg.channels_last, amp)
    loader, _, _ = build_detection_test_loader(cfg)
    images, start = 0, 0.0
    for i, batch in enumerate(islice(cycle(loader), warmup + iters)):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with autocast(device.type, amp):
            model(batch.images.to(device), detect=True)
        images += len(batch.images) if i >= warmup else 0
    _sync(device)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    device = dist.resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    train = train_speed(cfg, device, args.warmup, args.iters)
    infer = inference_speed(cfg, device, args.warmup, args.iters)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    amp = amp_dtype(cfg.solver, device) or "fp32"
    test_amp = inference_amp(cfg, device) or "fp32"
    print("| device | config | input | batch | AMP train / infer | channels_last "
          "| train img/s | infer img/s | peak mem GiB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {name} | {args.config} | {cfg.input.min_size_train[0]}/{cfg.input.max_size_train} "
        f"| {cfg.solver.ims_per_batch} | {amp} / {test_amp} | {cfg.channels_last} "
        f"| {train:.1f} | {infer:.1f} | {memory:.2f} |"
    )


if __name__ == "__main__":
    main()
