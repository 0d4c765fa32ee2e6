"""`resdet export`: the whole detector as one ONNX file, postprocessing included, or that
graph as OpenVINO IR (--format openvino: --out model.xml, model.bin written beside it).

    resdet export --config C --weights W --out model.onnx [--opset 20] [--set k=v ...]
    resdet export --config C --weights W --out model.xml --format openvino

The graph's inputs and outputs: detection/export.py's docstring, also `resdet export --help`.
"""

from __future__ import annotations

import argparse

from detection.config import load_config
from tools.arguments import add_config_arguments, add_trust_weights_argument, trusted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from detection import export

    parser.description = export.__doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser, "configs/detection/raccoon_r18_c4.yaml")
    parser.add_argument("--weights", required=True, help="detector checkpoint (model_final.pth)")
    parser.add_argument("--out", required=True, help="the .onnx (or IR .xml) file to write")
    parser.add_argument(
        "--format",
        choices=("onnx", "openvino"),
        default="onnx",
        help="onnx (default), or openvino: IR .xml + .bin converted from the ONNX graph",
    )
    opsets = f"{export.OPSETS.start}..{export.OPSETS.stop - 1}"
    parser.add_argument(
        "--opset",
        type=int,
        default=export.DEFAULT_OPSET,
        help=f"ONNX opset, {opsets} (default {export.DEFAULT_OPSET})",
    )
    add_trust_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from detection.export import export_onnx
    from detection.predictor import Predictor

    cfg = trusted(load_config(args.config, args.overrides), args)
    predictor = Predictor(cfg, args.weights, device="cpu")
    if args.format == "openvino":
        from detection.openvino_runtime import export_openvino

        export_openvino(predictor, args.out, args.opset)
        print(f"wrote {args.out} and its .bin (OpenVINO IR from ONNX opset {args.opset})")
        return 0
    export_onnx(predictor, args.out, args.opset)
    print(f"wrote {args.out} (ONNX opset {args.opset})")
    return 0
