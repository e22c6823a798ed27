"""Graph-transformer processor (the AIFS / Anemoi ``GraphTransformer`` family).

Each layer is a pre-norm transformer block whose attention runs over the
mesh edges only: receiver ``i`` attends to its senders ``j`` with the edge
embedding ``eps_ij`` added to keys and values (Shi et al. 2021, "Masked label
prediction", as used by AIFS)::

    a_ij  = softmax_{j -> i}( q_i . (k_j + eps_ij) / sqrt(d) )      per head
    out_i = sum_{j -> i} a_ij (v_j + eps_ij)
    x     = x + W_o out(LN(x))
    x     = x + MLP(LN(x))

The softmax is taken over each receiver's incoming edges; heads are
interleaved channels (head ``h`` owns ``h::H``). ``eps`` is a per-layer
linear projection of the embedded mesh-edge features (width
:func:`edge_embed_dim`), the same for every sample of a batch. The attention
itself lives in :mod:`zonda.models.edge_attention` (eager, or fused by
``torch.compile`` per ``ModelParams.fused_kernels``).
"""

from __future__ import annotations

import torch
from torch import nn

from zonda.models.checkpointing import maybe_checkpoint
from zonda.models.compiled import fusion_enabled
from zonda.models.dense import linear
from zonda.models.edge_attention import edge_attention
from zonda.models.message_passing import EdgeSet
from zonda.models.mlp import MLP
from zonda.params import FusedKernels

MLP_RATIO = 4  # feed-forward width / model width, as in transformers and AIFS
EDGE_EMBED_DIM = 32  # width of the embedded mesh-edge features each layer projects to D


def edge_embed_dim(dim: int) -> int:
    """Width of the processor's embedded edge features for model width ``dim``.

    The features are 4 numbers per edge; each layer maps them to ``D`` with
    its own linear ``eps = W_l e`` (AIFS projects the raw features). A narrow
    embedding keeps that per-edge matmul ``E x 32 x D`` instead of
    ``E x D x D``, which at ``D = 128`` would cost more than all the
    per-node matmuls of a layer together.
    """
    return min(dim, EDGE_EMBED_DIM)


class GraphTransformerLayer(nn.Module):
    """Pre-norm graph-attention block on one (homogeneous) edge set.

    Args:
        dim: model width ``D``.
        num_heads: attention heads (divides ``D``).
        edge_dim: width of the embedded edge features.
        hidden_layers: hidden layers of the feed-forward MLP (at least 1),
            each ``MLP_RATIO * D`` wide.
        activation: activation name.
        fused_kernels: when the edge attention runs ``torch.compile``-fused
            (:func:`zonda.models.compiled.fusion_enabled`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        edge_dim: int,
        hidden_layers: int = 1,
        activation: str = "silu",
        fused_kernels: FusedKernels = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.fused_kernels = fused_kernels
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.edge_proj = nn.Linear(edge_dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, MLP_RATIO * dim, dim, max(1, hidden_layers), activation, layer_norm=False)

    def forward(self, x: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """x ``(M, B, D)``, embedded edges ``(E, edge_dim)`` -> ``(M, B, D)``."""
        qkv = linear(self.qkv, self.norm_attention(x))  # (M, B, 3D)
        q, k, v = qkv.view(*qkv.shape[:-1], 3, -1).permute(2, 0, 1, 3).contiguous().unbind(0)  # contiguous rows gather fast
        eps = linear(self.edge_proj, edges)
        fused = fusion_enabled(self.fused_kernels, graph.num_edges * q.shape[1] * q.shape[2], q.device)
        att = edge_attention(q, k, v, eps, graph.senders, graph.receivers, self.num_heads, fused=fused)
        x = x + linear(self.out_proj, att)
        return x + self.mlp(self.norm_mlp(x))


class GraphTransformerProcessor(nn.Module):
    """``layers`` graph-attention blocks on the multi-mesh.

    Args:
        dim: model width ``D``.
        layers: number of blocks.
        num_heads: attention heads.
        hidden_layers: hidden layers of each feed-forward MLP.
        activation: activation name.
        checkpointing: recompute each block in the backward pass.
        fused_kernels: ``auto``, ``on`` or ``off`` (see :class:`GraphTransformerLayer`).
    """

    def __init__(
        self,
        dim: int,
        layers: int,
        num_heads: int,
        hidden_layers: int = 1,
        activation: str = "silu",
        checkpointing: bool = False,
        fused_kernels: FusedKernels = "auto",
    ) -> None:
        super().__init__()
        self.edge_dim = edge_embed_dim(dim)
        self.layers = nn.ModuleList(
            GraphTransformerLayer(dim, num_heads, self.edge_dim, hidden_layers, activation, fused_kernels) for _ in range(layers)
        )
        self.checkpointing = checkpointing

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """nodes ``(M, B, D)``, embedded mesh edges ``(E, edge_dim)`` -> ``(M, B, D)``."""
        for layer in self.layers:
            nodes = maybe_checkpoint(_Block(layer, graph), nodes, edges, enabled=self.checkpointing)
        return nodes


class _Block:
    def __init__(self, layer: GraphTransformerLayer, graph: EdgeSet) -> None:
        self.layer, self.graph = layer, graph

    def __call__(self, nodes: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        return self.layer(nodes, edges, self.graph)
