"""Transformer processor: self-attention over all mesh nodes, optionally windowed.

Pre-norm blocks ``x += W_o SDPA(LN(x)); x += MLP(LN(x))`` using
:func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-
efficient kernels on GPU). The mesh graph's edges are not used; mesh
positions enter through the embedded node features.

Sequence order: the processor sorts the mesh nodes along a Hilbert curve of
their (lat, lon) (:func:`zonda.models.ordering.hilbert_order`) and undoes the
sort on the way out. With ``window = w`` each node attends only to the nodes
at most ``w // 2`` places before or after it in that order (a band of
``2 * (w // 2) + 1`` nodes), so windows are spatially local; because the order
comes from the coordinates, the result does not depend on how the mesh nodes
are numbered. The band is computed block-wise: queries in blocks of
``b = max(w // 2, 1)`` nodes attend to the three key blocks around them under
a band mask, so memory and work are ``O(M * w)``, not ``O(M^2)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from zonda.models.checkpointing import maybe_checkpoint
from zonda.models.dense import linear
from zonda.models.graph_transformer import MLP_RATIO
from zonda.models.mlp import MLP
from zonda.models.ordering import hilbert_order


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, half_width: int) -> torch.Tensor:
    """Attention where position ``i`` sees positions ``j`` with ``|i - j| <= half_width``.

    q, k, v: ``(B, H, L, d)`` -> ``(B, H, L, d)``. Equal to
    ``scaled_dot_product_attention`` with the boolean band mask, at
    ``O(L * half_width)`` cost.
    """
    batch, heads, length, head_dim = q.shape
    block = max(half_width, 1)
    blocks = math.ceil(length / block)
    pad = blocks * block - length
    qb = F.pad(q, (0, 0, 0, pad)).view(batch, heads, blocks, block, head_dim)
    kb = _three_blocks(k, block, pad)
    vb = _three_blocks(v, block, pad)
    mask = _band_mask(blocks, block, half_width, length, q.device)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)
    return out.reshape(batch, heads, blocks * block, head_dim)[:, :, :length]


def _three_blocks(x: torch.Tensor, block: int, pad: int) -> torch.Tensor:
    """``(B, H, L, d)`` -> ``(B, H, nb, 3*block, d)``: for each block, itself and its two neighbours."""
    padded = F.pad(x, (0, 0, block, pad + block))
    return padded.unfold(2, 3 * block, block).transpose(-1, -2)


def _band_mask(blocks: int, block: int, half_width: int, length: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(nb, block, 3*block)``: query (block i, row r) may see key (block i, column c).

    Keys outside ``[0, length)`` are padding and hidden, except for padded
    queries (discarded afterwards), which keep their diagonal so that no row
    is fully masked.
    """
    q_pos = torch.arange(blocks * block, device=device).view(blocks, block, 1)
    k_pos = (torch.arange(blocks, device=device) * block - block).view(blocks, 1, 1) + torch.arange(3 * block, device=device)
    near = (q_pos - k_pos).abs() <= half_width
    real = (k_pos >= 0) & ((k_pos < length) | (q_pos >= length))
    return near & real


class TransformerLayer(nn.Module):
    """Pre-norm self-attention block over a sequence ``(B, L, D)``.

    Args: dim ``D``, num_heads, hidden_layers (feed-forward, each
    ``MLP_RATIO * D`` wide, at least 1), activation name.
    """

    def __init__(self, dim: int, num_heads: int, hidden_layers: int = 1, activation: str = "silu") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, MLP_RATIO * dim, dim, max(1, hidden_layers), activation, layer_norm=False)

    def forward(self, x: torch.Tensor, half_width: int | None = None) -> torch.Tensor:
        """x ``(B, L, D)`` -> ``(B, L, D)``; ``half_width`` None: full attention."""
        batch, length, dim = x.shape
        qkv = linear(self.qkv, self.norm_attention(x)).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, d)
        if half_width is None:
            att = F.scaled_dot_product_attention(q, k, v)
        else:
            att = band_attention(q, k, v, half_width)
        x = x + linear(self.out_proj, att.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm_mlp(x))


class TransformerProcessor(nn.Module):
    """``layers`` transformer blocks over the mesh nodes in Hilbert order.

    Args:
        dim: model width ``D``.
        layers: number of blocks.
        num_heads: attention heads.
        mesh_latlon: ``(M, 2)`` mesh node coordinates in degrees (defines the order).
        window: attention window ``w`` (None: every node sees every node).
        hidden_layers: feed-forward hidden layers.
        activation: activation name.
        checkpointing: recompute each block in the backward pass.
    """

    def __init__(
        self,
        dim: int,
        layers: int,
        num_heads: int,
        mesh_latlon: torch.Tensor | np.ndarray,
        window: int | None = None,
        hidden_layers: int = 1,
        activation: str = "silu",
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, num_heads, hidden_layers, activation) for _ in range(layers))
        self.half_width = None if window is None else int(window) // 2
        self.checkpointing = checkpointing
        order = torch.as_tensor(hilbert_order(np.asarray(mesh_latlon)), dtype=torch.int64)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse", torch.argsort(order), persistent=False)

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor | None = None, graph: object = None) -> torch.Tensor:
        """nodes ``(M, B, D)`` -> ``(M, B, D)`` (mesh edges, if given, are ignored)."""
        x = nodes.index_select(0, self.order).transpose(0, 1).contiguous()
        for layer in self.layers:
            x = maybe_checkpoint(layer, x, self.half_width, enabled=self.checkpointing)
        return x.transpose(0, 1).index_select(0, self.inverse)
