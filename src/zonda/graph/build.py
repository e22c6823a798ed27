"""Builds the encoder-processor-decoder graph (GraphCast multi-mesh) for a lat/lon grid.

Output: a :class:`torch_geometric.data.HeteroData` with exactly

* node types ``"grid"`` (G = n_lat * n_lon nodes, index ``i_lat * n_lon + i_lon``)
  and ``"mesh"`` (M = 10 * 4**r + 2 nodes), each with ``x`` float32 (N, 3)
  ``[cos lat, sin lon, cos lon]`` and ``latlon`` float32 (N, 2) degrees;
* edge types ``("grid", "to", "mesh")`` (encoder), ``("mesh", "to", "mesh")``
  (multi-mesh processor) and ``("mesh", "to", "grid")`` (decoder), each with
  ``edge_index`` int64 (2, E) (row 0 sender, row 1 receiver) and ``edge_attr``
  float32 (E, 4) ``[length, dx, dy, dz]`` (see :mod:`zonda.graph.features`).

plus one graph-level attribute ``graph_meta`` (a JSON-able dict: schema
version, content hash, params, grid coordinates, coverage, edge-length scales).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import HeteroData

from zonda.graph import grid_mesh_connectivity as conn
from zonda.graph.features import edge_features, node_features
from zonda.graph.grid import grid_nodes, validate_grid
from zonda.graph.hashing import SCHEMA_VERSION, as_graph_params, graph_hash
from zonda.graph.icosahedral_mesh import build_icosahedral_mesh, multimesh_edges
from zonda.graph.spherical import EARTH_RADIUS_KM, latlon_to_xyz, xyz_to_latlon
from zonda.params import GraphParams

NODE_TYPES = ("grid", "mesh")
ENCODER = ("grid", "to", "mesh")
PROCESSOR = ("mesh", "to", "mesh")
DECODER = ("mesh", "to", "grid")
EDGE_TYPES = (ENCODER, PROCESSOR, DECODER)
EDGE_SET_NAMES = {ENCODER: "grid_to_mesh", PROCESSOR: "mesh_to_mesh", DECODER: "mesh_to_grid"}


class GraphCoverageError(ValueError):
    """Some mesh node has no encoder edge, or some grid point no decoder edge."""


class GraphCoverageWarning(UserWarning):
    """The same condition as :class:`GraphCoverageError`, with ``on_uncovered='warn'``."""


# --------------------------------------------------------------------- build


def _coverage_message(params: GraphParams, lat: np.ndarray, lon: np.ndarray, n_mesh: int, uncovered_mesh: int,
                      n_grid: int, undecoded_grid: int, min_factor: float, level_factors: np.ndarray,
                      radius_deg: float) -> str:
    parts = []
    if uncovered_mesh:
        parts.append(
            f"{uncovered_mesh:,} of {n_mesh:,} mesh nodes ({100.0 * uncovered_mesh / n_mesh:.1f}%) have no encoder "
            f"(grid->mesh) edge: no grid point lies within graph.encoder_radius_factor="
            f"{params.encoder_radius_factor:g} x the longest mesh edge ({radius_deg:.3g} deg) of them, so they get no input"
        )
    if undecoded_grid:
        parts.append(f"{undecoded_grid:,} of {n_grid:,} grid points have no decoder (mesh->grid) edge")
    spacing = float(np.max(np.abs(np.diff(lat)), initial=0.0)), float(np.max(np.abs(np.diff(lon)), initial=0.0))
    hint = [f"grid {lat.size}x{lon.size} (spacing up to {spacing[0]:.4g} deg lat, {spacing[1]:.4g} deg lon)"]
    if uncovered_mesh:
        ok_levels = np.flatnonzero(level_factors <= params.encoder_radius_factor)
        coarser = (f"a coarser graph.refinement (<= {int(ok_levels.max())} covers every mesh node at this factor)"
                   if ok_levels.size else "a coarser graph.refinement")
        enough = (math.floor(min_factor * 1000.0) + 1) / 1000.0   # strictly above the minimum: it does cover
        hint.append(f"use {coarser} or a larger graph.encoder_radius_factor (>= {enough:g} covers every mesh node "
                    f"at refinement {params.refinement})")
    return "; ".join(parts) + ". " + "; ".join(hint) + "."


def build_graph(graph_params: GraphParams, latitudes: np.ndarray, longitudes: np.ndarray) -> HeteroData:
    """Builds the grid/mesh graph (see the module docstring for the exact schema).

    Args:
        graph_params: refinement r, multi-mesh level 0 on/off, encoder radius
            factor, decoder kind ('containing_triangle' or 'knn' with decoder_k),
            and what to do about uncovered nodes (``on_uncovered``).
        latitudes: (n_lat,) degrees, strictly monotonic (WB2: ascending), poles allowed.
        longitudes: (n_lon,) degrees, strictly monotonic, distinct meridians.

    Returns:
        HeteroData with node types grid/mesh, edge types grid->mesh, mesh->mesh,
        mesh->grid, and ``graph_meta`` (dict).

    Raises:
        GraphCoverageError: with ``on_uncovered='error'``, when a mesh node has
            no encoder edge or a grid point no decoder edge (the message gives
            counts and the refinement / radius factor that would cover).
        ValueError: bad grid axes (the message names ``latitudes``/``longitudes``).
    """
    params = as_graph_params(graph_params)
    lat, lon = validate_grid(latitudes, longitudes)
    n_lat, n_lon = lat.size, lon.size
    grid_lat, grid_lon = grid_nodes(lat, lon)
    grid_xyz = latlon_to_xyz(grid_lat, grid_lon)

    mesh = build_icosahedral_mesh(params.refinement)
    mesh_xyz = mesh.vertices
    mesh_lat, mesh_lon = xyz_to_latlon(mesh_xyz)
    mesh_tree = cKDTree(mesh_xyz, balanced_tree=False)
    n_grid, n_mesh = grid_xyz.shape[0], mesh_xyz.shape[0]

    # Encoder: every mesh node within the radius of each grid point.
    level_longest = np.array([mesh.longest_edge_arc(k) for k in range(mesh.refinement + 1)])
    longest = float(level_longest[-1])
    radius = params.encoder_radius_factor * longest
    enc_grid, enc_mesh, enc_arc = conn.radius_edges(grid_xyz, mesh_tree, radius)

    # Decoder.
    if params.decoder == "containing_triangle":
        face, _ = conn.containing_triangles(grid_xyz, mesh, mesh_tree)
        dec_grid, dec_mesh = conn.triangle_edges(face, mesh.faces)
    else:
        dec_grid, dec_mesh = conn.knn_edges(grid_xyz, mesh_tree, min(params.decoder_k, n_mesh))

    # Coverage. A covered mesh node's nearest grid point is within the radius, so
    # it is its shortest encoder edge; only uncovered nodes need a grid search.
    mesh_in = np.bincount(enc_mesh, minlength=n_mesh)
    grid_out = np.bincount(enc_grid, minlength=n_grid)
    grid_dec = np.bincount(dec_grid, minlength=n_grid)
    nearest_grid = np.full(n_mesh, np.inf)
    np.minimum.at(nearest_grid, enc_mesh, enc_arc)
    uncovered = np.flatnonzero(mesh_in == 0)
    if uncovered.size:
        nearest_grid[uncovered] = conn.nearest_distance(mesh_xyz[uncovered], grid_xyz)
    prefix_max = np.maximum.accumulate(nearest_grid)
    level_factors = prefix_max[mesh.nodes_per_level() - 1] / level_longest
    min_factor = float(level_factors[-1])
    undecoded = int((grid_dec == 0).sum())

    content_hash = graph_hash(params, lat, lon)
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "graph_hash": content_hash,
        "params": params.model_dump(mode="json"),
        "grid": {"n_lat": int(n_lat), "n_lon": int(n_lon), "latitudes": lat.tolist(), "longitudes": lon.tolist()},
        "mesh": {
            "refinement": mesh.refinement,
            "num_nodes": int(n_mesh),
            "num_faces": int(mesh.faces.shape[0]),
            "longest_edge_deg": float(np.rad2deg(longest)),
            "longest_edge_km": longest * EARTH_RADIUS_KM,
        },
        "encoder": {
            "radius_deg": float(np.rad2deg(radius)),
            "radius_km": radius * EARTH_RADIUS_KM,
            "mesh_coverage": float((mesh_in > 0).mean()),
            "grid_coverage": float((grid_out > 0).mean()),
            "uncovered_mesh_nodes": int(uncovered.size),
            "min_covering_factor": min_factor,
            "min_covering_factor_per_level": [float(f) for f in level_factors],
        },
        "decoder": {"kind": params.decoder, "grid_coverage": float((grid_dec > 0).mean()),
                    "uncovered_grid_points": undecoded},
    }

    if uncovered.size or undecoded:
        message = _coverage_message(params, lat, lon, n_mesh, int(uncovered.size), n_grid, undecoded, min_factor,
                                    level_factors, float(np.rad2deg(radius)))
        if params.on_uncovered == "error":
            raise GraphCoverageError(message)
        warnings.warn(message, GraphCoverageWarning, stacklevel=2)

    # Edge sets and features.
    enc_index = np.stack([enc_grid, enc_mesh])
    proc_index, _ = multimesh_edges(mesh, params.multimesh_include_level0)
    dec_index = np.stack([dec_mesh, dec_grid])
    enc_attr, enc_scale = edge_features(grid_xyz, mesh_xyz, enc_index)
    proc_attr, proc_scale = edge_features(mesh_xyz, mesh_xyz, proc_index)
    dec_attr, dec_scale = edge_features(mesh_xyz, grid_xyz, dec_index)
    meta["edge_length_scale"] = {"grid_to_mesh": enc_scale, "mesh_to_mesh": proc_scale, "mesh_to_grid": dec_scale}

    data = HeteroData()
    data["grid"].x = torch.from_numpy(node_features(grid_lat, grid_lon))
    data["grid"].latlon = torch.from_numpy(np.stack([grid_lat, grid_lon], axis=1).astype(np.float32))
    data["mesh"].x = torch.from_numpy(node_features(mesh_lat, mesh_lon))
    data["mesh"].latlon = torch.from_numpy(np.stack([mesh_lat, mesh_lon], axis=1).astype(np.float32))
    for key, index, attr in ((ENCODER, enc_index, enc_attr), (PROCESSOR, proc_index, proc_attr),
                             (DECODER, dec_index, dec_attr)):
        data[key].edge_index = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
        data[key].edge_attr = torch.from_numpy(attr)
    data.graph_meta = meta
    return data


def check_schema(data: HeteroData) -> None:
    """Raises ValueError naming the first field that breaks the graph schema."""
    if set(data.node_types) != set(NODE_TYPES):
        raise ValueError(f"node types: expected {sorted(NODE_TYPES)}, got {sorted(data.node_types)}")
    if set(data.edge_types) != set(EDGE_TYPES):
        raise ValueError(f"edge types: expected {sorted(EDGE_TYPES)}, got {sorted(data.edge_types)}")
    sizes = {}
    for nt in NODE_TYPES:
        store = data[nt]
        for field in ("x", "latlon"):
            value = getattr(store, field, None)
            width = 3 if field == "x" else 2
            if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or value.ndim != 2 \
                    or value.shape[1] != width:
                raise ValueError(f"{nt}.{field}: expected a float32 (N, {width}) tensor, got "
                                 f"{getattr(value, 'dtype', type(value))} {tuple(getattr(value, 'shape', ()))}")
        if data[nt].x.shape[0] != data[nt].latlon.shape[0]:
            raise ValueError(f"{nt}.latlon: {data[nt].latlon.shape[0]} rows but {nt}.x has {data[nt].x.shape[0]}")
        sizes[nt] = data[nt].x.shape[0]
    for et in EDGE_TYPES:
        name = EDGE_SET_NAMES[et]
        ei, ea = getattr(data[et], "edge_index", None), getattr(data[et], "edge_attr", None)
        if not isinstance(ei, torch.Tensor) or ei.dtype != torch.int64 or ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"{name}.edge_index: expected an int64 (2, E) tensor")
        if not isinstance(ea, torch.Tensor) or ea.dtype != torch.float32 or ea.shape != (ei.shape[1], 4):
            raise ValueError(f"{name}.edge_attr: expected a float32 ({ei.shape[1]}, 4) tensor")
        if ei.numel():
            for row, nt in ((0, et[0]), (1, et[2])):
                lo, hi = int(ei[row].min()), int(ei[row].max())
                if lo < 0 or hi >= sizes[nt]:
                    raise ValueError(f"{name}.edge_index[{row}]: indices {lo}..{hi} outside 0..{sizes[nt] - 1} ({nt})")
