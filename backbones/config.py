"""The ``model.backbone`` config section, shared by the classification and detection tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import choices


@dataclass
class BackboneConfig:
    name: str = "resnet50"  # a key of backbones.BACKBONES (resnet18..152, plain*, vgg16, ...)
    weights: str = (
        ""  # pretrained file (resdet, torchvision, MSRA, pytorch_resnet_cifar10); "" = He init
    )
    weights_format: str = field(  # how to read `weights`; auto detects from the keys
        default="auto", metadata=choices("auto", "resdet", "torchvision", "msra", "cifar")
    )
    weights_skip: list[str] = field(  # modules kept at init when `weights` loads, e.g. [fc67]
        default_factory=list
    )
    norm: str = field(  # norm layers; frozen_bn: fixed affine, needs `weights` (the paper's)
        default="frozen_bn", metadata=choices("bn", "frozen_bn", "syncbn")
    )
    freeze_at: int = 2  # 0 nothing frozen, 1 the stem, k the stem and the first k-1 stages
    stride_in_1x1: bool = False  # stride on a bottleneck's first 1x1 (paper/MSRA) not its 3x3
    shortcut: str = field(  # shortcut option: A zero-pad, B projection when shape changes, C all
        default="B", metadata=choices("A", "B", "C")
    )
    base_width: int = 64  # channels of the first stage (64 in the paper; narrower for tests)
