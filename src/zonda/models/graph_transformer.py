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
from zonda.models.dense import linear
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
        eps: ``(E, D)`` (shared by the batch) or ``(E, B, D)`` edge terms added to keys and values.
        senders, receivers: ``(E,)`` edge end points.
        num_heads: ``H``; ``D = H * d``.

    Returns:
        ``(Nr, B, D)`` in ``q``'s dtype: per head, the softmax-weighted sum
        (over the incoming edges of each receiver) of ``v_j + eps_ij``; zero
        for a receiver without edges. Scores, softmax and sums are accumulated
        in float32 for bf16/fp16 inputs.

    A hand-written autograd function: it keeps only its inputs, the
    ``(E, B, H)`` softmax numerators and the output for the backward pass
    and recomputes the per-edge ``(E, B, D)`` keys and values there, so a
    layer stores no edge-sized activations (autograd would keep four).
    """
    return _EdgeAttention.apply(q, k, v, eps, senders, receivers, num_heads)


class _EdgeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, eps, senders, receivers, num_heads):  # noqa: ANN001, D102
        num_receivers, batch, dim = q.shape
        scale = (dim // num_heads) ** -0.5
        eps3 = eps if eps.ndim == 3 else eps.unsqueeze(1)
        products = _edge_keys(k, eps3, senders).mul_(gather(q, receivers))
        acc = _accumulation_dtype(q)
        scores = _per_head(products, num_heads).sum(-1, dtype=acc)
        del products
        p, z = segment_softmax_parts(scores * scale, receivers, num_receivers)
        weighted = _edge_keys(v, eps3, senders).to(acc)
        _per_head(weighted, num_heads).mul_(p.unsqueeze(-1))
        out = scatter_sum(weighted, receivers, num_receivers)
        _per_head(out, num_heads).div_(z.unsqueeze(-1))
        ctx.save_for_backward(q, k, v, eps, senders, receivers, p, z, out)
        ctx.num_heads, ctx.scale = num_heads, scale
        return out.to(q.dtype, copy=True)  # never hand out the saved tensor itself

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, D102
        q, k, v, eps, senders, receivers, p, z, out = ctx.saved_tensors
        heads, scale = ctx.num_heads, ctx.scale
        eps3 = eps if eps.ndim == 3 else eps.unsqueeze(1)
        # out = acc / z with acc = sum_e p_e (v_j + eps_e) and z = sum_e p_e, per receiver and head
        acc = _accumulation_dtype(q)
        grad_acc = grad_out.to(acc, copy=True)
        _per_head(grad_acc, heads).div_(z.unsqueeze(-1))
        grad_z = _per_head(grad_acc * out, heads).sum(-1)  # minus dL/dz * z, (Nr, B, H)
        grad_w = gather(grad_acc, receivers)  # (E, B, D): dL/d(p_e (v_j + eps_e))
        values = _edge_keys(v, eps3, senders).to(acc)
        grad_p = _per_head(values.mul_(grad_w), heads).sum(-1) - gather(grad_z, receivers)
        del values
        grad_values = grad_w
        _per_head(grad_values, heads).mul_(p.unsqueeze(-1))
        grad_scores = grad_p.mul_(p).mul_(scale)  # softmax numerator p = exp(score - const)
        grad_q_edges = _edge_keys(k, eps3, senders).to(acc)
        _per_head(grad_q_edges, heads).mul_(grad_scores.unsqueeze(-1))
        grad_q = scatter_sum(grad_q_edges, receivers, q.shape[0])
        del grad_q_edges
        grad_keys = gather(q, receivers).to(acc)
        _per_head(grad_keys, heads).mul_(grad_scores.unsqueeze(-1))
        grad_k = scatter_sum(grad_keys, senders, k.shape[0])
        grad_v = scatter_sum(grad_values, senders, v.shape[0])
        grad_eps = grad_keys.add_(grad_values)
        if eps.ndim == 2:  # eps was shared by the batch
            grad_eps = grad_eps.squeeze(1) if grad_eps.shape[1] == 1 else grad_eps.sum(1)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), grad_eps.to(eps.dtype), None, None, None


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs, else the input's own dtype."""
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


def _edge_keys(nodes: torch.Tensor, eps3: torch.Tensor, senders: torch.Tensor) -> torch.Tensor:
    """``nodes[s_e] + eps_e``, ``(E, B, D)``."""
    out = gather(nodes, senders)
    out += eps3
    return out


def _per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, B, D)`` -> view ``(N, B, H, D/H)``."""
    return x.view(x.shape[0], x.shape[1], heads, -1)


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
        qkv = linear(self.qkv, self.norm_attention(x))  # (M, B, 3D)
        q, k, v = qkv.view(*qkv.shape[:-1], 3, -1).permute(2, 0, 1, 3).contiguous().unbind(0)  # contiguous rows gather fast
        eps = linear(self.edge_proj, edges)
        att = edge_attention(q, k, v, eps, graph.senders, graph.receivers, self.num_heads)
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
