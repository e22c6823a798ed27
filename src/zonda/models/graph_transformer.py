"""Graph-transformer processor (the AIFS / Anemoi ``GraphTransformer`` family).

Each layer is a pre-norm transformer block whose attention runs over the
mesh edges only: receiver ``i`` attends to its senders ``j`` with the edge
embedding ``eps_ij`` added to keys and values (Shi et al. 2021, "Masked label
prediction", as used by AIFS)::

    a_ij  = softmax_{j -> i}( q_i . (k_j + eps_ij) / sqrt(d) )      per head
    out_i = sum_{j -> i} a_ij (v_j + eps_ij)
    x     = x + W_o out(LN(x))
    x     = x + MLP(LN(x))

The softmax is taken over each receiver's incoming edges. ``eps`` is a
per-layer linear projection of the embedded mesh-edge features (width
:func:`edge_embed_dim`), the same for every sample of a batch.
"""

from __future__ import annotations

import torch
from torch import nn

from zonda.models.checkpointing import maybe_checkpoint
from zonda.models.message_passing import EdgeSet, gather, scatter_sum, segment_softmax_parts
from zonda.models.mlp import MLP

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


def edge_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: torch.Tensor,
    senders: torch.Tensor,
    receivers: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """Multi-head attention restricted to graph edges, edge features in keys and values.

    Args:
        q: ``(Nr, B, D)`` queries of the receivers.
        k, v: ``(Ns, B, D)`` keys and values of the senders.
        eps: ``(E, D)`` or ``(E, B, D)`` edge terms added to keys and values.
        senders, receivers: ``(E,)`` edge end points.
        num_heads: ``H``; ``D = H * d``.

    Returns:
        ``(Nr, B, D)``: per head, the softmax-weighted sum (over the incoming
        edges of each receiver) of ``v_j + eps_ij``; zero for a receiver
        without edges. Scores, softmax and the weighted sum are accumulated in
        float32 even under bf16 autocast.
    """
    num_receivers, batch, dim = q.shape
    head_dim = dim // num_heads
    eps = eps.unsqueeze(1) if eps.ndim == 2 else eps
    keys = gather(k, senders)
    keys += eps
    scores = (gather(q, receivers) * keys).view(-1, batch, num_heads, head_dim).sum(-1, dtype=torch.float32)
    p, z = segment_softmax_parts(scores * head_dim**-0.5, receivers, num_receivers)
    values = gather(v, senders)
    values += eps
    weighted = values.view(-1, batch, num_heads, head_dim) * p.unsqueeze(-1)
    out = scatter_sum(weighted, receivers, num_receivers) / z.unsqueeze(-1)
    return out.view(num_receivers, batch, dim)


class GraphTransformerLayer(nn.Module):
    """Pre-norm graph-attention block on one (homogeneous) edge set.

    Args:
        dim: model width ``D``.
        num_heads: attention heads (divides ``D``).
        edge_dim: width of the embedded edge features.
        hidden_layers: hidden layers of the feed-forward MLP (at least 1),
            each ``MLP_RATIO * D`` wide.
        activation: activation name.
    """

    def __init__(self, dim: int, num_heads: int, edge_dim: int, hidden_layers: int = 1, activation: str = "silu") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.edge_proj = nn.Linear(edge_dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, MLP_RATIO * dim, dim, max(1, hidden_layers), activation, layer_norm=False)

    def forward(self, x: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """x ``(M, B, D)``, embedded edges ``(E, edge_dim)`` -> ``(M, B, D)``."""
        q, k, v = self.qkv(self.norm_attention(x)).chunk(3, dim=-1)
        eps = self.edge_proj(edges)
        att = edge_attention(q, k, v, eps, graph.senders, graph.receivers, self.num_heads)
        x = x + self.out_proj(att.to(q.dtype))
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
    """

    def __init__(
        self, dim: int, layers: int, num_heads: int, hidden_layers: int = 1, activation: str = "silu", checkpointing: bool = False
    ) -> None:
        super().__init__()
        self.edge_dim = edge_embed_dim(dim)
        self.layers = nn.ModuleList(
            GraphTransformerLayer(dim, num_heads, self.edge_dim, hidden_layers, activation) for _ in range(layers)
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
