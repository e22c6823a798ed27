"""Grid <-> mesh mappers: the encoder and decoder interaction networks (GraphCast).

Encoder (grid -> mesh): one interaction network on the grid->mesh edges
updates the mesh latents; the grid latents get their own residual MLP
(GraphCast updates the sender side of the bipartite step too). Encoder edge
latents are only aggregated, never returned, so their computation can be
split into ``chunks`` (``ModelParams.mapper_chunks``) to bound memory.

Decoder (mesh -> grid): one interaction network on the mesh->grid edges
updates the grid latents, then an output MLP without LayerNorm maps them to
the output channels.
"""

from __future__ import annotations

import torch
from torch import nn

from zonda.models.interaction_network import InteractionNetwork
from zonda.models.message_passing import EdgeSet
from zonda.models.mlp import MLP


class GridToMeshEncoder(nn.Module):
    """Args: dim ``D``, hidden_layers, activation, chunks (edge chunks)."""

    def __init__(self, dim: int, hidden_layers: int = 1, activation: str = "silu", chunks: int = 1) -> None:
        super().__init__()
        self.interaction = InteractionNetwork(dim, hidden_layers, activation, chunks=chunks)
        self.grid_mlp = MLP(dim, dim, dim, hidden_layers, activation)

    def forward(
        self, grid: torch.Tensor, mesh: torch.Tensor, edges: torch.Tensor, graph: EdgeSet
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """grid ``(G, B, D)``, mesh ``(M, 1|B, D)``, edges ``(E, D)`` -> grid ``(G, B, D)``, mesh ``(M, B, D)``."""
        mesh, _ = self.interaction(grid, mesh, edges, graph, update_edges=False)
        return grid + self.grid_mlp(grid), mesh


class MeshToGridDecoder(nn.Module):
    """Args: dim ``D``, out_channels, hidden_layers, activation, chunks (edge chunks)."""

    def __init__(self, dim: int, out_channels: int, hidden_layers: int = 1, activation: str = "silu", chunks: int = 1):
        super().__init__()
        self.interaction = InteractionNetwork(dim, hidden_layers, activation, chunks=chunks)
        self.output_mlp = MLP(dim, dim, out_channels, hidden_layers, activation, layer_norm=False)

    def forward(self, mesh: torch.Tensor, grid: torch.Tensor, edges: torch.Tensor, graph: EdgeSet) -> torch.Tensor:
        """mesh ``(M, B, D)``, grid ``(G, B, D)``, edges ``(E, D)`` -> ``(G, B, out_channels)``."""
        grid, _ = self.interaction(mesh, grid, edges, graph, update_edges=False)
        return self.output_mlp(grid)
