"""Building blocks shared by every backbone: norm layers, BN folding, the Backbone base class.

`FrozenBatchNorm2d` is the fixed affine the paper uses when fine-tuning for detection ("BN
frozen, ImageNet statistics as a fixed affine"); `fold_frozen_bn` merges a norm layer into the
convolution before it for inference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from engine.errors import UserError


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine: ``y = (x - mean) / sqrt(var + eps) * w + b``.

    Everything is a buffer, so nothing is trained and `model.parameters()` skips it. The
    state-dict keys are BatchNorm2d's (weight, bias, running_mean, running_var), so BN
    checkpoints load directly; their `num_batches_tracked` is dropped.

    Args:
        num_features: number of channels C.
        eps: added to the variance, as in BatchNorm2d.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        # 1 - eps makes a freshly built layer the identity
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """The equivalent per-channel affine: returns (scale (C,), shift (C,))."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W), in x's dtype and memory format.

        One fused pass (addcmul), not a multiply then an add: half the memory traffic, which
        is most of this layer's cost (1.5 s of a 6.6 s R50-FPN training step on CPU).
        """
        scale, shift = self.scale_and_shift()
        scale, shift = scale.view(1, -1, 1, 1).to(x.dtype), shift.view(1, -1, 1, 1).to(x.dtype)
        return torch.addcmul(shift, x, scale)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # BatchNorm2d checkpoints carry a step counter that a frozen layer has no use for
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "frozen_bn": FrozenBatchNorm2d,
    "syncbn": nn.SyncBatchNorm,
}

BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


def make_norm(norm: str, channels: int) -> nn.Module:
    """Build the norm layer named `norm` ("bn", "frozen_bn" or "syncbn") for `channels`."""
    if norm not in NORMS:
        raise UserError(f"norm {norm!r} is not known; expected one of {', '.join(NORMS)}")
    return NORMS[norm](channels)


def convert_to_frozen_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d / SyncBatchNorm in `module` by a FrozenBatchNorm2d, in place.

    The statistics and affine are copied, so in eval mode the outputs do not change.

    Returns:
        `module`, or a new FrozenBatchNorm2d when `module` itself is a batch norm.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.running_mean is not None and module.running_var is not None:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen.to(module.running_mean.device if module.running_mean is not None else "cpu")
    for name, child in module.named_children():
        new_child = convert_to_frozen_bn(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def _norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) of a BatchNorm2d / SyncBatchNorm / FrozenBatchNorm2d in eval."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    assert isinstance(norm, nn.modules.batchnorm._BatchNorm)
    assert norm.running_mean is not None and norm.running_var is not None
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    return scale, shift


@torch.no_grad()
def _fold_into_conv(conv: nn.Conv2d, norm: nn.Module) -> None:
    scale, shift = _norm_affine(norm)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))  # (C_out, C_in, k, k) scaled per output channel
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone())


def fold_frozen_bn(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a Conv2d into that conv, in place.

    "Directly follows" means: registered right after the conv in the same parent module. Every
    backbone in this package registers its layers in the order data flows through them, so this
    finds conv1/bn1 pairs in blocks and Conv/BN pairs in VGG's `features`. The folded norm becomes
    an `nn.Identity`. Uses running statistics: for inference only (eval-mode outputs change by
    float rounding only).

    Returns:
        `model`, modified in place.
    """
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, prev), (name, child) in itertools.pairwise(children):
            if isinstance(prev, nn.Conv2d) and isinstance(child, BATCH_NORMS):
                _fold_into_conv(prev, child)
                setattr(parent, name, nn.Identity())
    return model


class Backbone(nn.Module):
    """What every classification network here offers to detection and pretraining.

    Subclasses set `out_channels` and `strides` (feature name -> value, shallow to deep),
    `classifier` (the name of the final linear layer, skipped by `skip_classifier` loads) and
    implement `stages()` (the frozen-in-order modules, stem first) plus the two forwards.
    """

    out_channels: dict[str, int]
    strides: dict[str, int]
    classifier: str = "fc"

    def stages(self) -> Sequence[nn.Module]:
        """Modules in the order `freeze_at` freezes them (stem first)."""
        raise NotImplementedError

    def forward_features(
        self, x: Tensor, out_features: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """Run `stages()` in order and keep the named outputs asked for.

        The last len(out_channels) stages produce the named features (shallow to deep); an
        earlier stage (a stem) is unnamed. Stages deeper than the deepest wanted feature are
        not run.

        Args:
            x: (N, 3, H, W) normalised images.
            out_features: feature names to return; None returns all.

        Returns:
            name -> (N, out_channels[name], ~H / strides[name], ~W / strides[name]).
        """
        wanted = self.wanted_features(out_features)
        stages = self.stages()
        names: list[str | None] = [None] * (len(stages) - len(self.out_channels))
        names += list(self.out_channels)
        feats: dict[str, Tensor] = {}
        if not wanted:
            return feats
        for name, stage in zip(names, stages):
            x = stage(x)
            if name in wanted:
                feats[name] = x
                if len(feats) == len(wanted):
                    break
        return feats

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        """Feature maps -> logits (N, num_classes)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) images -> (N, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients to the first `freeze_at` stages (Detectron2's meaning; 0 = none).

        Only `requires_grad` changes: a frozen "bn" still updates its statistics in train
        mode; build with norm="frozen_bn" to fix those too.
        """
        stages = self.stages()
        if not 0 <= freeze_at <= len(stages):
            raise UserError(
                f"freeze_at={freeze_at} is out of range; expected 0..{len(stages)} "
                f"for {type(self).__name__}"
            )
        for stage in stages[:freeze_at]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def fold_bn(self) -> Backbone:
        """Fold every norm into the conv before it (inference only); returns self."""
        fold_frozen_bn(self)
        return self

    def wanted_features(self, out_features: Sequence[str] | None) -> list[str]:
        """Validate `out_features` (None = all) and return them in shallow-to-deep order."""
        if out_features is None:
            return list(self.out_channels)
        unknown = [name for name in out_features if name not in self.out_channels]
        if unknown:
            raise UserError(
                f"unknown feature(s) {', '.join(map(repr, unknown))} for "
                f"{type(self).__name__}; expected names from {', '.join(self.out_channels)}"
            )
        return [name for name in self.out_channels if name in out_features]


def kaiming_init(module: nn.Module, linear_std: float | None = None) -> None:
    """He init: kaiming normal (fan_out) convs, norm weight 1 / bias 0, zero conv biases.

    Args:
        module: initialised in place, recursively.
        linear_std: when given, Linear weights ~ N(0, std) with zero bias (VGG); otherwise
            Linear layers keep PyTorch's default init (torchvision's ResNet does the same).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def check_positive(**values: Any) -> None:
    """Raise UserError for any keyword whose value is not a positive int."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{key}={value!r} is invalid; expected a positive integer")
