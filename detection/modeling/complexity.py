"""Multiply-adds of a detector, counted on the meta device (nothing allocated or computed).

A detector's work depends on the image and on how many proposals survive, so the count is
defined as: the shared maps (backbone, FPN) and the RPN head on one (1, 3, H, W) image, plus
the RoI head (box head + predictor) on `num_rois` RoIs (the RPN's post-NMS top-k at test
time), plus the whole-image RoI with global context. RoI pooling, NMS and box decoding are
not counted (the paper counts conv and fc layers).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from detection.modeling.faster_rcnn import FasterRCNN


@torch.no_grad()
def count_detector_macs(model: FasterRCNN, input_size: tuple[int, int], num_rois: int) -> int:
    """Multiply-adds of one image through `model` (built on the meta device, or anywhere).

    Args:
        model: the detector.
        input_size: (H, W) of the network input (padded to a multiple of 32 here).
        num_rois: RoIs through the box head.

    Returns:
        Multiply-adds (FLOPs // 2).
    """
    device = next(model.parameters()).device
    h, w = (-(-s // 32) * 32 for s in input_size)
    images = torch.zeros(1, 3, h, w, device=device)
    pooler = model.roi_heads.pooler
    with FlopCounterMode(display=False) as counter:
        features = model.extract_features(images)
        model.rpn.head([features[name] for name in model.rpn_features])
        channels = features[model.roi_heads.in_features[0]].shape[1]
        size = pooler.output_size
        # the pooled RoIs as ROIHeads.box_features hands them to its head (FPN pooling cannot
        # run on the meta device); with global context the whole image's RoI comes last
        rois = num_rois + int(model.roi_heads.global_context)
        pooled = torch.zeros(rois, channels, size, size, device=device)
        model.roi_heads.predictor(model.roi_heads.head_features(pooled, [rois]))
    return counter.get_total_flops() // 2
