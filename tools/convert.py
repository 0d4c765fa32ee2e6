"""`resdet convert`: third-party detector weights -> a checkpoint our detectors load.

    resdet convert --from torchvision fasterrcnn_resnet50_fpn_coco.pth model_tv.pth
    resdet infer --config configs/detection/torchvision_r50_fpn_coco.yaml \\
        --weights model_tv.pth ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backbones.weights import read_source, unwrap_state_dict
from detection.modeling.convert import CONVERTERS, convert_detector
from engine.errors import UserError
from engine.io import atomic_torch_save
from tools.arguments import add_trust_weights_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=list(CONVERTERS),
        help="layout of the input (torchvision: fasterrcnn_resnet50_fpn)",
    )
    parser.add_argument("input", help="input state dict (.pth)")
    parser.add_argument("output", help="output checkpoint (.pth), {'model': state_dict}")
    add_trust_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    state = unwrap_state_dict(read_source(args.input, args.trust_weights))
    converted = convert_detector(state, args.source_format)
    out = Path(args.output)
    if out.resolve() == Path(args.input).resolve():
        raise UserError(f"output {args.output!r} would overwrite the input; pick another path")
    atomic_torch_save({"model": converted}, out)
    print(f"converted {len(converted)} tensors ({args.source_format} -> resdet): {out}")
    return 0
