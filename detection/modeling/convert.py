"""Third-party detector checkpoints -> our state-dict layout.

torchvision's ``fasterrcnn_resnet50_fpn`` (v1) maps one to one onto our FPN detector built from
configs/detection/torchvision_r50_fpn_coco.yaml: same anchors (torchvision's rounding), same
class layout (background at index 0, 91 outputs with class-specific boxes) and same layers;
only the names differ. torchvision's label ``l`` (COCO category id) is our label ``l - 1``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from backbones.resnet import RESNETS
from backbones.weights import from_torchvision
from engine.errors import UserError

_BODY = "backbone.body."
# (pattern on a torchvision key, replacement) for everything outside the ResNet body
_TORCHVISION_DETECTOR: list[tuple[str, str]] = [
    (r"backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"fpn.lateral.\1."),
    (r"backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"fpn.output.\1."),
    (r"rpn\.head\.conv\.(?:0\.0\.)?", "rpn.head.conv."),
    (r"rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    (r"rpn\.head\.bbox_pred\.", "rpn.head.deltas."),
    (r"roi_heads\.box_head\.(fc[67])\.", r"roi_heads.box_head.\1."),
    (r"roi_heads\.box_predictor\.", "roi_heads.predictor."),
]


def from_torchvision_detector(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision Faster R-CNN R50-FPN state dict to ours.

    Args:
        state: torchvision's ``model.state_dict()`` (FrozenBN or BatchNorm backbone).

    Returns:
        Our state dict (BN step counters dropped).

    Raises:
        UserError: a key that is not part of a torchvision Faster R-CNN R50-FPN.
    """
    body = {k[len(_BODY) :]: v for k, v in state.items() if k.startswith(_BODY)}
    with torch.device("meta"):
        resnet = RESNETS["resnet50"]()  # only its type matters for the renaming
    out = {f"backbone.{k}": v for k, v in from_torchvision(body, resnet).items()}
    unknown = []
    for key, value in state.items():
        if key.startswith(_BODY):
            continue
        for pattern, replacement in _TORCHVISION_DETECTOR:
            new_key, hits = re.subn(f"^{pattern}", replacement, key)
            if hits:
                out[new_key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise UserError(
            f"not a torchvision fasterrcnn_resnet50_fpn state dict: unknown keys {unknown[:5]}"
        )
    return {k: v for k, v in out.items() if not k.endswith("num_batches_tracked")}


CONVERTERS: dict[str, Callable[[Mapping[str, Tensor]], dict[str, Tensor]]] = {
    "torchvision": from_torchvision_detector,
}


def convert_detector(state: Mapping[str, Tensor], source_format: str) -> dict[str, Tensor]:
    """Convert a detector state dict from `source_format` (a key of CONVERTERS)."""
    if source_format not in CONVERTERS:
        raise UserError(
            f"--from {source_format!r} is not known; expected one of {', '.join(CONVERTERS)}"
        )
    return CONVERTERS[source_format](state)
