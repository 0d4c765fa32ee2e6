"""Faster R-CNN detection: configs, data, models, evaluation; `detection.Predictor` for inference.

`Predictor` is imported on first use, so `import detection` stays cheap (no torch models,
OpenCV or albumentations until a predictor is wanted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detection.predictor import Predictor

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from detection.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'detection' has no attribute {name!r}")
