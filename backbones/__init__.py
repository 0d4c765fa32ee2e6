"""Classification backbones: ImageNet ResNets / plain nets, CIFAR nets, VGG.

`build_backbone(name, **kwargs)` builds one by name from `BACKBONES`; `load_weights` fills it
from our, torchvision's, MSRA's or pytorch_resnet_cifar10's checkpoints; `count_params` /
`count_macs` measure it.
"""

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {
    "backbones.build": ("BACKBONES", "backbone_arguments", "build_backbone"),
    "backbones.cifar": ("CifarResNet", "cifar_resnet"),
    "backbones.complexity": ("count_macs", "count_params"),
    "backbones.layers": ("Backbone", "FrozenBatchNorm2d", "convert_to_frozen_bn", "fold_frozen_bn"),
    "backbones.resnet": ("ResNet",),
    "backbones.vgg": ("VGG",),
    "backbones.weights": ("LoadReport", "load_weights"),
    "engine.errors": ("UserError",),
}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
