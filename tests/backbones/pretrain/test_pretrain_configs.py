"""Every configs/pretrain/*.yaml loads, builds its network and carries the paper's recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones.build import build_from_config
from backbones.pretrain.config import load_config as load_pretrain_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "pretrain"
RUNS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("_"))
PAPER_RUNS = [
    *(f"resnet{d}_imagenet" for d in (18, 34, 50, 101, 152)),
    "plain18_imagenet",
    "plain34_imagenet",
    "vgg16_imagenet",
    *(f"resnet34_imagenet_option{o}" for o in "abc"),
    *(f"resnet{d}_cifar10" for d in (20, 32, 44, 56, 110, 1202)),
    *(f"plain{d}_cifar10" for d in (20, 32, 44, 56, 110)),
]


def test_every_paper_run_has_a_config() -> None:
    names = {p.stem for p in RUNS}
    assert set(PAPER_RUNS) <= names
    assert names - set(PAPER_RUNS) == {"shapes_demo", "resnet18_w16_cifar10jpg"}


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_config_loads_and_builds(path: Path) -> None:
    cfg = load_pretrain_config(path)
    assert cfg.output_dir.endswith(path.stem)
    with torch.device("meta"):  # no memory for VGG-16's 138M parameters
        net = build_from_config(cfg.model.backbone, cfg.model.num_classes)
    assert getattr(net, net.classifier).out_features == cfg.model.num_classes
    s = cfg.solver
    if path.stem.endswith("_cifar10"):
        assert (s.ims_per_batch, s.base_lr, s.steps, s.max_iter) == (
            128,
            0.1,
            [32000, 48000],
            64000,
        )
        assert cfg.input.pad == 4 and cfg.input.per_pixel_mean and cfg.model.num_classes == 10
        assert cfg.model.backbone.base_width == 16
    elif path.stem.endswith("_imagenet") or "_option" in path.stem:
        assert s.ims_per_batch == 256 and s.momentum == 0.9 and cfg.model.num_classes == 1000
        assert cfg.input.scale_range[0] == 256 and cfg.input.lighting_std == 0.1
        assert "10crop" in cfg.input.test_modes


def test_recipes_that_differ() -> None:
    r110 = load_pretrain_config(CONFIGS / "resnet110_cifar10.yaml").solver
    assert (r110.warmup_method, r110.base_lr * r110.warmup_factor, r110.warmup_error) == (
        "until_error",
        pytest.approx(0.01),
        0.8,
    )
    assert load_pretrain_config(CONFIGS / "resnet56_cifar10.yaml").model.backbone.shortcut == "A"
    r101 = load_pretrain_config(CONFIGS / "resnet101_imagenet.yaml")
    assert r101.model.backbone.stride_in_1x1 and r101.solver.steps == [150000, 300000, 450000]
    assert r101.solver.max_iter == 600000 and r101.solver.weight_decay == 1e-4
    options = [load_pretrain_config(CONFIGS / f"resnet34_imagenet_option{o}.yaml") for o in "abc"]
    assert [c.model.backbone.shortcut for c in options] == ["A", "B", "C"]
    vgg = load_pretrain_config(CONFIGS / "vgg16_imagenet.yaml").solver
    assert (vgg.base_lr, vgg.weight_decay) == (0.01, 0.0005)
