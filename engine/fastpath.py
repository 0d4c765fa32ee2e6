"""The one decision between a fast path and the plain modules: :func:`plain_ops_required`.

resdet's CPU fast paths (a convolution with its ReLU or add in one oneDNN call,
``backbones.fused``; RoI pooling in threads and blocked layout copies,
``detection.modeling.roi_cpu``) compute what the plain PyTorch ops compute, but not through
them: they call oneDNN directly, start threads, write into scratch buffers and skip module
calls. Whoever records or watches the ops must see the plain ones instead:

- a graph being recorded: ``torch.fx.symbolic_trace`` (and torchvision's
  ``create_feature_extractor``, built on it), TorchScript (``torch.jit.script`` /
  ``torch.jit.trace``), the ONNX exporter, ``torch.compile`` and ``torch.export``
  (they see the plain ops, which inductor fuses itself);
- a module with a forward (pre-)hook, or a global one: hooks must see the modules called one
  by one, and a fused call never enters a module's own forward.

The models' forwards carry no such check: they call the helpers of ``backbones.fused`` with
their modules, and the helpers ask here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def graph_recording(x: object = None) -> bool:
    """The ops are being recorded into a graph (fx, TorchScript, ONNX, compile, export).

    Args:
        x: the tensor the op would take: a ``torch.fx.Proxy`` during symbolic tracing.
    """
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return True
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(is_exporting is not None and is_exporting())


def hooked(*modules: nn.Module | None) -> bool:
    """Any forward (pre-)hook on these modules, or a global one on every module."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m is not None and (m._forward_hooks or m._forward_pre_hooks) for m in modules)


def plain_ops_required(x: Tensor, *modules: nn.Module | None) -> bool:
    """The plain modules and ops must run on ``x``: a graph is being recorded, or one of
    ``modules`` (or every module) is watched by a hook."""
    return graph_recording(x) or hooked(*modules)
