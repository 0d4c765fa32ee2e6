"""`resdet dataset-stats`: images, objects per class, box sizes and shapes, anchor coverage.

    resdet dataset-stats --config configs/detection/raccoon_r18_c4.yaml [--split train]

Reads ``data.<split>`` as training does and resizes each image as the test transform does
(``input.min_size_test`` / ``max_size_test``), then builds the config's anchors for that
size (``model.anchors``, the RPN's feature maps and strides) to tell how many ground-truth
boxes have an anchor at the RPN's positive IoU: with your own data, this says whether the
anchor sizes and aspect ratios fit before a training run does.
"""

from __future__ import annotations

import argparse

from detection.config import load_config
from tools.arguments import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "configs/detection/raccoon_r18_c4.yaml")
    parser.add_argument("--split", choices=["train", "test"], default="train", help="data.<split>")


def run(args: argparse.Namespace) -> int:
    from detection.data.build import load_dataset_records, resolve_class_names
    from detection.data.stats import dataset_stats, render
    from detection.modeling.anchor_maps import anchors_for_input

    cfg = load_config(args.config, [*args.overrides, "model.backbone.weights="])
    names = resolve_class_names(cfg)
    section = f"data.{args.split}"
    records = load_dataset_records(getattr(cfg.data, args.split), names, section)
    inp = cfg.input
    stats = dataset_stats(records, names, inp.min_size_test, inp.max_size_test,
                          anchors_for_input(cfg), cfg.model.rpn.iou_thresholds[1])  # fmt: skip
    print(render(stats, section))
    return 0
