"""Edge sets and the gather / scatter primitives of message passing.

Layout convention of the whole model family: node tensors are
``(N, B, D)`` (node-major, batch second). Gathering node rows onto edges is
then one ``index_select`` along dim 0 of a ``(N, B*D)`` block and scattering
messages back is one ``index_add_``, for any batch size: a mini-batch shares
the graph's index tensors, nothing is offset or copied per sample. Edge
tensors that do not depend on the sample (embedded edge features) are
``(E, D)`` and broadcast over the batch as ``(E, 1, D)``.

Edges are stored sorted by receiver (then sender), so a receiver's incoming
edges are contiguous: scatters walk their output sequentially and edge chunks
(``mapper_chunks``) touch contiguous receiver ranges.
"""

from __future__ import annotations

import torch
from torch import nn


class EdgeSet(nn.Module):
    """Directed edges ``sender -> receiver`` of one edge type, as (non-persistent) buffers.

    Args:
        edge_index: int64 ``(2, E)``, row 0 sender ids, row 1 receiver ids.
        edge_attr: float ``(E, F)`` edge features.
        num_senders: number of sender nodes ``Ns``.
        num_receivers: number of receiver nodes ``Nr``.

    Buffers (sorted by receiver, then sender): ``senders`` ``(E,)``,
    ``receivers`` ``(E,)``, ``attr`` ``(E, F)``, ``inv_in_degree`` ``(Nr,)``
    (1/number of incoming edges, 0 for a receiver without edges).
    """

    def __init__(self, edge_index: torch.Tensor, edge_attr: torch.Tensor, num_senders: int, num_receivers: int) -> None:
        super().__init__()
        edge_index = torch.as_tensor(edge_index, dtype=torch.int64)
        edge_attr = torch.as_tensor(edge_attr, dtype=torch.float32)
        _check_edges(edge_index, edge_attr, num_senders, num_receivers)
        order = torch.argsort(edge_index[1] * max(num_senders, 1) + edge_index[0], stable=True)
        senders, receivers = edge_index[0, order], edge_index[1, order]
        degree = torch.bincount(receivers, minlength=num_receivers).float()
        self.num_senders = int(num_senders)
        self.num_receivers = int(num_receivers)
        self.register_buffer("senders", senders.contiguous(), persistent=False)
        self.register_buffer("receivers", receivers.contiguous(), persistent=False)
        self.register_buffer("attr", edge_attr[order].contiguous(), persistent=False)
        self.register_buffer("inv_in_degree", torch.where(degree > 0, 1.0 / degree.clamp_min(1), 0.0), persistent=False)

    @property
    def num_edges(self) -> int:
        return int(self.senders.shape[0])

    @property
    def attr_dim(self) -> int:
        return int(self.attr.shape[1])

    def chunks(self, n: int) -> list[slice]:
        """``n`` contiguous, nearly equal slices covering all edges (empty ones dropped)."""
        bounds = torch.linspace(0, self.num_edges, n + 1).round().long().tolist()
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def extra_repr(self) -> str:
        return f"senders={self.num_senders}, receivers={self.num_receivers}, edges={self.num_edges}"


def _check_edges(edge_index: torch.Tensor, edge_attr: torch.Tensor, num_senders: int, num_receivers: int) -> None:
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be (2, E), got {tuple(edge_index.shape)}")
    if edge_attr.ndim != 2 or edge_attr.shape[0] != edge_index.shape[1]:
        raise ValueError(f"edge_attr must be (E, F) with E={edge_index.shape[1]}, got {tuple(edge_attr.shape)}")
    if edge_index.numel() and (edge_index.min() < 0 or edge_index[0].max() >= num_senders or edge_index[1].max() >= num_receivers):
        raise ValueError(f"edge_index refers to nodes outside {num_senders} senders / {num_receivers} receivers")


def gather(nodes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``nodes`` ``(N, ...)`` at ``index`` ``(E,)`` -> ``(E, ...)``.

    Differentiable; the backward pass sums the edge gradients into the nodes
    with ``index_add_`` (PyTorch's own ``index_select`` backward goes through
    a ``scatter_add_`` with a materialised ``(E, ...)`` index, several times
    slower on CPU).
    """
    if not (torch.is_grad_enabled() and nodes.requires_grad):
        return _index_rows(nodes, index)
    return _Gather.apply(nodes, index)


def _index_rows(nodes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``nodes[index]`` through 2-D views: ``index_select`` of whole rows is a memcpy per
    row, while on an ``(N, B, D)`` tensor it takes a generic path ~3x slower."""
    out = nodes.new_empty((index.shape[0],) + tuple(nodes.shape[1:]))
    torch.index_select(nodes.reshape(nodes.shape[0], -1), 0, index, out=out.view(index.shape[0], -1))
    return out


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nodes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.num_nodes = nodes.shape[0]
        return _index_rows(nodes, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return _add_rows(grad, index, ctx.num_nodes), None


def scatter_sum(values: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Sums rows of ``values`` ``(E, ...)`` into ``(num_nodes, ...)`` at ``index`` ``(E,)``.

    Differentiable; the backward pass gathers with :func:`_index_rows`.
    """
    if not (torch.is_grad_enabled() and values.requires_grad):
        return _add_rows(values, index, num_nodes)
    return _ScatterSum.apply(values, index, num_nodes)


def _add_rows(values: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    out = values.new_zeros((num_nodes,) + tuple(values.shape[1:]))
    return out.index_add_(0, index, values)


class _ScatterSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        ctx.save_for_backward(index)
        return _add_rows(values, index, num_nodes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (index,) = ctx.saved_tensors
        return _index_rows(grad.contiguous(), index), None, None


def segment_softmax_parts(scores: torch.Tensor, index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised softmax weights per receiver group.

    Args:
        scores: ``(E, ...)`` float scores.
        index: ``(E,)`` receiver of each edge.
        num_nodes: number of receivers.

    Returns:
        ``(p, z)``: ``p = exp(scores - max over the edge's group)`` ``(E, ...)``
        and ``z`` ``(num_nodes, ...)`` the group sums of ``p``, with 1 for a
        receiver that has no edges, so ``p / z[index]`` is the softmax over
        each receiver's incoming edges. Subtracting the group max (constant
        per group, so no gradient is needed through it) keeps ``exp`` finite.
    """
    expanded = index.view((-1,) + (1,) * (scores.ndim - 1)).expand_as(scores)
    with torch.no_grad():
        group_max = scores.new_full((num_nodes,) + tuple(scores.shape[1:]), float("-inf"))
        group_max.scatter_reduce_(0, expanded, scores.detach(), reduce="amax", include_self=True)
        group_max = torch.nan_to_num(group_max, neginf=0.0)
    p = torch.exp(scores - gather(group_max, index))
    z = scatter_sum(p, index, num_nodes)
    z = z + (z == 0).to(z.dtype)
    return p, z


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of ``scores`` ``(E, ...)`` over the edges sharing a receiver ``index`` ``(E,)``."""
    p, z = segment_softmax_parts(scores, index, num_nodes)
    return p / gather(z, index)
