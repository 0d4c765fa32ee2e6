"""The classification task: a PretrainConfig in, a trained backbone and its errors out.

:class:`ClassificationTask` is what ``engine.run`` needs from pretraining (model, batches,
step, evaluation, final weights); the loop, checkpoints, logging, seeding and distributed
set-up are the engine's. Outputs in ``output_dir`` (rank 0 only): ``config.yaml``,
``metrics.jsonl``, ``checkpoint_<iter>.pth`` + ``last_checkpoint``, ``model_final.pth``
(classifier + metadata), ``backbone.pth`` (without the final classifier layer; what
``model.backbone.weights`` takes) and ``eval_results.json`` (engine.run's layout; metrics:
top-1/top-5 error per test mode, as fractions). Every weights file records the input it
expects (``meta.input``: RGB, the pixel mean/std) and the class names.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backbones.build import build_from_config
from backbones.pretrain.config import PretrainConfig
from backbones.pretrain.data import ClassBatch, TrainDataset, collate_train, pixel_mean_image
from backbones.pretrain.evaluation import evaluate
from backbones.pretrain.readers import ClassificationData, read_splits
from backbones.pretrain.transforms import ViewTransform, eval_views, train_transform
from backbones.weights import load_weights, read_source
from engine import distributed as dist
from engine.device import prepare_model
from engine.errors import UserError
from engine.images import BadImagePolicy
from engine.io import atomic_torch_save
from engine.loop import StepFn
from engine.run import amp_dtype, evaluate_checkpoint, per_process_batch, run_training
from engine.samplers import ResumableBatchSampler
from engine.solver import TRAIN_ERROR_KEY
from engine.spec import InputSpec
from engine.stops import StopSafeLoader

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- steps
def make_train_step(device: torch.device, channels_last: bool) -> StepFn:
    """``(model, ClassBatch) -> {loss_cls, train_error, num_skipped_images}`` for train_loop."""
    memory_format = torch.channels_last if channels_last else None  # weights: on CUDA only

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


# ------------------------------------------------------------------------------- the task
def input_spec(cfg: PretrainConfig, mean: np.ndarray) -> InputSpec:
    """The input a network of this run expects: RGB, the mean (per channel, or the
    per-pixel mean image's channel means) and std, 0..255 scale."""
    inp = cfg.input
    channel_mean = mean.reshape(-1, 3).mean(0) if mean.ndim > 1 else mean
    size = f"{inp.crop_size}x{inp.crop_size} crops" + (
        ", per-pixel mean image subtracted" if inp.per_pixel_mean else ""
    )
    return InputSpec.make("RGB", channel_mean.tolist(), inp.pixel_std, size)


class ClassificationTask:
    """Backbone pretraining and evaluation for ``engine.run`` (see its Task protocol)."""

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self._train: ClassificationData | None = None
        self._test: ClassificationData | None = None
        self._mean: np.ndarray | None = None
        self._step: StepFn | None = None

    def preflight(self) -> None:
        """Read the test split's file list and check the test views (no image decoded)."""
        _check_views(self.cfg)
        self.test_data()

    def test_data(self) -> ClassificationData:
        if self._test is None:
            self._test = _read(self.cfg, "test")
        return self._test

    def train_data(self) -> ClassificationData:
        if self._train is None:
            self._train = _read(self.cfg, "train")
            if self.test_data().classes != self._train.classes:
                raise UserError(
                    f"{self.cfg.data.test.root}: test classes differ from the training classes"
                )
        return self._train

    def mean(self) -> np.ndarray:
        """Per-channel mean, or the per-pixel mean image of the training set."""
        if self._mean is None:
            self._mean = _mean(self.cfg, self.train_data(), None)
        return self._mean

    def build_model(self, device: torch.device) -> nn.Module:
        _check_norm(self.cfg, device)
        backbone = self.cfg.model.backbone
        model = build_from_config(backbone, self.cfg.model.num_classes)
        if backbone.weights:  # e.g. fine-tuning from another run
            report = load_weights(
                model, backbone.weights, backbone.weights_format,
                trust=self.cfg.trust_weights, skip=backbone.weights_skip,
            )  # fmt: skip
            logger.info("weights %s: %s", backbone.weights, report.summary())
        self._step = make_train_step(device, self.cfg.channels_last)
        return prepare_model(model, device, self.cfg.channels_last and device.type == "cuda")

    def load_for_eval(
        self, weights: str | list[str], device: torch.device
    ) -> tuple[nn.Module, int]:
        if not isinstance(weights, str):  # engine's Task allows ensembles; pretraining has none
            raise UserError(f"pretraining evaluates one weights file, got {len(weights)}")
        source = read_source(weights, self.cfg.trust_weights)
        model = build_from_config(self.cfg.model.backbone, self.cfg.model.num_classes)
        report = load_weights(model, source, self.cfg.model.backbone.weights_format)
        if not report.classifier_loaded:
            warnings.warn(
                f"{weights}: no classifier weights; the errors are chance level", stacklevel=2
            )
        train = None
        if self.cfg.input.per_pixel_mean and self.cfg.data.train.root:
            train = self.train_data()
        self._mean = _mean(self.cfg, train, source.get("pixel_mean_image"))
        net = prepare_model(model, device, self.cfg.channels_last and device.type == "cuda")
        return net, int(source.get("iteration", 0))

    def train_batches(self, batch_size: int, start_iter: int) -> Iterable[ClassBatch]:
        train = self.train_data()
        sampler = ResumableBatchSampler(len(train), batch_size, self.cfg.seed, dist.get_rank(),
                                        dist.get_world_size(), start_iter)  # fmt: skip
        loader = _train_loader(self.cfg, train, self.mean(), sampler)
        return skip_bad_images(loader, BadImagePolicy(self.cfg.data.skip_bad_images, len(train)))

    def step(self, model: nn.Module, batch: ClassBatch) -> dict[str, Tensor]:
        assert self._step is not None, "build_model sets up the step"
        return self._step(model, batch)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        views = _views(self.cfg, self.mean())
        batch, amp = per_process_batch(self.cfg.solver), amp_dtype(self.cfg.solver, device)
        return evaluate(model, self.test_data(), views, device, batch,
                        self.cfg.data.num_workers, amp)  # fmt: skip

    def headline(self, results: dict[str, Any]) -> dict[str, float]:
        """Top-1 / top-5 error of the first test mode (``center`` unless changed)."""
        first = next((v for v in results.values() if isinstance(v, dict)), None)
        if first is None:
            return {}
        return {"top1_error": first["top1_error"], "top5_error": first["top5_error"]}

    def meta(self) -> dict[str, Any]:
        train = self.train_data()
        meta: dict[str, Any] = {
            "input": input_spec(self.cfg, self.mean()).to_dict(),
            "class_names": list(train.classes),
        }
        if train.descriptions:  # e.g. Tiny ImageNet's words.txt: wnid -> words
            meta["class_descriptions"] = [train.descriptions.get(c, "") for c in train.classes]
        return meta

    def save_final(self, out: Path, model: nn.Module, iteration: int) -> None:
        """model_final.pth (classifier) and backbone.pth (no final classifier), atomically."""
        state = {k: v.detach().cpu() for k, v in dist.unwrap(model).state_dict().items()}
        meta = self.meta()
        final: dict[str, Any] = {"model": state, "iteration": iteration, "meta": meta}
        final["classes"] = meta["class_names"]
        if self.cfg.input.per_pixel_mean:
            final["pixel_mean_image"] = torch.from_numpy(self.mean())
        atomic_torch_save(final, out / "model_final.pth")
        prefix = getattr(dist.unwrap(model), "classifier", "fc") + "."
        features = {k: v for k, v in state.items() if not k.startswith(prefix)}
        atomic_torch_save({"model": features, "meta": meta}, out / "backbone.pth")


def pretrain(cfg: PretrainConfig, resume: bool = False, restart: bool = False) -> dict[str, Any]:
    """Train the classifier of ``cfg``; see ``engine.run.run_training``."""
    return run_training(ClassificationTask(cfg), resume, restart)


def evaluate_weights(cfg: PretrainConfig, weights: str) -> dict[str, Any]:
    """``--eval-only``: test errors of a weights file (ours, or torchvision's / MSRA's).

    torchvision's ImageNet models expect RGB normalised with its std: set
    ``input.pixel_std`` to [58.395, 57.12, 57.375] for them.
    """
    return evaluate_checkpoint(ClassificationTask(cfg), weights)


def skip_bad_images(batches: Iterable[ClassBatch], policy: BadImagePolicy) -> Iterator[ClassBatch]:
    """Apply the bad-image policy to each batch's unreadable files, then pass it on."""
    for batch in batches:
        for bad in batch.bad:
            policy.report(bad.path, bad.reason)
        yield batch


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


def _check_views(cfg: PretrainConfig) -> None:
    inp = cfg.input
    if inp.test_resize < inp.crop_size and {"center", "10crop"} & set(inp.test_modes):
        raise UserError(
            f"input.test_resize ({inp.test_resize}) is smaller than input.crop_size "
            f"({inp.crop_size})"
        )


def _views(cfg: PretrainConfig, mean: np.ndarray) -> dict[str, ViewTransform]:
    inp = cfg.input
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


def _train_loader(
    cfg: PretrainConfig, train: ClassificationData, mean: np.ndarray, sampler: ResumableBatchSampler
) -> DataLoader[Any]:
    inp = cfg.input
    transform = train_transform(
        inp.crop_size, inp.scale_range, inp.pad, inp.flip_prob, inp.lighting_std, mean,
        inp.pixel_std,
    )  # fmt: skip
    return StopSafeLoader(
        TrainDataset(train, transform),
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_train,
        pin_memory=torch.cuda.is_available() and cfg.device != "cpu",
        # its own generator: creating the loader must not draw from the global RNG, or a
        # resumed run's random streams would drift from an uninterrupted run's
        generator=torch.Generator().manual_seed(cfg.seed),
    )
