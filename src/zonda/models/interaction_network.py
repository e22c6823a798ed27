"""GraphCast's interaction network (Battaglia et al. 2018) and the GNN processor.

One step on an edge set ``s -> r`` with latent edges ``e``::

    e'_k  = e_k + MLP_e([e_k, h_s[s_k], h_r[r_k]])
    h_r'_i = h_r_i + MLP_n([h_r_i, AGG_{k: r_k = i} e'_k])

with LayerNorm at the end of both MLPs and ``AGG`` a sum (GraphCast) or a
mean over the incoming edges. The first layer of ``MLP_e`` is applied to the
*node* tensors before they are gathered onto the edges (see
:class:`zonda.models.mlp.MLP`), which turns two of its three per-edge matmuls
into per-node ones.

Shapes: node tensors ``(N, B, D)``; edge latents ``(E, D)`` (the same for
every sample, e.g. freshly embedded edge features) or ``(E, B, D)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from zonda.models.checkpointing import maybe_checkpoint
from zonda.models.dense import dense
from zonda.models.message_passing import EdgeSet, gather, scatter_sum
from zonda.models.mlp import MLP

Aggregation = Literal["sum", "mean"]


class InteractionNetwork(nn.Module):
    """One interaction-network step (edge update, aggregation, receiver update).

    Args:
        dim: latent width ``D`` of nodes and edges.
        hidden_layers: hidden layers of both MLPs.
        activation: activation name.
        aggregation: ``sum`` (GraphCast) or ``mean`` over incoming edges.
        chunks: split the edge computation into this many chunks, each
            recomputed in the backward pass, so at most one chunk's edge
            activations live at a time (only when the updated edges are not
            returned, i.e. in the grid<->mesh mappers). Same result as 1.
    """

    def __init__(
        self,
        dim: int,
        hidden_layers: int = 1,
        activation: str = "silu",
        aggregation: Aggregation = "sum",
        chunks: int = 1,
    ) -> None:
        super().__init__()
        if aggregation not in ("sum", "mean"):
            raise ValueError(f"aggregation must be 'sum' or 'mean', got {aggregation!r}")
        self.aggregation = aggregation
        self.chunks = max(1, int(chunks))
        self.edge_mlp = MLP(
            3 * dim, dim, dim, hidden_layers, activation,
            input_parts={"edge": dim, "sender": dim, "receiver": dim},
        )
        self.node_mlp = MLP(2 * dim, dim, dim, hidden_layers, activation, input_parts={"node": dim, "aggregate": dim})

    def forward(
        self,
        senders: torch.Tensor,
        receivers: torch.Tensor,
        edges: torch.Tensor,
        graph: EdgeSet,
        update_edges: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step.

        Args:
            senders: ``(Ns, B, D)`` sender latents.
            receivers: ``(Nr, B, D)`` receiver latents.
            edges: ``(E, D)`` or ``(E, B, D)`` edge latents, in ``graph`` order.
            graph: the edge set.
            update_edges: return the updated edges ``(E, B, D)``; with False
                they are only aggregated (and ``None`` is returned for them).

        Returns:
            ``(receivers', edges')``: ``(Nr, B, D)`` and ``(E, B, D)`` or None.
        """
        if edges.ndim == 2:
            edges = edges.unsqueeze(1)
        p_send = self.edge_mlp.first_layer_part(senders, "sender")
        p_recv = self.edge_mlp.first_layer_part(receivers, "receiver", bias=True)
        if update_edges:
            messages = self._messages(p_send, p_recv, edges, graph.senders, graph.receivers)
            new_edges = edges + messages
            aggregate = scatter_sum(new_edges, graph.receivers, graph.num_receivers)
        else:
            new_edges = None
            aggregate = self._aggregate_chunked(p_send, p_recv, edges, graph)
        if self.aggregation == "mean":
            aggregate = aggregate * graph.inv_in_degree.view(-1, 1, 1).to(aggregate.dtype)
        pre = self.node_mlp.first_layer_parts([(receivers, "node"), (aggregate, "aggregate")])
        return receivers + self.node_mlp.tail(pre), new_edges

    def _messages(
        self, p_send: torch.Tensor, p_recv: torch.Tensor, edges: torch.Tensor, send: torch.Tensor, recv: torch.Tensor
    ) -> torch.Tensor:
        """``MLP_e([e, h_s, h_r])`` per edge, ``(E, B, D)``, from the projected node tensors.

        ``p_recv`` carries the first layer's bias. The in-place additions are
        safe for autograd (a gather keeps nothing of its output for backward)
        and act on whole tensors, never on views, which autograd would undo
        with extra copies in the backward pass.
        """
        parts = sorted([(p_send, send), (p_recv, recv)], key=lambda part: -part[0].shape[1])  # batched one first
        h = gather(*parts[0])
        h += gather(*parts[1])  # (E, 1|B, D), broadcast over the batch
        h += dense(edges, self.edge_mlp.first_layer_weight("edge"))
        return self.edge_mlp.tail(h)

    def _aggregate_chunked(self, p_send: torch.Tensor, p_recv: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """``sum_{k -> i} (e_k + MLP_e(...))`` ``(Nr, B, D)`` computed ``self.chunks`` edges-chunks at a time."""
        aggregate = scatter_sum(edges, graph.receivers, graph.num_receivers)  # static part, (Nr, 1|B, D)
        if self.chunks == 1:
            return aggregate + self._chunk_sum(p_send, p_recv, edges, graph.senders, graph.receivers, graph.num_receivers)
        for part in graph.chunks(self.chunks):
            args = (p_send, p_recv, edges[part], graph.senders[part], graph.receivers[part], graph.num_receivers)
            aggregate = aggregate + maybe_checkpoint(self._chunk_sum, *args, enabled=True)
        return aggregate

    def _chunk_sum(
        self, p_send: torch.Tensor, p_recv: torch.Tensor, edges: torch.Tensor, send: torch.Tensor, recv: torch.Tensor, n: int
    ) -> torch.Tensor:
        return scatter_sum(self._messages(p_send, p_recv, edges, send, recv), recv, n)


class GNNProcessor(nn.Module):
    """``layers`` interaction networks on the multi-mesh, each with its own weights.

    Args:
        dim: latent width ``D``.
        layers: number of message-passing steps.
        hidden_layers: hidden layers of every MLP.
        activation: activation name.
        checkpointing: recompute each layer in the backward pass.
    """

    def __init__(self, dim: int, layers: int, hidden_layers: int = 1, activation: str = "silu", checkpointing: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(InteractionNetwork(dim, hidden_layers, activation) for _ in range(layers))
        self.checkpointing = checkpointing

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """nodes ``(M, B, D)``, embedded mesh edges ``(E, D)`` -> nodes ``(M, B, D)``."""
        for layer in self.layers:
            nodes, edges = maybe_checkpoint(_GNNStep(layer, graph), nodes, edges, enabled=self.checkpointing)
        return nodes


class _GNNStep:
    """A processor layer as a function of tensors only (what checkpoint re-runs)."""

    def __init__(self, layer: InteractionNetwork, graph: EdgeSet) -> None:
        self.layer, self.graph = layer, graph

    def __call__(self, nodes: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer(nodes, nodes, edges, self.graph, update_edges=True)
