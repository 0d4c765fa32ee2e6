"""Faster R-CNN (Ren et al. 2015): shared features -> RPN proposals -> Fast R-CNN detections.

Wiring only; the stages live in their own modules and are built by `build.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from backbones.layers import Backbone
from detection.modeling.augmented_inference import View, mirror_images, view_scorer
from detection.modeling.fpn import FPN
from detection.modeling.roi_heads import ROIHeads, Scorer
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
        test_flip: detection also scores every RoI on the mirrored images and averages.
        pyramid_roi_size: with an image pyramid (``images.pyramid``), the RoI size (input
            pixels) whose two adjacent scales score a RoI (see `augmented_inference`).
    """

    def __init__(
        self,
        backbone: Backbone,
        backbone_features: Sequence[str],
        rpn: RPN,
        rpn_features: Sequence[str],
        roi_heads: ROIHeads,
        fpn: FPN | None = None,
        test_flip: bool = False,
        pyramid_roi_size: float = 224.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_features = list(backbone_features)
        self.fpn = fpn
        self.rpn = rpn
        self.rpn_features = list(rpn_features)
        self.roi_heads = roi_heads
        self.test_flip = test_flip
        self.pyramid_roi_size = pyramid_roi_size

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
            Detection is multi-scale when ``images.pyramid`` holds the pyramid, and also
            flipped with ``test_flip``; the proposals are always the test scale's.
        """
        features = self.extract_features(images.tensor)
        rpn_maps = [features[name] for name in self.rpn_features]
        proposals, rpn_losses = self.rpn(images, rpn_maps, targets)
        scorer = self.scorer(images, features) if detect else None
        detections, roi_losses = self.roi_heads(
            images, features, proposals, targets, detect, scorer
        )
        return DetectorOutput({**rpn_losses, **roi_losses}, detections)

    def scorer(self, images: ImageBatch, features: dict[str, Tensor]) -> Scorer:
        """How detection scores RoIs on this batch: the RoI head's `candidates` on the test
        scale's maps, or (`augmented_inference`) on the image pyramid and/or the mirrored images."""
        if not images.pyramid and not self.test_flip:
            maps = [features[name] for name in self.roi_heads.in_features]
            return functools.partial(
                self.roi_heads.candidates, maps, image_sizes=images.image_sizes
            )
        pyramid = images.pyramid or [images]
        views = [self.view(level, images, features) for level in pyramid]
        mirrored = None
        if self.test_flip:
            flipped = mirror_images(images)
            mirrored = [self.view(level, images, None) for level in flipped.pyramid or [flipped]]
        return view_scorer(
            self.roi_heads, views, mirrored, images.image_sizes, self.pyramid_roi_size
        )

    def view(
        self, level: ImageBatch, main: ImageBatch, main_features: dict[str, Tensor] | None
    ) -> View:
        """``level`` (the batch at one pyramid scale) as the RoI head sees it; the main
        scale's features are reused when ``level`` is the main batch's size."""
        same = main_features is not None and level.image_sizes == main.image_sizes
        features = main_features if same else self.extract_features(level.tensor)
        assert features is not None
        ratios = [
            (h / main_h, w / main_w)
            for (h, w), (main_h, main_w) in zip(level.image_sizes, main.image_sizes)
        ]
        maps = [features[name] for name in self.roi_heads.in_features]
        return View(maps, level.image_sizes, ratios)

    def extract_features(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) -> named shared maps (backbone stages, then the pyramid if any)."""
        features = self.backbone.forward_features(images, self.backbone_features)
        return features if self.fpn is None else self.fpn(features)
