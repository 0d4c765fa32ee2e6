"""The classification task's config schema: ``PretrainConfig`` and its sections.

Loading, ``--set`` overrides and every check are :mod:`engine.config`'s; ``model.backbone``
is the backbones' shared section, ``solver`` and the run-level keys are engine's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from backbones.config import BackboneConfig
from engine import config as engine_config
from engine.config import MAX_IMAGE_SIDE, RunConfig, SolverConfig, at_least, between, choices


@dataclass
class ClassDatasetConfig:
    format: str = field(  # imagefolder: <split>/<class>/*.jpg; cifar10; tinyimagenet as shipped
        default="imagefolder", metadata=choices("imagefolder", "cifar10", "tinyimagenet")
    )
    root: str = ""  # imagefolder: the folder holding the split folders; others: their folder
    splits: list[str] = field(  # imagefolder: sub-folders; cifar10: train/test; tiny: train/val
        default_factory=lambda: ["train"]
    )


@dataclass
class PretrainTestConfig:
    eval_period: int = field(  # evaluate every this many iterations (0: only at the end)
        default=0, metadata=at_least(0)
    )


@dataclass
class ClassifierConfig:
    num_classes: int = field(default=1000, metadata=at_least(1))  # classifier outputs
    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(name="resnet50", norm="bn", freeze_at=0)
    )


@dataclass
class PretrainDataConfig:
    train: ClassDatasetConfig = field(default_factory=ClassDatasetConfig)
    test: ClassDatasetConfig = field(default_factory=lambda: ClassDatasetConfig(splits=["val"]))
    num_workers: int = field(  # DataLoader worker processes per training process
        default=4, metadata=at_least(0)
    )
    skip_bad_images: bool = True  # a corrupt image is skipped with one warning (False: error)


@dataclass
class PretrainInputConfig:
    scale_range: list[int] = field(  # training: shorter side random in [low, high] (the paper)
        default_factory=lambda: [256, 480], metadata=between(1, MAX_IMAGE_SIDE)
    )
    crop_size: int = field(  # training crop (32 for CIFAR)
        default=224, metadata=between(1, MAX_IMAGE_SIDE)
    )
    pad: int = field(  # zero padding before the random crop (4 for CIFAR)
        default=0, metadata=between(0, MAX_IMAGE_SIDE)
    )
    flip_prob: float = field(default=0.5, metadata=between(0, 1))  # horizontal flip probability
    lighting_std: float = field(  # AlexNet PCA colour augmentation strength; 0 = off
        default=0.1, metadata=at_least(0)
    )
    pixel_mean: list[float] = field(  # RGB mean, 0..255 scale (CIFAR: per-pixel mean from data)
        default_factory=lambda: [123.675, 116.28, 103.53]
    )
    pixel_std: list[float] = field(  # RGB std, 0..255 scale (the paper: mean subtraction only)
        default_factory=lambda: [1.0, 1.0, 1.0]
    )
    per_pixel_mean: bool = False  # subtract the per-pixel training-set mean image (CIFAR)
    test_resize: int = field(  # centre/10-crop testing: shorter side before cropping
        default=256, metadata=between(1, MAX_IMAGE_SIDE)
    )
    test_modes: list[str] = field(  # center, 10crop, multiscale (fully-convolutional)
        default_factory=lambda: ["center"], metadata=choices("center", "10crop", "multiscale")
    )
    test_scales: list[int] = field(  # multiscale testing: shorter sides, scores averaged
        default_factory=lambda: [224, 256, 384, 480, 640], metadata=between(1, MAX_IMAGE_SIDE)
    )


@dataclass
class PretrainConfig(RunConfig):
    """A classification run (`resdet pretrain`)."""

    output_dir: str = "output/pretrain"  # where config.yaml, checkpoints and backbone.pth go
    channels_last: bool = True  # NHWC training images; on CUDA NHWC weights too (faster convs)
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    input: PretrainInputConfig = field(default_factory=PretrainInputConfig)
    solver: SolverConfig = field(
        default_factory=lambda: SolverConfig(
            base_lr=0.1,
            max_iter=600000,
            ims_per_batch=256,
            steps=[150000, 300000, 450000],
            warmup_iters=0,
            checkpoint_period=10000,
        )
    )
    test: PretrainTestConfig = field(default_factory=lambda: PretrainTestConfig())


def load_config(
    path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()
) -> PretrainConfig:
    """A classification config from YAML (or the defaults) and ``--set`` overrides, checked.

    Raises:
        UserError: unknown key, wrong type, bad choice, missing file or malformed YAML.
    """
    return engine_config.load_config(PretrainConfig, path, overrides)
