"""Name (or the ``model.backbone`` section) -> a network: ``BACKBONES`` and its builders.

``build_backbone(name, **kwargs)`` builds one by name; :func:`build_from_config` builds the
network a config's ``model.backbone`` describes, with one rule for the settings a network does
not have, shared by pretraining and detection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from backbones.cifar import CIFAR_NETS
from backbones.config import BackboneConfig
from backbones.layers import Backbone
from backbones.resnet import RESNETS
from backbones.vgg import VGGS
from engine.errors import UserError

# ImageNet nets first; CIFAR names (resnet20.., plain20..) do not clash with them
BACKBONES: dict[str, Callable[..., nn.Module]] = {**RESNETS, **VGGS, **CIFAR_NETS}

# the model.backbone settings a builder may take (beside num_classes)
SETTINGS = ("norm", "freeze_at", "stride_in_1x1", "shortcut", "base_width")


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
    accepted = backbone_arguments(name)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise UserError(
            f"backbone {name!r} does not take {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    model = BACKBONES[name](**kwargs)
    assert isinstance(model, Backbone)
    return model


def backbone_arguments(name: str) -> list[str]:
    """The keyword arguments `build_backbone(name, ...)` accepts."""
    return list(inspect.signature(BACKBONES[name]).parameters)


def build_from_config(backbone: BackboneConfig, num_classes: int) -> Backbone:
    """The network of a config's ``model.backbone`` with a ``num_classes``-way classifier
    (pretraining's; detection drops it), He-initialised (weights are the caller's).

    One rule for a setting the network does not have: ``norm`` of a net without norm layers
    (VGG-16) is left out whatever its value (there is nothing to normalise); any other
    (``shortcut`` of a plain net, ``stride_in_1x1`` of a VGG) is left out at its default and
    refused when changed.

    Raises:
        UserError: an unknown ``name``, or a changed setting the network does not have.
    """
    if backbone.name not in BACKBONES:
        raise UserError(
            f"model.backbone.name {backbone.name!r} is not known; expected one of "
            f"{', '.join(BACKBONES)}"
        )
    accepted, defaults = backbone_arguments(backbone.name), BackboneConfig()
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    for key in SETTINGS:
        value = getattr(backbone, key)
        if key in accepted:
            kwargs[key] = value
        elif key != "norm" and value != getattr(defaults, key):
            raise UserError(
                f"model.backbone.{key}={value!r} does not apply to {backbone.name}; it takes "
                f"{', '.join(accepted)}"
            )
    return build_backbone(backbone.name, **kwargs)
