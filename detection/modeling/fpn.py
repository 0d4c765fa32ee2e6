"""Feature Pyramid Network (Lin et al. 2017): P2..P5 from C2..C5, plus P6 for the RPN.

Each C_l gets a 1x1 lateral conv; from the top down, the coarser merged map is upsampled
(nearest, to the lateral's size) and added; a 3x3 conv smooths every merged map. P6 is
P5 subsampled by a 1x1 max pool of stride 2 (the RPN's largest anchors live there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from backbones.fused import conv_add


class FPN(nn.Module):
    """Top-down pyramid with lateral connections.

    Args:
        in_features: backbone maps used, finest first (e.g. ["c2", "c3", "c4", "c5"]).
        in_channels: their channels, same order.
        out_channels: channels of every output level.
        first_level: pyramid index of the finest map (2 for C2 -> P2).
    """

    def __init__(
        self,
        in_features: Sequence[str],
        in_channels: Sequence[int],
        out_channels: int = 256,
        first_level: int = 2,
    ) -> None:
        super().__init__()
        if len(in_features) != len(in_channels) or not in_features:
            raise ValueError(f"FPN needs one channel count per input, got {in_features}")
        self.in_features = list(in_features)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        last = first_level + len(in_features)  # the extra, max-pooled level
        self.out_features = [f"p{k}" for k in range(first_level, last + 1)]
        for conv in [*self.lateral, *self.output]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Backbone maps -> pyramid.

        Args:
            features: name -> (N, C_l, H_l, W_l), at least `in_features`.

        Returns:
            "p2".."p6" (for four inputs) -> (N, out_channels, H_l, W_l), finest first.
        """
        inputs = [features[name] for name in self.in_features]
        merged = self.lateral[-1](inputs[-1])
        outputs = [self.output[-1](merged)]
        for i in range(len(inputs) - 2, -1, -1):
            top_down = F.interpolate(merged, size=inputs[i].shape[-2:], mode="nearest")
            lateral = self.lateral[i]
            assert isinstance(lateral, nn.Conv2d)
            # lateral(c_i) + top_down, the add fused into the 1x1 conv at CPU inference
            merged = conv_add(lateral, inputs[i], top_down, overwrite=True)
            outputs.insert(0, self.output[i](merged))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))  # P6
        return dict(zip(self.out_features, outputs))
