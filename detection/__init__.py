"""Faster R-CNN detection: configs, data, models, evaluation; `detection.Predictor` for inference.

`Predictor` is imported on first use, so `import detection` stays cheap (no torch models,
OpenCV or albumentations until a predictor is wanted).
"""

# Exports: the names in _EXPORTS, each imported from its module on first use (engine.exports).
from engine.exports import exported_names, lazy_exports

_EXPORTS = {"detection.predictor": ("Predictor",)}
__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
