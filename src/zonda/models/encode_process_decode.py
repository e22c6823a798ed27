"""The encoder-processor-decoder network on a grid/mesh graph (GraphCast layout).

::

    grid inputs (B, G, C_in) ++ grid node features --MLP--> grid latents (G, B, D)
    mesh node features                            --MLP--> mesh latents (M, 1, D)
    edge features of each edge set                --MLP--> edge latents (E, D)  (E, 32) for graph-transformer layers
    encoder    grid -> mesh  interaction network          (mappers.GridToMeshEncoder)
    processor  mesh -> mesh  'gnn' | 'graph_transformer' | 'transformer'
    decoder    mesh -> grid  interaction network + output MLP -> (B, G, C_out)

The graph (a :class:`torch_geometric.data.HeteroData` as built by
``zonda.graph.build_graph``) is copied into non-persistent buffers, so the
network moves with ``.to(device)`` and checkpoints hold parameters only; a
network is rebuilt from its params and graph artifact. Latents use the
node-major ``(N, B, D)`` layout of :mod:`zonda.models.message_passing`, so a
mini-batch shares one copy of the graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import HeteroData

from zonda.models.graph_transformer import GraphTransformerProcessor, edge_embed_dim
from zonda.models.interaction_network import GNNProcessor
from zonda.models.mappers import GridToMeshEncoder, MeshToGridDecoder
from zonda.models.message_passing import EdgeSet
from zonda.models.mlp import MLP
from zonda.models.transformer import TransformerProcessor
from zonda.params import ModelParams

ENCODER_EDGES = ("grid", "to", "mesh")
PROCESSOR_EDGES = ("mesh", "to", "mesh")
DECODER_EDGES = ("mesh", "to", "grid")


class EncodeProcessDecode(nn.Module):
    """Maps ``(B, G, in_channels)`` grid inputs to ``(B, G, out_channels)`` outputs.

    Children (the components :func:`zonda.models.summary.summary` reports):
    ``embedders`` (grid, mesh and edge MLPs), ``encoder``, ``processor``,
    ``decoder``; ``graph`` holds the edge sets (buffers only).

    Args:
        model_params: the ``model`` section of the params.
        graph: grid/mesh graph with node types ``grid``, ``mesh`` (``x``,
            ``latlon``) and the three edge types (``edge_index``, ``edge_attr``).
        in_channels: ``C_in`` input channels per grid point.
        out_channels: ``C_out`` output channels per grid point.
    """

    def __init__(self, model_params: ModelParams, graph: HeteroData, in_channels: int, out_channels: int) -> None:
        super().__init__()
        p = model_params
        dim, hidden, act = p.hidden_dim, p.mlp_hidden_layers, p.activation
        _check_graph(graph)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.num_grid, self.num_mesh = int(graph["grid"].x.shape[0]), int(graph["mesh"].x.shape[0])
        self.register_buffer("grid_features", graph["grid"].x.float().contiguous(), persistent=False)
        self.register_buffer("mesh_features", graph["mesh"].x.float().contiguous(), persistent=False)
        uses_mesh_edges = p.processor != "transformer"
        self.graph = nn.ModuleDict(_edge_sets(graph, uses_mesh_edges))
        self.embedders = nn.ModuleDict(
            {
                "grid": MLP(in_channels + self.grid_features.shape[1], dim, dim, hidden, act),
                "mesh": MLP(self.mesh_features.shape[1], dim, dim, hidden, act),
                **{name: MLP(e.attr_dim, dim, _edge_width(p, name), hidden, act) for name, e in self.graph.items()},
            }
        )
        self.encoder = GridToMeshEncoder(dim, hidden, act, chunks=p.mapper_chunks)
        self.processor = _processor(p, graph["mesh"].latlon)
        self.decoder = MeshToGridDecoder(dim, out_channels, hidden, act, chunks=p.mapper_chunks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, G, in_channels)`` -> ``(B, G, out_channels)``."""
        if x.ndim != 3 or x.shape[1] != self.num_grid or x.shape[2] != self.in_channels:
            raise ValueError(f"expected input (B, {self.num_grid}, {self.in_channels}), got {tuple(x.shape)}")
        batch = x.shape[0]
        static = self.grid_features.to(x.dtype).unsqueeze(1).expand(-1, batch, -1)
        grid = self.embedders["grid"](torch.cat([x.transpose(0, 1), static], dim=-1))  # (G, B, D)
        mesh = self.embedders["mesh"](self.mesh_features).unsqueeze(1)  # (M, 1, D)
        edges = {name: self.embedders[name](edge_set.attr) for name, edge_set in self.graph.items()}
        grid, mesh = self.encoder(grid, mesh, edges["encoder"], self.graph["encoder"])
        mesh = self.processor(mesh, edges.get("processor"), self.graph["processor"] if "processor" in self.graph else None)
        out = self.decoder(mesh, grid, edges["decoder"], self.graph["decoder"])
        return out.transpose(0, 1).contiguous()


def build_network(model_params: ModelParams, graph: HeteroData, in_channels: int, out_channels: int) -> EncodeProcessDecode:
    """The encoder-processor-decoder network of ``model_params`` on ``graph`` (see :class:`EncodeProcessDecode`)."""
    return EncodeProcessDecode(model_params, graph, in_channels, out_channels)


def _edge_width(p: ModelParams, edge_set: str) -> int:
    """Width of an embedded edge set: ``D``, but narrow for graph-transformer layers (see ``edge_embed_dim``)."""
    if edge_set == "processor" and p.processor == "graph_transformer":
        return edge_embed_dim(p.hidden_dim)
    return p.hidden_dim


def _processor(p: ModelParams, mesh_latlon: torch.Tensor) -> nn.Module:
    if p.processor == "gnn":
        return GNNProcessor(p.hidden_dim, p.processor_layers, p.mlp_hidden_layers, p.activation, p.gradient_checkpointing)
    if p.processor == "graph_transformer":
        return GraphTransformerProcessor(
            p.hidden_dim, p.processor_layers, p.num_heads, p.mlp_hidden_layers, p.activation, p.gradient_checkpointing,
            p.fused_kernels,
        )
    if p.processor == "transformer":
        return TransformerProcessor(
            p.hidden_dim, p.processor_layers, p.num_heads, mesh_latlon.cpu().numpy(), p.attention_window,
            p.mlp_hidden_layers, p.activation, p.gradient_checkpointing,
        )
    raise ValueError(f"unknown processor {p.processor!r}")


def _edge_sets(graph: HeteroData, with_processor: bool) -> dict[str, EdgeSet]:
    num = {"grid": graph["grid"].x.shape[0], "mesh": graph["mesh"].x.shape[0]}
    kinds = {"encoder": ENCODER_EDGES, "decoder": DECODER_EDGES}
    if with_processor:
        kinds["processor"] = PROCESSOR_EDGES
    return {
        name: EdgeSet(graph[key].edge_index, graph[key].edge_attr, num[key[0]], num[key[2]])
        for name, key in kinds.items()
    }


def _check_graph(graph: HeteroData) -> None:
    for node_type in ("grid", "mesh"):
        if node_type not in graph.node_types:
            raise ValueError(f"graph has no {node_type!r} nodes (node types: {graph.node_types})")
        if getattr(graph[node_type], "x", None) is None or getattr(graph[node_type], "latlon", None) is None:
            raise ValueError(f"graph[{node_type!r}] needs 'x' and 'latlon'")
    for key in (ENCODER_EDGES, PROCESSOR_EDGES, DECODER_EDGES):
        if key not in graph.edge_types:
            raise ValueError(f"graph has no {key} edges (edge types: {graph.edge_types})")
