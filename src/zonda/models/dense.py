"""Dense (fully connected) maps ``x @ W^T + b``: the matmuls of every zonda network.

Every linear map of the model family goes through :func:`dense` (or
:func:`linear` for an ``nn.Linear``). On the CPU in float32 it runs oneDNN's
inner-product kernel, ``torch.ops.mkldnn._linear_pointwise``, the one that
``torch.compile`` emits for CPU linears, instead of MKL's ``sgemm``, which
``F.linear`` calls. For the tall-skinny shapes of message passing (e.g.
81,900 edges x 128 -> 128) oneDNN ran 15-20% faster than MKL on the AVX-512
development machine (single thread: 87-92 vs 72-77 GFLOP/s forward and
input-gradient; 100-105 vs 80-95 on the node-sized shapes), which took the
GNN's forward+backward step from 8.1 to 7.4 s; the numbers agree to float32
rounding.

The weight gradient stays with MKL (faster there), in whichever orientation
suits the shape: for a layer that widens its input (e.g. 4 edge features ->
``D``) ``x^T @ grad`` instead of autograd's ``grad^T @ x``, whose tiny last
dimension runs an order of magnitude below peak.

Everywhere else (GPU, bf16/fp16, CPU autocast, ``torch.compile`` tracing, a
PyTorch without oneDNN) :func:`dense` is plain ``F.linear``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F
from torch.utils.flop_counter import register_flop_formula


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias``: ``(..., K)``, ``(N, K)``, ``(N,)`` -> ``(..., N)``.

    Same values and gradients as ``F.linear`` (to float32 rounding); see the
    module docstring for when oneDNN computes it.
    """
    if _use_onednn(x, weight, bias):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` through :func:`dense`."""
    return dense(x, layer.weight, layer.bias)


def _use_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and x.numel() > 0
        and x.shape[-1] == weight.shape[-1]  # else F.linear raises its usual shape error
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and onednn_linear_available()
    )


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch build has a working oneDNN linear kernel (checked once)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        return bool(torch.backends.mkldnn.is_available()) and bool(torch.equal(op(x, w, b, "none", [], ""), F.linear(x, w, b)))
    except (AttributeError, RuntimeError):
        return False


def _onednn(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``rows @ weight^T + bias`` for 2-D ``rows`` (oneDNN)."""
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: ANN001, D102
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        weight_c = weight.contiguous()  # a column block of a larger weight is a strided view
        ctx.save_for_backward(rows, weight_c)
        ctx.has_bias = bias is not None
        ctx.in_shape = x.shape
        return _onednn(rows, weight_c, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, D102
        rows, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1]).contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad_rows, weight.t(), None).view(ctx.in_shape)
        if ctx.needs_input_grad[1]:
            widens = weight.shape[1] < weight.shape[0]
            grad_w = (rows.t() @ grad_rows).t() if widens else grad_rows.t() @ rows
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_rows.sum(0)
        return grad_x, grad_w, grad_b


def _linear_pointwise_flop(x_shape, second_shape, third_shape=None, *args, **kwargs) -> int:  # noqa: ANN001
    """FLOPs of oneDNN's linear, ``2 M K N``, so that ``FlopCounterMode`` counts :func:`dense`.

    The ``default`` overload takes ``(X, W, B, ...)``, ``binary`` ``(X, other, W, ...)``.
    """
    w_shape = third_shape if third_shape is not None and len(third_shape) == 2 else second_shape
    rows = 1
    for size in x_shape[:-1]:
        rows *= size
    return 2 * rows * x_shape[-1] * w_shape[0]


def _register_flop_formula() -> None:
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except AttributeError:  # a build without oneDNN
        return
    register_flop_formula(op)(_linear_pointwise_flop)


_register_flop_formula()
