"""Classification backbones: ImageNet ResNets / plain nets, CIFAR nets, VGG.

`build_backbone(name, **kwargs)` builds one by name from `BACKBONES`; `load_weights` fills it
from our, torchvision's, MSRA's or pytorch_resnet_cifar10's checkpoints; `count_params` /
`count_macs` measure it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from backbones.cifar import CIFAR_NETS, CifarResNet, cifar_resnet
from backbones.complexity import count_macs, count_params
from backbones.layers import Backbone, FrozenBatchNorm2d, convert_to_frozen_bn, fold_frozen_bn
from backbones.resnet import RESNETS, ResNet
from backbones.vgg import VGG, VGGS
from backbones.weights import LoadReport, load_weights
from engine.errors import UserError

# ImageNet nets first; CIFAR names (resnet20.., plain20..) do not clash with them
BACKBONES: dict[str, Callable[..., nn.Module]] = {**RESNETS, **VGGS, **CIFAR_NETS}


def build_backbone(name: str, **kwargs: object) -> Backbone:
    """Build the backbone `name` with keyword arguments its builder accepts.

    Args:
        name: a key of BACKBONES, e.g. "resnet50", "plain34", "resnet110" (CIFAR), "vgg16".
        **kwargs: num_classes, norm ("bn" | "frozen_bn" | "syncbn"), freeze_at,
            stride_in_1x1, shortcut ("A" | "B" | "C"), base_width, zero_init_residual; each
            builder takes the subset that means something for it.

    Raises:
        UserError: unknown name, an argument the net does not take (e.g. `shortcut` for a
            plain net or VGG) or an invalid value.
    """
    if name not in BACKBONES:
        raise UserError(f"backbone {name!r} is not known; expected one of {', '.join(BACKBONES)}")
    builder = BACKBONES[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise UserError(
            f"backbone {name!r} does not take {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    model = builder(**kwargs)
    assert isinstance(model, Backbone)
    return model


def backbone_arguments(name: str) -> list[str]:
    """The keyword arguments `build_backbone(name, ...)` accepts."""
    return list(inspect.signature(BACKBONES[name]).parameters)


__all__ = [
    "BACKBONES",
    "VGG",
    "Backbone",
    "CifarResNet",
    "FrozenBatchNorm2d",
    "LoadReport",
    "ResNet",
    "UserError",
    "backbone_arguments",
    "build_backbone",
    "cifar_resnet",
    "convert_to_frozen_bn",
    "count_macs",
    "count_params",
    "fold_frozen_bn",
    "load_weights",
]
