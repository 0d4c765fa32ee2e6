"""The exported graph (detection/export.py) on OpenVINO: an IR written from the ONNX export,
and `OpenvinoPredictor`, which compiles it for the CPU at fp32 or bf16.

The IR has the ONNX graph's inputs and outputs (export.INPUT_NAMES, export.OUTPUT_NAMES);
its weights stay fp32 (the precision is chosen when it is compiled). OpenVINO comes with
the `export` extra and is imported only when asked for.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detection.config import InputConfig
from detection.export import DEFAULT_OPSET, OUTPUT_NAMES, GraphPredictor, onnx_bytes
from detection.inference import inference_precision
from detection.predictor import Predictor
from engine.errors import UserError
from engine.io import atomic_write_bytes

# INFERENCE_PRECISION_HINT per resolved autocast dtype (None: fp32)
PRECISION_HINTS = {None: "f32", "bf16": "bf16"}


def import_openvino() -> Any:
    """The openvino module; UserError naming the extra when it is not installed."""
    try:
        import openvino
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install 'resdet[export]'") from None
    return openvino


def convert(predictor: Predictor, opset: int = DEFAULT_OPSET) -> Any:
    """The predictor's detector as an ``openvino.Model``, converted from its ONNX export."""
    ov = import_openvino()  # before the export's seconds
    return ov.convert_model(io.BytesIO(onnx_bytes(predictor, opset)))


def export_openvino(
    predictor: Predictor, out: str | os.PathLike[str], opset: int = DEFAULT_OPSET
) -> None:
    """Write the predictor's detector as OpenVINO IR: ``out`` (model.xml) and the .bin beside
    it (fp32 weights), each atomically.

    Raises:
        UserError: ``out`` not an .xml path, or as `export.export_onnx`.
    """
    out = Path(out)
    if out.suffix != ".xml":
        raise UserError(f"--out {out}: an OpenVINO IR is written as a .xml file (and its .bin)")
    model = convert(predictor, opset)
    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "model.xml"
        import_openvino().save_model(model, str(xml), compress_to_fp16=False)
        atomic_write_bytes(out.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out, xml.read_bytes())  # read_model finds the .bin by its stem


class OpenvinoPredictor(GraphPredictor):
    """An OpenVINO model of the exported graph compiled for the CPU (`GraphPredictor`).

    Args:
        model: a model.xml (its .bin beside it), or an ``openvino.Model`` (`convert`).
        input_cfg: the config's ``input`` section (the resize before the graph).
        precision: "fp32" or "bf16" (fp32 with a warning where the CPU lacks native bf16).
        threads: inference threads (default: torch.get_num_threads()).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        input_cfg: InputConfig,
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        super().__init__(input_cfg)
        ov = import_openvino()
        core = ov.Core()
        if isinstance(model, (str, os.PathLike)):
            model = core.read_model(str(checked_ir(model)))
        amp = inference_precision(precision, torch.device("cpu"))
        config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[amp],
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, inputs: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """OpenVINO's outputs of the graph."""
        results = self.request.infer(inputs)
        return [results[self.compiled.output(name)] for name in OUTPUT_NAMES]


def checked_ir(path: str | os.PathLike[str]) -> Path:
    """``path``, a model.xml with its .bin beside it; UserError naming what is missing."""
    xml = Path(path)
    for file in (xml, xml.with_suffix(".bin")):
        if not file.is_file():
            raise UserError(
                f"{file}: no such file (an OpenVINO IR: `resdet export --format openvino`)"
            )
    return xml
