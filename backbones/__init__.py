"""Classification backbones: ImageNet ResNets / plain nets, CIFAR nets, VGG.

`build_backbone(name, **kwargs)` builds one by name from `BACKBONES`; `load_weights` fills it
from our, torchvision's, MSRA's or pytorch_resnet_cifar10's checkpoints; `count_params` /
`count_macs` measure it.
"""

from __future__ import annotations

from backbones.build import BACKBONES, backbone_arguments, build_backbone
from backbones.cifar import CifarResNet, cifar_resnet
from backbones.complexity import count_macs, count_params
from backbones.layers import Backbone, FrozenBatchNorm2d, convert_to_frozen_bn, fold_frozen_bn
from backbones.resnet import ResNet
from backbones.vgg import VGG
from backbones.weights import LoadReport, load_weights
from engine.errors import UserError

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
