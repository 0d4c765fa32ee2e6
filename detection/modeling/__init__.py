"""Faster R-CNN, one module per stage (Ren et al. 2015; He et al. 2015, appendix A).

box_ops      IoU, clipping, the box coder        anchors     anchor generator
matcher      IoU labelling, ignore zones          sampler     balanced sampling
rpn          Region Proposal Network              poolers     RoIPool / RoIAlign, FPN levels
heads        res5 / VGG fc6-fc7 / 2fc box heads   roi_heads   Fast R-CNN stage
fpn          feature pyramid                      faster_rcnn the wiring
build        config -> model, checkpoint loading  convert     third-party checkpoints
complexity   multiply-adds of a detector          losses      box regression loss
ensemble     several detectors as one (app. B)
"""

from detection.modeling.build import build_model, load_detector_weights
from detection.modeling.faster_rcnn import DetectorOutput, FasterRCNN

__all__ = ["DetectorOutput", "FasterRCNN", "build_model", "load_detector_weights"]
