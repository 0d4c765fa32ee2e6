"""`resdet flops`: parameters and multiply-adds (GMACs, the paper's "FLOPs") of a model.

    resdet flops resnet50                      # torchvision layout: 25,557,032 params, 4.09 GMACs
    resdet flops resnet50 --stride-in-1x1      # the paper's layout: 3.86 GMACs
    resdet flops --all                         # markdown table of every named backbone
    resdet flops faster_rcnn_r50_fpn --size 800x1333   # a detector (see DETECTORS)
    resdet flops --pretrain-config configs/mini/vgg16_w16_cifar10jpg.yaml \
        --config configs/mini/faster_rcnn_vgg16_w16_raccoon.yaml       # what configs build

Models are built on the meta device, so nothing is allocated or computed.

Extension point for detectors: `ROW_BUILDERS` maps a family to (names, row function). A
detector family adds an entry whose function returns the same keys as `backbone_row`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch

from backbones.build import BACKBONES, backbone_arguments, build_backbone
from backbones.cifar import CIFAR_NETS
from backbones.complexity import count_macs, count_params
from configs import ROOT as CONFIG_ROOT
from engine.errors import UserError
from tools.arguments import config_path

if TYPE_CHECKING:
    from backbones.pretrain.config import PretrainConfig
    from detection.config import Config as DetectionConfig

CIFAR_SIZE, IMAGENET_SIZE = 32, 224


class Row(TypedDict):
    """One counted model."""

    name: str
    input: str  # "224x224"
    params: int
    gmacs: float  # multiply-adds / 1e9


Size = int | tuple[int, int]  # a square side, or (H, W)


def backbone_row(
    name: str, size: Size | None = None, stride_in_1x1: bool = False, shortcut: str | None = None
) -> Row:
    """Count one backbone, built on the meta device.

    Args:
        name: a key of backbones.BACKBONES.
        size: square input side or (H, W); None = 32 for CIFAR nets, 224 otherwise.
        stride_in_1x1: the paper's bottleneck layout (only for nets that take it).
        shortcut: "A" / "B" / "C" (ResNets only); None = the net's default.

    Returns:
        The Row: name, input ("224x224"), params, gmacs.
    """
    size = size or (CIFAR_SIZE if name in CIFAR_NETS else IMAGENET_SIZE)
    h, w = size if isinstance(size, tuple) else (size, size)
    kwargs: dict[str, object] = {}
    if stride_in_1x1:
        kwargs["stride_in_1x1"] = True
    if shortcut is not None:
        kwargs["shortcut"] = shortcut
    with torch.device("meta"):
        model = build_backbone(name, **kwargs)
    return Row(
        name=name,
        input=f"{h}x{w}",
        params=count_params(model),
        gmacs=count_macs(model, (h, w)) / 1e9,
    )


RowFn = Callable[[str, "Size | None", bool, "str | None"], Row]

CONFIGS = CONFIG_ROOT / "detection"
# detector name -> the config it is counted from (its classes: COCO's 80; torchvision's 90)
DETECTORS = {
    "faster_rcnn_r101_c4": "faster_rcnn_r101_c4_coco.yaml",
    "faster_rcnn_vgg16": "faster_rcnn_vgg16_coco.yaml",
    "faster_rcnn_r50_fpn": "torchvision_r50_fpn_coco.yaml",
}


def detector_row(
    name: str, size: Size | None = None, stride_in_1x1: bool = False, shortcut: str | None = None
) -> Row:
    """Count a named detector, from its config in DETECTORS (see `count_detector`)."""
    from detection.config import load_config

    if stride_in_1x1 or shortcut is not None:
        raise UserError(f"{name}: --stride-in-1x1 and --shortcut apply to backbones only")
    return count_detector(load_config(CONFIGS / DETECTORS[name]), name, size)


def count_detector(cfg: DetectionConfig, name: str, size: Size | None = None) -> Row:
    """Count the detector ``cfg`` builds, on the meta device (no weights are read).

    GMACs: shared maps and RPN head on one image of `size` (default: the config's test
    min x max size, e.g. 600x1000) plus the RoI head on the RPN's post-NMS test RoIs.
    """
    from detection.modeling.build import build_model
    from detection.modeling.complexity import count_detector_macs

    if size is None:
        size = (cfg.input.min_size_test, cfg.input.max_size_test)
    h, w = size if isinstance(size, tuple) else (size, size)
    with torch.device("meta"):
        model = build_model(cfg, load_backbone_weights=False).eval()
    macs = count_detector_macs(model, (h, w), cfg.model.rpn.post_nms_topk_test)
    return Row(name=name, input=f"{h}x{w}", params=count_params(model), gmacs=macs / 1e9)


def count_classifier(cfg: PretrainConfig, name: str, size: Size | None = None) -> Row:
    """Count the classifier a `resdet pretrain` config builds (its classes, widths, norm) on
    its training crop (or `size`)."""
    from backbones.build import build_from_config

    h, w = size if isinstance(size, tuple) else (size or cfg.input.crop_size,) * 2
    with torch.device("meta"):
        model = build_from_config(cfg.model.backbone, cfg.model.num_classes)
    return Row(
        name=name,
        input=f"{h}x{w}",
        params=count_params(model),
        gmacs=count_macs(model, (h, w)) / 1e9,
    )


def config_rows(detector_configs: list[str], pretrain_configs: list[str]) -> list[Row]:
    """One Row per config file (named by its file name), classifiers first."""
    from backbones.pretrain.config import load_config as load_pretrain_config
    from detection.config import load_config

    rows = [count_classifier(load_pretrain_config(p), Path(p).stem) for p in pretrain_configs]
    rows += [count_detector(load_config(p), Path(p).stem) for p in detector_configs]
    return rows


# family -> (names, row function)
ROW_BUILDERS: dict[str, tuple[list[str], RowFn]] = {
    "backbone": (list(BACKBONES), backbone_row),
    "detector": (list(DETECTORS), detector_row),
}


def known_names() -> list[str]:
    """Every name `resdet flops` can count."""
    return [name for names, _ in ROW_BUILDERS.values() for name in names]


def row(
    name: str, size: Size | None = None, stride_in_1x1: bool = False, shortcut: str | None = None
) -> Row:
    """Count `name` with the row function of its family; UserError for an unknown name."""
    for names, row_fn in ROW_BUILDERS.values():
        if name in names:
            return row_fn(name, size, stride_in_1x1, shortcut)
    raise UserError(f"model {name!r} is not known; expected one of {', '.join(known_names())}")


def table_rows(size: Size | None, stride_in_1x1: bool, shortcut: str | None) -> list[Row]:
    """Rows for every named backbone; options go only to the nets that take them."""
    rows = []
    for name in BACKBONES:
        accepted = backbone_arguments(name)
        rows.append(
            backbone_row(
                name,
                None if name in CIFAR_NETS else size,  # CIFAR nets stay at 32x32
                stride_in_1x1 and "stride_in_1x1" in accepted,
                shortcut if "shortcut" in accepted else None,
            )
        )
    return rows


def format_gmacs(gmacs: float) -> str:
    """Two decimals as the paper (3.86), three below 1 GMAC (CIFAR nets: 0.041)."""
    return f"{gmacs:.2f}" if gmacs >= 1 else f"{gmacs:.3f}"


def markdown_table(rows: list[Row]) -> str:
    """| model | input | parameters | GMACs | table."""
    lines = ["| model | input | parameters | GMACs |", "| --- | --- | ---: | ---: |"]
    lines += [
        f"| {r['name']} | {r['input']} | {r['params']:,} | {format_gmacs(r['gmacs'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", help="backbone or detector, e.g. resnet50, vgg16, faster_rcnn_r50_fpn"
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="input side or HxW (default 224; CIFAR nets 32; detectors: their config's test size)",
    )
    parser.add_argument(
        "--stride-in-1x1",
        action="store_true",
        help="stride on a bottleneck's first 1x1 (the paper's / MSRA layout)",
    )
    parser.add_argument("--shortcut", choices=["A", "B", "C"], help="ResNet shortcut option")
    parser.add_argument("--all", action="store_true", help="markdown table of every backbone")
    parser.add_argument(
        "--config",
        dest="detector_configs",
        metavar="FILE",
        action="append",
        default=[],
        type=config_path,
        help="a `resdet train` config: count the detector it builds (repeatable; a table)",
    )
    parser.add_argument(
        "--pretrain-config",
        dest="pretrain_configs",
        metavar="FILE",
        action="append",
        default=[],
        type=config_path,
        help="a `resdet pretrain` config: count the classifier it builds (repeatable)",
    )


def parse_size(text: str) -> Size:
    """'224' -> 224, '800x1333' -> (800, 1333)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; expected N or HxW") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; expected N or HxW")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def run(args: argparse.Namespace) -> int:
    sides = args.size if isinstance(args.size, tuple) else (args.size,)
    if args.size is not None and min(sides) < 32:
        raise UserError(f"--size {args.size} is too small; expected at least 32")
    if args.all:
        print(markdown_table(table_rows(args.size, args.stride_in_1x1, args.shortcut)))
        return 0
    if args.detector_configs or args.pretrain_configs:
        print(markdown_table(config_rows(args.detector_configs, args.pretrain_configs)))
        return 0
    if args.name is None:
        raise UserError(f"give a model name or --all; names: {', '.join(known_names())}")
    r = row(args.name, args.size, args.stride_in_1x1, args.shortcut)
    print(f"{r['name']} at {r['input']}")
    print(f"parameters: {r['params']:,} ({r['params'] / 1e6:.2f} M)")
    print(f"multiply-adds: {format_gmacs(r['gmacs'])} GMACs")
    return 0
