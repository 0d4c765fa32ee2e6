"""The classification stage: a PretrainConfig in, a trained backbone and its errors out.

This is the one place that turns a PretrainConfig into modules, data and a solver; the loop,
checkpoints, logging, seeding and distributed set-up are the shared engine's
(detection/engine). Outputs in ``output_dir`` (rank 0 only): ``config.yaml``,
``metrics.jsonl``, ``checkpoint_<iter>.pth`` + ``last_checkpoint``, ``model_final.pth``
(classifier + metadata), ``backbone.pth`` (without the final classifier layer; what
``model.backbone.weights`` takes) and ``eval_results.json`` (top-1/top-5 error per test mode,
as fractions).
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from backbones import BACKBONES, Backbone, backbone_arguments, build_backbone, load_weights
from backbones.errors import UserError
from backbones.pretrain.data import (
    ClassBatch,
    ClassificationData,
    EvalDataset,
    ResumableBatchSampler,
    TrainDataset,
    collate_eval,
    collate_train,
    pixel_mean_image,
    read_splits,
    report_bad_images,
)
from backbones.pretrain.transforms import TEST_MODES, ViewTransform, eval_views, train_transform
from backbones.weights import read_source
from detection.config import BackboneConfig, PretrainConfig, atomic_write_text, save_config
from detection.engine import distributed as dist
from detection.engine.checkpoint import Checkpointer, atomic_torch_save
from detection.engine.logging import MetricsLogger
from detection.engine.loop import StepFn, make_grad_scaler, prepare_model, train_loop
from detection.engine.setup import (
    amp_dtype,
    build_solver,
    loop_options,
    per_process_batch,
    run_process,
)
from detection.engine.solver import TRAIN_ERROR_KEY

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------- model
def build_classifier(backbone: BackboneConfig, num_classes: int) -> Backbone:
    """The network of ``model.backbone`` with a ``num_classes``-way classifier.

    A setting the network does not have is left out: ``norm`` of a net without norm layers
    (VGG-16) always, others (``shortcut`` of a plain net, ``stride_in_1x1`` of a CIFAR net)
    while they keep their default; changed, they are an error.
    """
    defaults = BackboneConfig()
    wanted: dict[str, Any] = {
        "num_classes": num_classes,
        "norm": backbone.norm,
        "freeze_at": backbone.freeze_at,
        "stride_in_1x1": backbone.stride_in_1x1,
        "shortcut": backbone.shortcut,
        "base_width": backbone.base_width,
    }
    if backbone.name not in BACKBONES:
        raise UserError(
            f"model.backbone.name {backbone.name!r} is not known; expected one of "
            f"{', '.join(BACKBONES)}"
        )
    accepted = backbone_arguments(backbone.name)
    for key, value in wanted.items():
        # a net without norm layers has no use for `norm`; other settings only at their default
        if key not in accepted and key != "norm" and value != getattr(defaults, key, value):
            raise UserError(f"model.backbone.{key}={value!r} does not apply to {backbone.name}")
    return build_backbone(backbone.name, **{k: v for k, v in wanted.items() if k in accepted})


# ------------------------------------------------------------------------------- steps
def make_train_step(device: torch.device, channels_last: bool) -> StepFn:
    """``(model, ClassBatch) -> {loss_cls, train_error, num_skipped_images}`` for train_loop."""
    memory_format = torch.channels_last if channels_last and device.type == "cuda" else None

    def step(model: nn.Module, batch: ClassBatch) -> dict[str, Tensor]:
        skipped = torch.tensor(float(len(batch.bad)))
        labels = batch.labels.to(device, non_blocking=True)
        if len(labels) == 0:  # every file of the batch was unreadable: a zero-gradient step
            zero = torch.stack([p.sum() for p in model.parameters()]).sum() * 0.0
            error = torch.tensor(1.0)  # counts as all wrong: does not end an until_error warm-up
            return {"loss_cls": zero, TRAIN_ERROR_KEY: error, "num_skipped_images": skipped}
        images = batch.images.to(device, non_blocking=True)
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        logits = model(images).float()  # (B, K)
        return {
            "loss_cls": F.cross_entropy(logits, labels),
            TRAIN_ERROR_KEY: (logits.argmax(1) != labels).float().mean().detach(),
            "num_skipped_images": skipped,
        }

    return step


def score_views(model: nn.Module, views: list[list[Tensor]], device: torch.device) -> Tensor:
    """Class probabilities per image, averaged over all of its views.

    Views of the same size (across the batch) go through the network together; the network
    must accept any input size (global average pooling before the classifier).

    Args:
        views: per image, a list of (V, 3, h, w) tensors (one per size).

    Returns:
        (B, K) mean softmax over each image's views.
    """
    groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = defaultdict(list)
    for i, per_size in enumerate(views):
        for v in per_size:
            groups[(v.shape[-2], v.shape[-1])].append((i, v))
    sums: Tensor | None = None
    counts = torch.zeros(len(views), device=device)
    for items in groups.values():
        owners = torch.cat([torch.full((len(v),), i) for i, v in items]).to(device)
        probs = model(torch.cat([v for _, v in items]).to(device)).float().softmax(1)  # (sum V, K)
        if sums is None:
            sums = torch.zeros(len(views), probs.shape[1], device=device)
        sums.index_add_(0, owners, probs)
        counts.index_add_(0, owners, torch.ones_like(owners, dtype=torch.float32))
    if sums is None:
        raise ValueError("score_views needs at least one view")
    return sums / counts[:, None]


def count_topk_wrong(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many labels are not among the k highest scores, per k (k capped at K classes).

    Args:
        scores: (N, K); labels: (N,) int64.
    """
    order = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # (N, k_max)
    hits = order == labels[:, None]
    return [int((~hits[:, : min(k, scores.shape[1])].any(1)).sum()) for k in ks]


# ------------------------------------------------------------------------------- evaluation
def evaluate(
    model: nn.Module,
    data: ClassificationData,
    views: dict[str, ViewTransform],
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    amp_dtype: str | None = None,
) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 error of ``model`` on ``data`` for each test mode (all ranks take part).

    Each rank scores every world_size-th image; the counts are summed over ranks.

    Returns:
        mode -> {"top1_error", "top5_error" (fractions), "images", "skipped_images"}.
    """
    net = dist.unwrap(model).eval()
    shard = list(range(dist.get_rank(), len(data), dist.get_world_size()))
    results: dict[str, dict[str, float]] = {}
    for mode, transform in views.items():
        per_batch = max(1, batch_size // {"center": 1, "10crop": 10}.get(mode, 16))
        loader = DataLoader(
            Subset(EvalDataset(data, transform), shard),
            batch_size=per_batch,
            num_workers=num_workers,
            collate_fn=collate_eval,
        )
        counts = np.zeros(4, np.int64)  # top-1 wrong, top-5 wrong, images, skipped
        autocast = (
            torch.autocast("cuda", dtype=_AMP[amp_dtype])
            if amp_dtype and device.type == "cuda"
            else nullcontext()
        )
        with torch.no_grad(), autocast:
            for batch in loader:
                counts[3] += len(batch.bad)
                if batch.views:
                    scores = score_views(net, batch.views, device)
                    counts[:2] += count_topk_wrong(scores, batch.labels.to(device))
                    counts[2] += len(batch.labels)
        wrong1, wrong5, n, skipped = np.sum(dist.all_gather_object(counts), axis=0).tolist()
        results[mode] = {
            "top1_error": wrong1 / max(n, 1),
            "top5_error": wrong5 / max(n, 1),
            "images": n,
            "skipped_images": skipped,
        }
    return results


# ------------------------------------------------------------------------------- set-up
def _read(cfg: PretrainConfig, which: str) -> ClassificationData:
    ds = getattr(cfg.data, which)
    data = read_splits(ds.format, ds.root, ds.splits)
    if len(data.classes) != cfg.model.num_classes:
        raise UserError(
            f"model.num_classes is {cfg.model.num_classes} but {ds.root} ({which}) has "
            f"{len(data.classes)} classes"
        )
    return data


def _mean(cfg: PretrainConfig, train: ClassificationData | None, stored: Any) -> np.ndarray:
    """Per-channel mean, or the per-pixel mean image (from a weights file or the data)."""
    if not cfg.input.per_pixel_mean:
        return np.asarray(cfg.input.pixel_mean, np.float32)
    if isinstance(stored, Tensor):
        return stored.numpy().astype(np.float32)
    if train is None:
        raise UserError(
            "input.per_pixel_mean: the weights hold no mean image; set data.train.root so "
            "it can be computed"
        )
    return pixel_mean_image(train, cfg.input.crop_size)


def _views(cfg: PretrainConfig, mean: np.ndarray) -> dict[str, ViewTransform]:
    inp = cfg.input
    for mode in inp.test_modes:
        if mode not in TEST_MODES:
            raise UserError(
                f"input.test_modes: unknown mode {mode!r}; expected one of {TEST_MODES}"
            )
    if inp.test_resize < inp.crop_size and {"center", "10crop"} & set(inp.test_modes):
        raise UserError(
            f"input.test_resize ({inp.test_resize}) is smaller than input.crop_size "
            f"({inp.crop_size})"
        )
    return {
        m: eval_views(m, inp.crop_size, inp.test_resize, inp.test_scales, mean, inp.pixel_std)
        for m in inp.test_modes
    }


def _check_norm(cfg: PretrainConfig, device: torch.device) -> None:
    if cfg.model.backbone.norm == "syncbn" and device.type != "cuda" and dist.get_world_size() > 1:
        raise UserError(
            "model.backbone.norm=syncbn needs CUDA (torch's SyncBatchNorm has no CPU kernel); "
            "use bn, or frozen_bn"
        )


# ------------------------------------------------------------------------------- training
def pretrain(cfg: PretrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train the classifier of ``cfg`` (a whole run, or its rest after ``--resume``).

    Launched by ``torchrun``, every process runs this; rank 0 writes the files.

    Returns:
        The loop's final metrics, with "eval" = the test errors per mode.

    Raises:
        UserError: bad data or settings. NonFiniteLossError / TrainingInterrupted from the
            loop (see detection.engine.loop).
    """
    with run_process(cfg) as device:
        return _pretrain(cfg, resume, device)


def _pretrain(cfg: PretrainConfig, resume: bool, device: torch.device) -> dict[str, Any]:
    out, batch = Path(cfg.output_dir), per_process_batch(cfg.solver)
    train, test = _read(cfg, "train"), _read(cfg, "test")
    if test.classes != train.classes:
        raise UserError(f"{cfg.data.test.root}: test classes differ from the training classes")
    mean = _mean(cfg, train, None)
    model = _training_model(cfg, device)
    ddp = dist.wrap_ddp(model, device)
    optimizer, schedule = build_solver(cfg.solver, model)
    amp = amp_dtype(cfg.solver, device)
    scaler = make_grad_scaler(amp, device)
    checkpointer = Checkpointer(out, ddp, optimizer, schedule, scaler)
    start = _resume(checkpointer) if resume else 0
    if dist.is_main():
        save_config(cfg, out / "config.yaml")
    sampler = ResumableBatchSampler(len(train), batch, dist.get_rank(), dist.get_world_size(),
                                    cfg.seed, start)  # fmt: skip
    batches = report_bad_images(_train_loader(cfg, train, mean, sampler, device),
                                fatal=not cfg.data.skip_bad_images)  # fmt: skip
    views, workers = _views(cfg, mean), cfg.data.num_workers
    logger = MetricsLogger(out, cfg.solver.max_iter, start, enabled=dist.is_main(),
                           tensorboard=cfg.tensorboard)  # fmt: skip
    try:
        final = train_loop(
            ddp, optimizer, schedule, batches, make_train_step(device, cfg.channels_last),
            loop_options(cfg, cfg.eval_period, amp), start_iter=start, scaler=scaler,
            checkpointer=checkpointer, logger=logger,
            checkpoint_extra=lambda it: {"sampler": sampler.position(it)},
            eval_fn=lambda: evaluate(ddp, test, views, device, batch, workers, amp),
        )  # fmt: skip
    finally:
        logger.close()
    if dist.is_main():
        mean_image = mean if cfg.input.per_pixel_mean else None
        write_outputs(out, model, train.classes, mean_image, final.get("eval", {}),
                      cfg.solver.max_iter)  # fmt: skip
    return final


def _training_model(cfg: PretrainConfig, device: torch.device) -> nn.Module:
    _check_norm(cfg, device)
    model = build_classifier(cfg.model.backbone, cfg.model.num_classes)
    if cfg.model.backbone.weights:  # e.g. fine-tuning from another run
        load_weights(model, cfg.model.backbone.weights, cfg.model.backbone.weights_format)
    return prepare_model(model, device, cfg.channels_last)


def _resume(checkpointer: Checkpointer) -> int:
    state = checkpointer.resume()
    if not state:
        warnings.warn(
            f"--resume: no checkpoint in {checkpointer.output_dir}; starting at 0", stacklevel=3
        )
    return int(state.get("iteration", 0))


def _train_loader(
    cfg: PretrainConfig,
    train: ClassificationData,
    mean: np.ndarray,
    sampler: ResumableBatchSampler,
    device: torch.device,
) -> DataLoader[Any]:
    inp = cfg.input
    transform = train_transform(
        inp.crop_size,
        inp.scale_range,
        inp.pad,
        inp.flip_prob,
        inp.lighting_std,
        mean,
        inp.pixel_std,
    )
    return DataLoader(
        TrainDataset(train, transform),
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_train,
        pin_memory=device.type == "cuda",
        # its own generator: creating the loader must not draw from the global RNG, or a
        # resumed run's random streams would drift from an uninterrupted run's
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def write_outputs(
    out: Path,
    model: nn.Module,
    classes: list[str],
    mean_image: np.ndarray | None,
    eval_results: dict[str, Any],
    iteration: int,
) -> None:
    """model_final.pth, backbone.pth (no final classifier) and eval_results.json, atomically."""
    state = {k: v.detach().cpu() for k, v in dist.unwrap(model).state_dict().items()}
    final: dict[str, Any] = {"model": state, "classes": classes, "iteration": iteration}
    if mean_image is not None:
        final["pixel_mean_image"] = torch.from_numpy(mean_image)
    atomic_torch_save(final, out / "model_final.pth")
    prefix = getattr(dist.unwrap(model), "classifier", "fc") + "."
    features = {k: v for k, v in state.items() if not k.startswith(prefix)}
    atomic_torch_save({"model": features}, out / "backbone.pth")
    write_eval_results(out, eval_results, iteration)


def write_eval_results(out: Path, results: dict[str, Any], iteration: int) -> None:
    """``eval_results.json``: {"iteration": i, "<mode>": {"top1_error", "top5_error", ...}}."""
    text = json.dumps({"iteration": iteration, **results}, indent=2) + "\n"
    atomic_write_text(out / "eval_results.json", text)


# ------------------------------------------------------------------------------- eval only
def evaluate_weights(cfg: PretrainConfig, weights: str) -> dict[str, Any]:
    """``--eval-only``: test errors of a weights file (ours, or torchvision's / MSRA's).

    torchvision's ImageNet models expect RGB normalised with its std: set
    ``input.pixel_std`` to [58.395, 57.12, 57.375] for them.

    Returns:
        mode -> errors, also written to ``output_dir/eval_results.json`` (rank 0).
    """
    with run_process(cfg) as device:
        return _evaluate_weights(cfg, weights, device)


def _evaluate_weights(cfg: PretrainConfig, weights: str, device: torch.device) -> dict[str, Any]:
    source = read_source(weights)
    model = build_classifier(cfg.model.backbone, cfg.model.num_classes)
    report = load_weights(model, source, cfg.model.backbone.weights_format)
    if not report.classifier_loaded:
        warnings.warn(
            f"{weights}: no classifier weights; the errors are chance level", stacklevel=3
        )
    test = _read(cfg, "test")
    train = _read(cfg, "train") if cfg.input.per_pixel_mean and cfg.data.train.root else None
    mean = _mean(cfg, train, source.get("pixel_mean_image"))
    net, amp = prepare_model(model, device, cfg.channels_last), amp_dtype(cfg.solver, device)
    views, batch = _views(cfg, mean), per_process_batch(cfg.solver)
    results = evaluate(net, test, views, device, batch, cfg.data.num_workers, amp)
    if dist.is_main():
        iteration = int(source.get("iteration", 0))
        write_eval_results(Path(cfg.output_dir), results, iteration)
    return results
