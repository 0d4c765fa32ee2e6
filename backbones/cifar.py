"""CIFAR-10 ResNets and plain nets (He et al. 2015, Sec. 4.2): 6n+2 weighted layers.

A 3x3 conv (16 channels), then three stages of n basic blocks with 16, 32, 64 filters on
32x32, 16x16, 8x8 maps, global average pool and a 10-way `fc`. Shortcuts are option A
(identity + zero padding), so a ResNet has exactly the parameters of its plain twin.
ResNet-20/32/44/56/110/1202 are n = 3/5/7/9/18/200.
pytorch_resnet_cifar10's trained weights load into them: `load_weights` (format "cifar").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from backbones.layers import Backbone, check_positive, kaiming_init, make_norm
from backbones.resnet import BasicBlock, check_shortcut, make_stage


class CifarResNet(Backbone):
    """6n+2-layer CIFAR net; features c2, c3, c4 at strides 1, 2, 4.

    Args:
        n: blocks per stage (depth 6n + 2).
        num_classes: width of `fc`.
        norm: "bn", "frozen_bn" or "syncbn".
        freeze_at: 0 trains everything, 1 freezes the stem, k freezes stem + res2..res{k}.
        shortcut: "A" (the paper's), "B", "C", or None for the plain net.
        base_width: filters of the first stage (16 in the paper); then 2x and 4x.
    """

    stem: nn.Sequential
    res2: nn.Sequential
    res3: nn.Sequential
    res4: nn.Sequential

    def __init__(
        self,
        n: int,
        *,
        num_classes: int = 10,
        norm: str = "bn",
        freeze_at: int = 0,
        shortcut: str | None = "A",
        base_width: int = 16,
    ) -> None:
        super().__init__()
        check_positive(n=n, num_classes=num_classes, base_width=base_width)
        check_shortcut(shortcut)
        self.stem = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, base_width, 3, padding=1, bias=False),
                bn1=make_norm(norm, base_width),
                relu=nn.ReLU(inplace=True),
            )
        )
        in_channels, self.out_channels, self.strides = base_width, {}, {}
        for i in range(3):
            width, stride = base_width * 2**i, 1 if i == 0 else 2
            self.add_module(
                f"res{i + 2}", make_stage(BasicBlock, in_channels, width, n, stride, norm, shortcut)
            )
            in_channels = width
            self.out_channels[f"c{i + 2}"], self.strides[f"c{i + 2}"] = width, 2**i
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        kaiming_init(self)
        self.freeze(freeze_at)

    def stages(self) -> list[nn.Module]:
        """[stem, res2, res3, res4]."""
        return [self.stem, self.res2, self.res3, self.res4]

    def forward_features(
        self, x: Tensor, out_features: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """Feature maps c2, c3, c4 (strides 1, 2, 4).

        Args:
            x: (N, 3, H, W) normalised images (32x32 for CIFAR).
            out_features: names to return (default all); deeper stages are not run.

        Returns:
            name -> (N, out_channels[name], ceil(H / stride), ceil(W / stride)).
        """
        return super().forward_features(x, out_features)

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        """Global average pool of c4 -> `fc`: (N, 4 * base_width, h, w) -> (N, num_classes)."""
        return self.fc(self.avgpool(feats["c4"]).flatten(1))


def cifar_resnet(
    n: int,
    *,
    num_classes: int = 10,
    norm: str = "bn",
    freeze_at: int = 0,
    shortcut: str | None = "A",
    base_width: int = 16,
) -> CifarResNet:
    """A 6n+2-layer CIFAR net for any n; `shortcut=None` builds the plain twin."""
    return CifarResNet(
        n,
        num_classes=num_classes,
        norm=norm,
        freeze_at=freeze_at,
        shortcut=shortcut,
        base_width=base_width,
    )


def _resnet_builder(depth: int) -> Callable[..., CifarResNet]:
    n = (depth - 2) // 6

    def build(
        *,
        num_classes: int = 10,
        norm: str = "bn",
        freeze_at: int = 0,
        shortcut: str = "A",
        base_width: int = 16,
    ) -> CifarResNet:
        return CifarResNet(
            n,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            shortcut=shortcut,
            base_width=base_width,
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (n={n}, option A); see `CifarResNet`."
    return build


def _plain_builder(depth: int) -> Callable[..., CifarResNet]:
    n = (depth - 2) // 6

    def build(
        *, num_classes: int = 10, norm: str = "bn", freeze_at: int = 0, base_width: int = 16
    ) -> CifarResNet:
        return CifarResNet(
            n,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            shortcut=None,
            base_width=base_width,
        )

    build.__name__ = build.__qualname__ = f"plain{depth}"
    build.__doc__ = f"CIFAR plain-{depth} (n={n}, no shortcuts); see `CifarResNet`."
    return build


CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)

CIFAR_NETS: dict[str, Callable[..., CifarResNet]] = {
    **{f"resnet{depth}": _resnet_builder(depth) for depth in CIFAR_DEPTHS},
    **{f"plain{depth}": _plain_builder(depth) for depth in CIFAR_DEPTHS},
}
