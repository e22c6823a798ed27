"""A flat summary of a built graph (node/edge counts, coverage, degrees, edge lengths) for logging."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch_geometric.data import HeteroData

from zonda.graph.build import DECODER, EDGE_SET_NAMES, EDGE_TYPES, ENCODER, PROCESSOR, check_schema
from zonda.graph.spherical import EARTH_RADIUS_KM, arc_between, latlon_to_xyz


def _xyz(data: HeteroData, node_type: str) -> np.ndarray:
    latlon = data[node_type].latlon.numpy().astype(np.float64)
    return latlon_to_xyz(latlon[:, 0], latlon[:, 1])


def edge_lengths_km(data: HeteroData, edge_type: tuple[str, str, str]) -> np.ndarray:
    """float64 (E,) great-circle length (km) of each edge, from the nodes' ``latlon``."""
    ei = data[edge_type].edge_index.numpy()
    src, dst = _xyz(data, edge_type[0]), _xyz(data, edge_type[2])
    return arc_between(src[ei[0]], dst[ei[1]]) * EARTH_RADIUS_KM


def graph_summary(data: HeteroData) -> dict[str, Any]:
    """Counts, coverage, degrees and edge-length statistics, as a flat ``{name: number}`` dict.

    Everything is computed from the tensors (so it also describes a loaded or
    hand-made graph); the refinement, encoder radius and covering factor are
    copied from ``data.graph_meta`` when present. Keys (all numbers, MLflow
    metric names):

    * ``nodes.grid``, ``nodes.mesh``; ``edges.<set>`` for grid_to_mesh, mesh_to_mesh, mesh_to_grid;
    * ``encoder.mesh_coverage`` / ``encoder.grid_coverage``: fraction of mesh nodes
      receiving / grid points sending >= 1 encoder edge; ``decoder.grid_coverage``:
      fraction of grid points receiving >= 1 decoder edge;
    * ``encoder.mesh_in_degree.{min,mean,max}``, ``processor.degree.{min,max}``,
      ``decoder.grid_in_degree.{min,max}``;
    * ``edge_km.<set>.{min,mean,max}``: great-circle lengths in km (R = 6371 km);
    * from the metadata: ``mesh.refinement``, ``encoder.radius_km``, ``encoder.min_covering_factor``.
    """
    check_schema(data)
    n_grid, n_mesh = int(data["grid"].num_nodes), int(data["mesh"].num_nodes)
    out: dict[str, Any] = {"nodes.grid": n_grid, "nodes.mesh": n_mesh}
    for et in EDGE_TYPES:
        out[f"edges.{EDGE_SET_NAMES[et]}"] = int(data[et].edge_index.shape[1])

    enc = data[ENCODER].edge_index.numpy()
    dec = data[DECODER].edge_index.numpy()
    proc = data[PROCESSOR].edge_index.numpy()
    mesh_in = np.bincount(enc[1], minlength=n_mesh)
    out["encoder.mesh_coverage"] = float((mesh_in > 0).mean())
    out["encoder.grid_coverage"] = float((np.bincount(enc[0], minlength=n_grid) > 0).mean())
    dec_in = np.bincount(dec[1], minlength=n_grid)
    out["decoder.grid_coverage"] = float((dec_in > 0).mean())
    out["encoder.mesh_in_degree.min"] = int(mesh_in.min())
    out["encoder.mesh_in_degree.mean"] = float(mesh_in.mean())
    out["encoder.mesh_in_degree.max"] = int(mesh_in.max())
    proc_in = np.bincount(proc[1], minlength=n_mesh)
    out["processor.degree.min"] = int(proc_in.min())
    out["processor.degree.max"] = int(proc_in.max())
    out["decoder.grid_in_degree.min"] = int(dec_in.min())
    out["decoder.grid_in_degree.max"] = int(dec_in.max())

    for et in EDGE_TYPES:
        km = edge_lengths_km(data, et)
        name = EDGE_SET_NAMES[et]
        if km.size:
            out[f"edge_km.{name}.min"] = float(km.min())
            out[f"edge_km.{name}.mean"] = float(km.mean())
            out[f"edge_km.{name}.max"] = float(km.max())

    meta = getattr(data, "graph_meta", None)
    if isinstance(meta, dict):
        out["mesh.refinement"] = int(meta["mesh"]["refinement"])
        out["encoder.radius_km"] = float(meta["encoder"]["radius_km"])
        out["encoder.min_covering_factor"] = float(meta["encoder"]["min_covering_factor"])
    return out
