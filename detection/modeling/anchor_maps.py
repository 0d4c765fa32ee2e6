"""The anchors a config's detector lays over an input of a given size (for data statistics)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from detection.config import Config
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.build import build_model
from detection.modeling.faster_rcnn import FasterRCNN


def anchors_for_input(cfg: Config) -> functools.partial[Tensor]:
    """``(h, w) -> (A, 4)`` xyxy anchors of every RPN map for a (padded) ``h x w`` input.

    The detector is built on the meta device only to learn its RPN maps' sizes; the anchors
    come from a generator built from ``model.anchors`` as the RPN's is.
    """
    with torch.device("meta"):
        model = build_model(cfg, load_backbone_weights=False).eval()
    a = cfg.model.anchors
    generator = AnchorGenerator(a.sizes, a.aspect_ratios, a.offset)  # real tensors, on the CPU
    return functools.partial(_anchors, model, generator, cfg.input.size_divisibility)


@torch.no_grad()
def _anchors(
    model: FasterRCNN, generator: AnchorGenerator, divisibility: int, h: int, w: int
) -> Tensor:
    ph, pw = (-(-s // divisibility) * divisibility for s in (h, w))
    features = model.extract_features(torch.zeros(1, 3, ph, pw, device="meta"))
    maps = [features[name] for name in model.rpn_features]
    grids = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]
    strides = [(ph // gh, pw // gw) for gh, gw in grids]
    return torch.cat(generator(grids, strides))
