"""ImageNet ResNets (He et al. 2015, Table 1) and their plain twins.

Layout: `stem` (conv1 7x7/2 + norm + ReLU + max pool 3x3/2), `res2`..`res5` (nn.Sequential of
blocks; res5 runs on its own as the C4 detector's per-RoI head), global average pool, `fc`.

Shortcut options (paper, Sec. 4.1 "Identity vs. Projection Shortcuts"):
  A: identity; where the dimensions grow, subsample by the stride and zero-pad the new
     channels (parameter-free).
  B: identity, with a 1x1 projection (+ norm) only where dimensions change (the default; what
     torchvision and Detectron2 ship).
  C: a projection on every block.
`stride_in_1x1=True` puts a bottleneck's stride on its first 1x1 conv (the paper's / MSRA's
Caffe models, Detectron's R-50.pkl); False puts it on the 3x3 (torchvision, "ResNet v1.5"),
which costs 4.09 instead of 3.86 GMACs for ResNet-50 and is slightly more accurate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from backbones.fused import conv_add, conv_norm, conv_relu
from backbones.layers import Backbone, FrozenBatchNorm2d, check_positive, kaiming_init, make_norm
from engine.errors import UserError

SHORTCUTS = ("A", "B", "C")


class PadShortcut(nn.Module):
    """Option A: subsample by `stride`, then zero-pad `extra_channels` new channels.

    The zeros go half before and half after the input's channels, as in
    pytorch_resnet_cifar10 (`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`),
    the implementation whose trained CIFAR weights people share: with the same weights, a
    shortcut that put all the zeros after the input would add the identity to other channels
    and compute a different function (chance-level accuracy with those checkpoints).

    Args:
        stride: spatial subsampling (takes pixels 0, stride, 2*stride, ...).
        extra_channels: zero channels added, ``extra // 2`` before the input's, the rest after.
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C + extra, ceil(H / s), ceil(W / s))."""
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra_channels // 2
        # F.pad pads the last dims first: (W left, W right, H top, H bottom, C before, C after)
        return F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class Projection(nn.Module):
    """Options B/C: 1x1 conv with stride, then norm (torchvision's `downsample`)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.bn = make_norm(norm, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / s, W / s)."""
        return conv_norm(self.conv, x, self.bn)


def make_shortcut(
    shortcut: str | None, in_channels: int, out_channels: int, stride: int, norm: str
) -> nn.Module | None:
    """The shortcut of one block; None for plain nets (no shortcut at all)."""
    if shortcut is None:
        return None
    same_shape = in_channels == out_channels and stride == 1
    if shortcut == "C" or (shortcut == "B" and not same_shape):
        return Projection(in_channels, out_channels, stride, norm)
    if same_shape:
        return nn.Identity()
    return PadShortcut(stride, out_channels - in_channels)


class Stem(nn.Sequential):
    """conv1 (7x7/2) + norm + ReLU + 3x3/2 max pool, the ReLU fused into the conv at CPU
    inference (`backbones.fused`). A Sequential, so its keys stay ``stem.conv1.*`` /
    ``stem.bn1.*`` and freezing takes it whole."""

    conv1: nn.Conv2d
    bn1: nn.Module
    relu: nn.ReLU
    maxpool: nn.MaxPool2d

    def __init__(self, conv1: nn.Conv2d, bn1: nn.Module) -> None:
        maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        relu = nn.ReLU(inplace=True)
        super().__init__(OrderedDict(conv1=conv1, bn1=bn1, relu=relu, maxpool=maxpool))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, C, H / 4, W / 4)."""
        return self.maxpool(conv_relu(self.conv1, x, self.bn1, self.relu))


def residual_tail(
    conv: nn.Conv2d, out: Tensor, norm: nn.Module, shortcut: nn.Module, x: Tensor
) -> Tensor:
    """A block's last step, ``relu(norm(conv(out)) + shortcut(x))``, as one fused call at CPU
    inference (`backbones.fused`); a projection's or a padding's output is scratch the add
    may overwrite, the block's input ``x`` (an identity shortcut) is not."""
    identity = shortcut(x)
    return conv_add(conv, out, identity, norm, relu=True, overwrite=identity is not x)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets); stride on the first.

    Args:
        in_channels: input channels.
        width: channels of both convs (= output channels).
        stride: 1 or 2.
        norm: norm layer name (see `layers.NORMS`).
        shortcut: "A", "B", "C" or None (plain: no shortcut).
        stride_in_1x1: ignored (a basic block has no 1x1); accepted so every block builds alike.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        norm: str,
        shortcut: str | None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.shortcut = make_shortcut(shortcut, in_channels, width, stride, norm)

    def last_norm(self) -> _BatchNorm | FrozenBatchNorm2d:
        """The norm whose gamma `zero_init_residual` zeroes."""
        assert isinstance(self.bn2, (_BatchNorm, FrozenBatchNorm2d))
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, width, H / stride, W / stride)."""
        out = conv_relu(self.conv1, x, self.bn1)
        if self.shortcut is None:
            return conv_relu(self.conv2, out, self.bn2)
        return residual_tail(self.conv2, out, self.bn2, self.shortcut, x)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) (ResNet-50/101/152).

    Args:
        in_channels: input channels.
        width: channels of the 1x1 and 3x3 convs; the output has 4 * width.
        stride: 1 or 2; on conv1 when `stride_in_1x1` (MSRA), else on conv2 (torchvision).
        norm: norm layer name.
        shortcut: "A", "B", "C" or None (plain).
        stride_in_1x1: where the stride goes.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        norm: str,
        shortcut: str | None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride_3x3, padding=1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = make_norm(norm, out_channels)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm)

    def last_norm(self) -> _BatchNorm | FrozenBatchNorm2d:
        """The norm whose gamma `zero_init_residual` zeroes."""
        assert isinstance(self.bn3, (_BatchNorm, FrozenBatchNorm2d))
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, 4 * width, H / stride, W / stride)."""
        out = conv_relu(self.conv1, x, self.bn1)
        out = conv_relu(self.conv2, out, self.bn2)
        if self.shortcut is None:
            return conv_relu(self.conv3, out, self.bn3)
        return residual_tail(self.conv3, out, self.bn3, self.shortcut, x)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block,
    in_channels: int,
    width: int,
    num_blocks: int,
    stride: int,
    norm: str,
    shortcut: str | None,
    stride_in_1x1: bool = False,
) -> nn.Sequential:
    """`num_blocks` blocks; the first one changes stride and channels."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(
            block(in_channels, width, stride if i == 0 else 1, norm, shortcut, stride_in_1x1)
        )
        in_channels = width * block.expansion
    return nn.Sequential(*blocks)


def check_shortcut(shortcut: str | None) -> None:
    """Raise UserError unless `shortcut` is "A", "B", "C" or None (plain)."""
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise UserError(f"shortcut={shortcut!r} is not known; expected one of A, B, C")


def zero_init_last_norms(model: nn.Module) -> None:
    """Zero the last norm's gamma in every residual block, so each starts as the identity."""
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            nn.init.zeros_(m.last_norm().weight)


class ResNet(Backbone):
    """ImageNet ResNet / plain net; features c2..c5 at strides 4, 8, 16, 32.

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage res2..res5, e.g. [3, 4, 6, 3].
        num_classes: width of `fc`.
        norm: "bn", "frozen_bn" or "syncbn".
        freeze_at: 0 trains everything, 1 freezes the stem, k freezes stem + res2..res{k}.
        stride_in_1x1: stride on a bottleneck's first 1x1 (MSRA) instead of its 3x3.
        shortcut: "A", "B", "C", or None for the plain twin.
        base_width: stem channels and res2 width (64 in the paper; smaller for tests).
        zero_init_residual: start each block's last norm gamma at 0 (off in the paper).
    """

    stem: nn.Sequential
    res2: nn.Sequential
    res3: nn.Sequential
    res4: nn.Sequential
    res5: nn.Sequential  # self-contained: the C4 detector runs it per RoI

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        norm: str = "bn",
        freeze_at: int = 0,
        stride_in_1x1: bool = False,
        shortcut: str | None = "B",
        base_width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, base_width=base_width)
        check_shortcut(shortcut)
        conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.stem = Stem(conv1, make_norm(norm, base_width))
        in_channels, self.out_channels, self.strides = base_width, {}, {}
        for i, num_blocks in enumerate(layers):
            width, stride = base_width * 2**i, 1 if i == 0 else 2
            stage = make_stage(
                block, in_channels, width, num_blocks, stride, norm, shortcut, stride_in_1x1
            )
            self.add_module(f"res{i + 2}", stage)
            in_channels = width * block.expansion
            self.out_channels[f"c{i + 2}"], self.strides[f"c{i + 2}"] = in_channels, 4 * 2**i
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        kaiming_init(self)
        if zero_init_residual:
            zero_init_last_norms(self)
        self.freeze(freeze_at)

    def stages(self) -> list[nn.Module]:
        """[stem, res2, res3, res4, res5]."""
        return [self.stem, *(getattr(self, f"res{i + 2}") for i in range(len(self.strides)))]

    def forward_features(
        self, x: Tensor, out_features: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """Feature maps c2..c5 (strides 4, 8, 16, 32).

        Args:
            x: (N, 3, H, W) normalised images.
            out_features: names to return (default all); stages deeper than the deepest one
                asked for are not run (the C4 detector asks for ("c4",)).

        Returns:
            name -> (N, out_channels[name], ceil(H / stride), ceil(W / stride)).
        """
        return super().forward_features(x, out_features)

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        """Global average pool of c5 -> `fc`: (N, C5, h, w) -> (N, num_classes)."""
        return self.fc(self.avgpool(feats["c5"]).flatten(1))


DEPTHS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _resnet_builder(depth: int) -> Callable[..., ResNet]:
    block, layers = DEPTHS[depth]

    def build(
        *,
        num_classes: int = 1000,
        norm: str = "bn",
        freeze_at: int = 0,
        stride_in_1x1: bool = False,
        shortcut: str = "B",
        base_width: int = 64,
        zero_init_residual: bool = False,
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            stride_in_1x1=stride_in_1x1,
            shortcut=shortcut,
            base_width=base_width,
            zero_init_residual=zero_init_residual,
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} ({block.__name__} x {list(layers)}); see `ResNet`."
    return build


def _plain_builder(depth: int) -> Callable[..., ResNet]:
    block, layers = DEPTHS[depth]

    def build(
        *,
        num_classes: int = 1000,
        norm: str = "bn",
        freeze_at: int = 0,
        stride_in_1x1: bool = False,
        base_width: int = 64,
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            stride_in_1x1=stride_in_1x1,
            shortcut=None,
            base_width=base_width,
        )

    build.__name__ = build.__qualname__ = f"plain{depth}"
    build.__doc__ = f"Plain-{depth}: ResNet-{depth} without shortcuts; see `ResNet`."
    return build


RESNETS: dict[str, Callable[..., ResNet]] = {
    **{f"resnet{depth}": _resnet_builder(depth) for depth in DEPTHS},
    **{f"plain{depth}": _plain_builder(depth) for depth in DEPTHS},
}
