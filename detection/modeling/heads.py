"""Box heads (pooled RoI feature -> vector) and the Fast R-CNN predictor (vector -> outputs).

- `Res5Head`: the paper's ResNet C4 layout (appendix A): conv5_x runs on every 14x14 RoI
  feature (its first block has stride 2), then global average pooling -> 2048-d.
- `VGGHead`: fc6 and fc7 of the ImageNet VGG-16 on a 7x7 RoIPool feature.
- `TwoFCHead`: FPN's two 1024-d fully connected layers on a 7x7 RoIAlign feature.

Class layout: index 0 is background, real class c (0-based) is index c + 1 (torchvision and
py-faster-rcnn); box deltas are class-specific with 4 (K + 1) outputs, the background's unused.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Res5Head(nn.Module):
    """conv5_x of a ResNet per RoI, then global average pooling.

    Args:
        res5: the backbone's res5 stage (keeps its norm layers and freezing).
        out_channels: its output channels (2048 for ResNet-50/101).
    """

    def __init__(self, res5: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.res5 = res5
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(R, C4, S, S) -> (R, C5)."""
        return self.res5(x).mean(dim=(2, 3))


class VGGHead(nn.Module):
    """VGG's fc6, fc7 (with ReLU and dropout) on the flattened RoI feature.

    Args:
        fc67: the backbone's `fc67` Sequential (ImageNet-initialised).
        out_channels: fc7's width (4096 for VGG-16).
    """

    def __init__(self, fc67: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.fc67 = fc67
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(R, 512, 7, 7) -> (R, 4096)."""
        return self.fc67(x.flatten(1))


class TwoFCHead(nn.Module):
    """fc6 + ReLU, fc7 + ReLU (FPN's box head).

    Args:
        in_features: flattened RoI feature size (C * S * S, 256 * 7 * 7 for FPN).
        fc_dim: width of both layers.
    """

    def __init__(self, in_features: int, fc_dim: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.out_channels = fc_dim

    def forward(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> (R, fc_dim)."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class scores (K + 1, background first) and class-specific box deltas (4 (K + 1)).

    Args:
        in_features: width of the box head's output.
        num_classes: object classes K, background excluded.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (num_classes + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian init, std 0.01 for scores and 0.001 for deltas (py-faster-rcnn)."""
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(R, D) -> scores (R, K + 1) and deltas (R, 4 (K + 1))."""
        return self.cls_score(x), self.bbox_pred(x)
