"""A convolution and the pointwise ops after it in one oneDNN call, at CPU inference.

``relu(conv(x))`` in eager PyTorch is two passes over the output: the convolution writes it,
the ReLU reads and writes it again; a residual block's ``relu(conv(x) + shortcut)`` is three.
oneDNN can apply the ReLU and the add as post-ops while the convolution's output tile is
still in cache (``torch.ops.mkldnn._convolution_pointwise``, the kernels inductor emits).

The functions here compute exactly the eager expression their name spells, and take the fused
call only where it is the same computation and nothing records or watches the modules
(``engine.fastpath.plain_ops_required``: fx / TorchScript / ONNX / compile / export, forward
hooks; those get the modules called one by one):
- CPU, no autograd (inference);
- the norm between conv and activation already folded into the conv (an ``nn.Identity``,
  see ``fold_frozen_bn``);
- channels_last maps, and either fp32 throughout or bf16 weights under CPU bf16 autocast
  (``cast_for_autocast``), where the inputs are cast to bf16 as autocast would.
In fp32 the result equals the eager ops' up to float rounding, where oneDNN picks another
kernel for the fused call (bit-identical on the ResNet-50 trunk at 800 x 1066; within 1e-5
on the small test nets, tests/backbones/test_fused.py). In bf16
the add happens before the one rounding to bf16 instead of after two.
Measured on the ResNet-50 trunk at 800 x 1066 (docs/PERFORMANCE.md): fp32 0.58-0.63 ->
0.47-0.50 s, bf16 0.20 -> 0.12 s.

In eager ops a FrozenBatchNorm2d is applied to the weights rather than the activations
(`conv_norm`): that is the training path's saving.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.layers import FrozenBatchNorm2d
from engine.fastpath import plain_ops_required

_ops = torch.ops.mkldnn


def fused_dtype(
    conv: nn.Conv2d, norm: nn.Module | None, x: Tensor, *watched: nn.Module | None
) -> torch.dtype | None:
    """The dtype the fused call runs in for ``conv`` (then ``norm``) on ``x``, or None for
    the eager ops (always None where ``engine.fastpath`` wants the plain modules: a graph
    being recorded, or a hook on ``conv``, ``norm`` or the ``watched`` modules)."""
    if plain_ops_required(x, conv, norm, *watched):
        return None
    if (
        x.device.type != "cpu"
        or x.dim() != 4
        or torch.is_grad_enabled()
        or not (norm is None or isinstance(norm, nn.Identity))
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
        or not x.is_contiguous(memory_format=torch.channels_last)
        or not torch.backends.mkldnn.is_available()
    ):
        return None
    weight, autocast = conv.weight.dtype, _cpu_autocast_dtype()
    if autocast is not None:
        return weight if weight == autocast == torch.bfloat16 else None
    return weight if weight == x.dtype == torch.float32 else None


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype of the CPU autocast in force, or None outside one."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


def _geometry(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups  # type: ignore[arg-type]


def conv_norm(conv: nn.Conv2d, x: Tensor, norm: nn.Module | None = None) -> Tensor:
    """``norm(conv(x))`` (no norm when None) in eager ops.

    A FrozenBatchNorm2d is a fixed per-channel affine, so it is applied to the weights
    instead of the output: ``conv(x; W * scale) + shift``, one pass over the kernel rather
    than two over the activations (forward and backward; the gradient reaching W is the
    same). Equal to conv-then-norm up to float rounding.
    """
    if isinstance(norm, FrozenBatchNorm2d) and not plain_ops_required(x, conv, norm):
        scale, shift = norm.scale_and_shift()
        bias = shift if conv.bias is None else conv.bias * scale + shift
        return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), bias)
    return conv(x) if norm is None else norm(conv(x))


def conv_relu(
    conv: nn.Conv2d, x: Tensor, norm: nn.Module | None = None, relu: nn.Module | None = None
) -> Tensor:
    """``relu(norm(conv(x)))`` (no norm when None): (N, C_in, H, W) -> (N, C_out, H', W').

    ``relu`` is the model's own ReLU module where it has one (a tap people hook, e.g. VGG's
    relu3_3): off the fused path it is called as a module; None applies ``F.relu``.
    """
    dtype = fused_dtype(conv, norm, x, relu)
    if dtype is None:
        out = conv_norm(conv, x, norm)
        return relu(out) if relu is not None else F.relu(out, inplace=True)
    return _ops._convolution_pointwise(
        x.to(dtype), conv.weight, conv.bias, *_geometry(conv), "relu", [], ""
    )


def conv_add(
    conv: nn.Conv2d,
    x: Tensor,
    residual: Tensor,
    norm: nn.Module | None = None,
    relu: bool = False,
    overwrite: bool = False,
) -> Tensor:
    """``norm(conv(x)) + residual`` (no norm when None), then a ReLU when ``relu``.

    Args:
        conv: the convolution.
        x: (N, C_in, H, W) input.
        residual: (N, C_out, H', W'), what is added (a shortcut, an upsampled map).
        norm: the norm after the convolution, or None.
        relu: apply a ReLU after the add (a residual block's tail).
        overwrite: ``residual`` is scratch the caller no longer needs: the fused call may
            write the result into it (saves a buffer); otherwise it is left untouched.

    Returns:
        (N, C_out, H', W').
    """
    dtype = fused_dtype(conv, norm, x)
    if dtype is None or not residual.is_contiguous(memory_format=torch.channels_last):
        out = conv_norm(conv, x, norm) + residual
        return F.relu(out, inplace=True) if relu else out
    args: tuple[object, ...] = (*_geometry(conv), "add", 1.0, "relu" if relu else None, [], None)
    x = x.to(dtype)
    if overwrite and residual.dtype == dtype:
        return _ops._convolution_pointwise_.binary(residual, x, conv.weight, conv.bias, *args)
    return _ops._convolution_pointwise.binary(x, residual.to(dtype), conv.weight, conv.bias, *args)
