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

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {
    "detection.modeling.build": ("build_model", "load_detector_weights"),
    "detection.modeling.faster_rcnn": ("DetectorOutput", "FasterRCNN"),
}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
