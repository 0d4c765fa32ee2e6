"""Faster R-CNN (Ren et al. 2015): shared features -> RPN proposals -> Fast R-CNN detections.

Wiring only; the stages live in their own modules and are built by `build.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from backbones.layers import Backbone
from detection.modeling.fpn import FPN
from detection.modeling.roi_heads import ROIHeads
from detection.modeling.rpn import RPN
from detection.structures import Detections, ImageBatch, Targets


@dataclass
class DetectorOutput:
    """What a detector returns, in training and evaluation mode alike."""

    losses: dict[str, Tensor]  # name -> scalar; empty when no targets were given
    detections: list[Detections] | None  # per image, network-input pixels; None unless asked


class FasterRCNN(nn.Module):
    """Backbone (+ FPN), RPN and RoI heads.

    Args:
        backbone: a `backbones` network with `forward_features`; parts moved into the RoI
            head (C4's res5, VGG's fc6/fc7) are replaced by nn.Identity there.
        backbone_features: the maps asked of the backbone (e.g. ["c4"] or ["c2", ..., "c5"]).
        rpn: the proposal stage.
        rpn_features: the maps the RPN sees (backbone or pyramid names).
        roi_heads: the detection stage (it names its own maps).
        fpn: the pyramid on top of the backbone, or None.
    """

    def __init__(
        self,
        backbone: Backbone,
        backbone_features: Sequence[str],
        rpn: RPN,
        rpn_features: Sequence[str],
        roi_heads: ROIHeads,
        fpn: FPN | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_features = list(backbone_features)
        self.fpn = fpn
        self.rpn = rpn
        self.rpn_features = list(rpn_features)
        self.roi_heads = roi_heads

    def forward(
        self,
        images: ImageBatch,
        targets: Sequence[Targets] | None = None,
        detect: bool = False,
    ) -> DetectorOutput:
        """Losses for the given targets and/or detections, whatever the module's mode.

        Args:
            images: padded, normalised batch (B, 3, H, W).
            targets: per image ground truth in network-input pixels, or None.
            detect: run inference and return detections.

        Returns:
            DetectorOutput with the RPN and Fast R-CNN losses (if targets) and detections
            (if detect). Training mode only changes the RPN's proposal counts (and dropout).
        """
        features = self.extract_features(images.tensor)
        rpn_maps = [features[name] for name in self.rpn_features]
        proposals, rpn_losses = self.rpn(images, rpn_maps, targets)
        detections, roi_losses = self.roi_heads(images, features, proposals, targets, detect)
        return DetectorOutput({**rpn_losses, **roi_losses}, detections)

    def extract_features(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) -> named shared maps (backbone stages, then the pyramid if any)."""
        features = self.backbone.forward_features(images, self.backbone_features)
        return features if self.fpn is None else self.fpn(features)
