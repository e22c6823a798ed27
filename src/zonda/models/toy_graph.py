"""A small grid/mesh graph with the layout of ``zonda.graph.build_graph``, for tests and benchmarks.

Mesh nodes are a Fibonacci lattice on the sphere (near-uniform, any count);
edges come from nearest-neighbour searches instead of an icosahedral
multi-mesh: each mesh node receives from its ``encoder_k`` nearest grid
points, each grid point from its ``decoder_k`` nearest mesh nodes, and mesh
nodes are linked to their ``mesh_k`` nearest mesh neighbours in both
directions. Node and edge features follow the zonda convention: nodes
``(cos lat, sin lon, cos lon)``; edges ``[length, dx, dy, dz]``, the chord and
the sender-minus-receiver displacement in the receiver's (radial, east,
north) frame, divided by the longest chord of the edge set.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import HeteroData


def fibonacci_latlon(n: int) -> np.ndarray:
    """``(n, 2)`` float64 (lat, lon) degrees of the ``n``-point Fibonacci lattice."""
    i = np.arange(n) + 0.5
    lat = np.rad2deg(np.arcsin(1.0 - 2.0 * i / n))
    lon = np.mod(np.rad2deg(np.pi * (1.0 + 5.0**0.5) * i), 360.0)
    return np.stack([lat, lon], axis=1)


def regular_latlon(latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """``(n_lat * n_lon, 2)`` (lat, lon) degrees of a row-major lat/lon grid."""
    lat, lon = np.meshgrid(np.asarray(latitudes, float), np.asarray(longitudes, float), indexing="ij")
    return np.stack([lat.ravel(), lon.ravel()], axis=1)


def toy_graph(
    latitudes: np.ndarray,
    longitudes: np.ndarray,
    num_mesh: int,
    encoder_k: int = 4,
    decoder_k: int = 3,
    mesh_k: int = 6,
) -> HeteroData:
    """Grid/mesh HeteroData: node types ``grid``, ``mesh``; edge types grid->mesh, mesh->mesh, mesh->grid."""
    grid_ll, mesh_ll = regular_latlon(latitudes, longitudes), fibonacci_latlon(num_mesh)
    grid_xyz, mesh_xyz = _xyz(grid_ll), _xyz(mesh_ll)
    data = HeteroData()
    for name, ll in (("grid", grid_ll), ("mesh", mesh_ll)):
        data[name].x = torch.from_numpy(_node_features(ll))
        data[name].latlon = torch.from_numpy(ll.astype(np.float32))
    edges = {
        ("grid", "to", "mesh"): _knn_edges(grid_xyz, mesh_xyz, encoder_k),
        ("mesh", "to", "mesh"): _symmetric_knn(mesh_xyz, mesh_k),
        ("mesh", "to", "grid"): _knn_edges(mesh_xyz, grid_xyz, decoder_k),
    }
    xyz = {"grid": grid_xyz, "mesh": mesh_xyz}
    for key, index in edges.items():
        data[key].edge_index = torch.from_numpy(index)
        data[key].edge_attr = torch.from_numpy(_edge_features(xyz[key[0]], xyz[key[2]], index))
    return data


def _xyz(latlon: np.ndarray) -> np.ndarray:
    lat, lon = np.deg2rad(latlon[:, 0]), np.deg2rad(latlon[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _node_features(latlon: np.ndarray) -> np.ndarray:
    lat, lon = np.deg2rad(latlon[:, 0]), np.deg2rad(latlon[:, 1])
    return np.stack([np.cos(lat), np.sin(lon), np.cos(lon)], axis=1).astype(np.float32)


def _knn_edges(sender_xyz: np.ndarray, receiver_xyz: np.ndarray, k: int) -> np.ndarray:
    """int64 ``(2, Nr*k)``: each receiver gets an edge from each of its ``k`` nearest senders."""
    k = min(k, len(sender_xyz))
    _, nearest = cKDTree(sender_xyz).query(receiver_xyz, k=k)
    nearest = np.asarray(nearest).reshape(len(receiver_xyz), k)
    receivers = np.repeat(np.arange(len(receiver_xyz)), k)
    return np.stack([nearest.ravel(), receivers]).astype(np.int64)


def _symmetric_knn(xyz: np.ndarray, k: int) -> np.ndarray:
    """Both directions of every k-nearest-neighbour pair (no self loops, no duplicates)."""
    _, nearest = cKDTree(xyz).query(xyz, k=min(k + 1, len(xyz)))
    src = nearest[:, 1:].ravel()
    dst = np.repeat(np.arange(len(xyz)), nearest.shape[1] - 1)
    pairs = np.unique(np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1), axis=1)
    return pairs.astype(np.int64)


def _edge_features(sender_xyz: np.ndarray, receiver_xyz: np.ndarray, index: np.ndarray) -> np.ndarray:
    s, r = sender_xyz[index[0]], receiver_xyz[index[1]]
    d = s - r
    rho = np.hypot(r[:, 0], r[:, 1])
    cos_lon = np.where(rho > 1e-12, r[:, 0] / np.maximum(rho, 1e-12), 1.0)
    sin_lon = np.where(rho > 1e-12, r[:, 1] / np.maximum(rho, 1e-12), 0.0)
    east = np.stack([-sin_lon, cos_lon, np.zeros_like(rho)], axis=1)
    north = np.stack([-r[:, 2] * cos_lon, -r[:, 2] * sin_lon, rho], axis=1)
    local = np.stack([(d * r).sum(1), (d * east).sum(1), (d * north).sum(1)], axis=1)
    length = np.linalg.norm(d, axis=1, keepdims=True)
    feats = np.concatenate([length, local], axis=1)
    return (feats / max(float(length.max(initial=0.0)), 1e-12)).astype(np.float32)
