"""Multi-layer perceptrons, the building block of every zonda network.

``MLP(in, hidden, out, hidden_layers=h)`` is ``Linear(in, hidden) -> act ->
[Linear(hidden, hidden) -> act] * (h - 1) -> Linear(hidden, out)``, followed by
an optional ``LayerNorm(out)`` (GraphCast puts one at the end of every MLP but
the output head). ``hidden_layers=0`` is a single ``Linear(in, out)``.

Message-passing layers feed MLPs with concatenations such as ``[edge, sender,
receiver]``. Concatenating per edge costs a copy of ``3 * D`` floats per edge
and a ``3D x D`` matmul per edge; :meth:`MLP.first_layer_part` exposes the
column block of the first weight that multiplies one part of the input, so a
caller can apply it to the *node* tensor before gathering it onto the edges
(``W [e, h_s, h_r] = W_e e + (W_s h)[s] + (W_r h)[r]``). The parameters, and
therefore checkpoints, are exactly those of the concatenating MLP.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from zonda.models.dense import dense, linear

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
}


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The element-wise activation called ``name`` (``silu``, ``gelu`` or ``relu``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """``(..., in_dim) -> (..., out_dim)`` perceptron with an optional final LayerNorm.

    Args:
        in_dim: input features.
        hidden_dim: width of the hidden layers.
        out_dim: output features.
        hidden_layers: number of hidden layers (0: one linear map).
        activation: ``silu``, ``gelu`` or ``relu``.
        layer_norm: apply ``LayerNorm(out_dim)`` to the output.
        input_parts: optional split of ``in_dim`` into named parts (e.g.
            ``{"edge": D, "sender": D, "receiver": D}``) for
            :meth:`first_layer_part`; must sum to ``in_dim``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        hidden_layers: int = 1,
        activation: str = "silu",
        layer_norm: bool = True,
        input_parts: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        widths = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norm = nn.LayerNorm(out_dim) if layer_norm else None
        self.act = activation_fn(activation)
        self._parts = _part_slices(input_parts or {"input": in_dim}, in_dim)

    @property
    def out_dim(self) -> int:
        return self.linears[-1].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(..., in_dim)`` -> ``(..., out_dim)``."""
        return self.tail(linear(self.linears[0], x))

    def first_layer_part(self, x: torch.Tensor, part: str, bias: bool = False) -> torch.Tensor:
        """``x @ W_part^T`` (+ bias): the first layer's contribution of one input part.

        x: ``(..., width of part)`` -> ``(..., first layer width)``. Summing
        the contributions of all parts (the bias once) gives ``linears[0]`` of
        the concatenated input.
        """
        return dense(x, self.first_layer_weight(part), self.linears[0].bias if bias else None)

    def first_layer_weight(self, part: str) -> torch.Tensor:
        """The ``(first width, width of part)`` column block of the first weight (a view)."""
        return self.linears[0].weight[:, self._parts[part]]

    def first_layer_parts(self, xs: Sequence[tuple[torch.Tensor, str]]) -> torch.Tensor:
        """Sum of :meth:`first_layer_part` over ``(tensor, part)`` pairs, bias added once.

        The tensors must broadcast against each other (without concatenation).
        """
        (x0, p0), *rest = xs
        out = self.first_layer_part(x0, p0, bias=True)
        for x, p in rest:
            out = out + self.first_layer_part(x, p)
        return out

    def tail(self, pre: torch.Tensor) -> torch.Tensor:
        """Everything after the first linear map: ``(..., first width) -> (..., out_dim)``.

        ``pre`` is the first layer's pre-activation output (see
        :meth:`first_layer_parts`).
        """
        h = pre
        for layer in self.linears[1:]:
            h = linear(layer, self.act(h))
        if self.norm is not None:
            h = self.norm(h)
        return h


def _part_slices(parts: dict[str, int], in_dim: int) -> dict[str, slice]:
    if sum(parts.values()) != in_dim:
        raise ValueError(f"input parts {parts} do not add up to in_dim={in_dim}")
    out, start = {}, 0
    for name, width in parts.items():
        out[name] = slice(start, start + width)
        start += width
    return out
