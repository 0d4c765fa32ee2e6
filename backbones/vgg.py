"""VGG-16/19 (Simonyan & Zisserman 2014), the paper's detection baseline, in torchvision's layout.

`features` is torchvision's nn.Sequential with the same indices (conv, [norm], ReLU, ..., max
pool), so torchvision state dicts load 1:1 there; torchvision's `classifier.0/3` are our
`fc67.0/3` (fc6, fc7: Faster R-CNN's RoI head) and `classifier.6` is `fc8`.

Features conv1..conv5 are the outputs of each block's last ReLU *before* its max pool, so
conv5 (= conv5_3) has stride 16, as Faster R-CNN uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import Tensor, nn

from backbones.fused import conv_relu
from backbones.layers import Backbone, check_positive, kaiming_init, make_norm

# conv widths (multiples of base_width) per block, torchvision's configs "D" and "E"
CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    16: ((1, 1), (2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8)),
    19: ((1, 1), (2, 2), (4, 4, 4, 4), (8, 8, 8, 8), (8, 8, 8, 8)),
}


class ConvReLU(NamedTuple):
    """One conv [+ norm] + ReLU of `Features`, run as one `conv_relu`."""

    conv: nn.Conv2d
    norm: nn.Module | None
    relu: nn.Module

    def __call__(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W)."""
        return conv_relu(self.conv, x, self.norm, self.relu)


def conv_relu_steps(layers: Sequence[nn.Module]) -> list[ConvReLU | nn.Module]:
    """``layers`` with each conv, [norm,] ReLU run grouped into a `ConvReLU` (max pools and
    anything else stay as they are)."""
    steps: list[ConvReLU | nn.Module] = []
    i = 0
    while i < len(layers):
        run = layers[i : i + 3]
        relu_at = next((k for k, m in enumerate(run) if isinstance(m, nn.ReLU)), 0)
        if isinstance(run[0], nn.Conv2d) and relu_at in (1, 2):
            steps.append(ConvReLU(run[0], run[1] if relu_at == 2 else None, run[relu_at]))
            i += relu_at + 1
        else:
            steps.append(layers[i])
            i += 1
    return steps


class Features(nn.Sequential):
    """torchvision's ``features`` Sequential (same indices, same keys), each conv [+ norm] +
    ReLU run as one `conv_relu` (a single fused call at CPU inference, `backbones.fused`).
    Its slices (the stages) are Features too."""

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) through the layers in order."""
        return run_layers(list(self), x)


def run_layers(layers: Sequence[nn.Module], x: Tensor) -> Tensor:
    """(N, C, H, W) through ``layers`` in order, each conv [+ norm] + ReLU as one `conv_relu`."""
    for step in conv_relu_steps(layers):
        x = step(x)
    return x


def make_features(
    blocks: Sequence[Sequence[int]], base_width: int, norm: str | None
) -> tuple[nn.Sequential, list[int]]:
    """torchvision's `features`: per block, (conv 3x3 [+ norm] + ReLU) x k, then max pool 2x2.

    Returns:
        (features, pool_indices): pool_indices[k] is the index of block k's max pool.
    """
    layers: list[nn.Module] = []
    pool_indices = []
    in_channels = 3
    for block in blocks:
        for multiple in block:
            out_channels = base_width * multiple
            layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
            if norm is not None:
                layers.append(make_norm(norm, out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        pool_indices.append(len(layers))
        layers.append(nn.MaxPool2d(2, stride=2))
    return Features(*layers), pool_indices


class VGG(Backbone):
    """VGG with features conv1..conv5 at strides 1, 2, 4, 8, 16.

    Args:
        blocks: conv widths per block as multiples of `base_width` (see `CONFIGS`).
        num_classes: width of `fc8`.
        norm: None (the original VGG) or "bn" / "frozen_bn" / "syncbn" after every conv.
        freeze_at: number of conv blocks (conv1..conv5) whose weights are frozen.
        base_width: conv1 channels (64 in the paper); fc6/fc7 get 64 * base_width
            (4096 at 64), so narrow test nets stay small.
    """

    classifier = "fc8"

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        *,
        num_classes: int = 1000,
        norm: str | None = None,
        freeze_at: int = 0,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, base_width=base_width)
        self.features, self.pool_indices = make_features(blocks, base_width, norm)
        self.out_channels = {f"conv{k + 1}": base_width * b[-1] for k, b in enumerate(blocks)}
        self.strides = {f"conv{k + 1}": 2**k for k in range(len(blocks))}
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        fc_width, last_channels = 64 * base_width, base_width * blocks[-1][-1]
        self.fc67 = nn.Sequential(
            nn.Linear(last_channels * 7 * 7, fc_width),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(fc_width, fc_width),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(),
        )
        self.fc8 = nn.Linear(fc_width, num_classes)
        kaiming_init(self, linear_std=0.01)
        self.freeze(freeze_at)

    def stages(self) -> list[nn.Module]:
        """Block k = (pool of block k-1) + convs of block k, as slices of `features`."""
        starts = [0, *self.pool_indices[:-1]]
        return [self.features[a:b] for a, b in zip(starts, self.pool_indices)]

    def conv_indices(self) -> dict[str, int]:
        """Caffe layer name ("conv1_1", ...) -> index of that conv in `features`."""
        names: dict[str, int] = {}
        block, j = 1, 0
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.MaxPool2d):
                block, j = block + 1, 0
            elif isinstance(layer, nn.Conv2d):
                j += 1
                names[f"conv{block}_{j}"] = i
        return names

    def forward_features(
        self, x: Tensor, out_features: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """Feature maps conv1..conv5 (last ReLU of each block, before its pool).

        Args:
            x: (N, 3, H, W) normalised images.
            out_features: names to return (default all); deeper blocks are not run.

        Returns:
            name -> (N, out_channels[name], H / stride, W / stride) (floored per pool).
        """
        wanted = self.wanted_features(out_features)
        layers, starts = list(self.features), [0, *self.pool_indices[:-1]]
        feats: dict[str, Tensor] = {}
        for name, start, end in zip(self.out_channels, starts, self.pool_indices):
            if len(feats) == len(wanted):
                break  # deeper blocks are not run
            # the installed layers themselves, not `stages()`'s slices: fx can trace these
            x = run_layers(layers[start:end], x)
            if name in wanted:
                feats[name] = x
        return feats

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        """pool5, 7x7 adaptive average pool, fc6, fc7, fc8: (N, C, h, w) -> (N, num_classes)."""
        x = self.features[self.pool_indices[-1]](feats["conv5"])  # pool5: stride 16 -> 32
        return self.fc8(self.fc67(self.avgpool(x).flatten(1)))


def _vgg_builder(depth: int) -> Callable[..., VGG]:
    def build(*, num_classes: int = 1000, freeze_at: int = 0, base_width: int = 64) -> VGG:
        return VGG(
            CONFIGS[depth], num_classes=num_classes, freeze_at=freeze_at, base_width=base_width
        )

    build.__name__ = build.__qualname__ = f"vgg{depth}"
    build.__doc__ = f"VGG-{depth} (no norm layers); see `VGG`."
    return build


def _vgg_bn_builder(depth: int) -> Callable[..., VGG]:
    def build(
        *, num_classes: int = 1000, norm: str = "bn", freeze_at: int = 0, base_width: int = 64
    ) -> VGG:
        return VGG(
            CONFIGS[depth],
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            base_width=base_width,
        )

    build.__name__ = build.__qualname__ = f"vgg{depth}_bn"
    build.__doc__ = f"VGG-{depth} with a norm after every conv; see `VGG`."
    return build


VGGS: dict[str, Callable[..., VGG]] = {
    "vgg16": _vgg_builder(16),
    "vgg19": _vgg_builder(19),
    "vgg16_bn": _vgg_bn_builder(16),
    "vgg19_bn": _vgg_bn_builder(19),
}
