"""Icosahedral mesh and multi-mesh: counts, geometry and neighbourhoods against known figures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from zonda.graph.icosahedral_mesh import (
    build_icosahedral_mesh,
    edge_levels,
    multimesh_edges,
    num_mesh_nodes,
    num_multimesh_edges,
)

# Central angle of an icosahedron edge: arccos(1 / sqrt(5)) = 63.4349 deg.
ICOSAHEDRON_EDGE = np.arccos(1.0 / np.sqrt(5.0))
MESH6 = build_icosahedral_mesh(6)


def _level_vertices(k: int) -> np.ndarray:
    return MESH6.vertices[: 10 * 4**k + 2]


@pytest.mark.parametrize("r", range(7))
def test_node_face_and_multimesh_edge_counts(r):
    mesh = build_icosahedral_mesh(r)
    assert mesh.num_nodes == 10 * 4**r + 2 == num_mesh_nodes(r)
    assert mesh.faces.shape == (20 * 4**r, 3)
    ei, levels = multimesh_edges(mesh, include_level0=True)
    assert ei.shape == (2, 60 * (4 ** (r + 1) - 1) // 3) == (2, num_multimesh_edges(r))
    assert ei.dtype == np.int64 and ei.min() >= 0 and ei.max() < mesh.num_nodes
    # Each undirected edge appears exactly once per direction, no self loops.
    keys = ei[0] * mesh.num_nodes + ei[1]
    assert np.unique(keys).size == ei.shape[1]
    assert np.array_equal(np.sort(keys), np.sort(ei[1] * mesh.num_nodes + ei[0]))
    assert not np.any(ei[0] == ei[1])
    # The level recorded with an edge is the one recoverable from its node indices.
    assert np.array_equal(edge_levels(ei, mesh.num_nodes), levels)
    ei_anemoi, _ = multimesh_edges(mesh, include_level0=False)
    assert ei_anemoi.shape[1] == ei.shape[1] - 60 == num_multimesh_edges(r, include_level0=False)


def test_published_m5_m6_figures():
    # GraphCast (M6) and the anemoi-graphs convention without the icosahedron's own edges.
    assert MESH6.num_nodes == 40_962
    assert multimesh_edges(MESH6, True)[0].shape[1] == 327_660
    assert multimesh_edges(MESH6, False)[0].shape[1] == 327_600
    m5 = build_icosahedral_mesh(5)
    assert m5.num_nodes == 10_242
    assert multimesh_edges(m5, True)[0].shape[1] == 81_900
    assert multimesh_edges(m5, False)[0].shape[1] == 81_840


def test_nodes_are_unit_vectors_with_poles_and_distinct():
    v = MESH6.vertices
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-14)
    assert np.allclose(v[0], [0, 0, 1]) and np.allclose(v[11], [0, 0, -1])
    nearest, _ = cKDTree(v).query(v, k=2)
    assert nearest[:, 1].min() > 0.5 * np.sin(ICOSAHEDRON_EDGE / 2**6)


@pytest.mark.parametrize("k", range(7))
def test_level_edges_have_the_levels_spacing(k):
    # Bisection halves the original icosahedron edges exactly; every other edge of a
    # geodesic subdivision is at most ~1.2x that (no edge skips over a node).
    e = MESH6.level_edges[k]
    v = MESH6.vertices
    arc = np.arccos(np.clip(np.einsum("ij,ij->i", v[e[:, 0]], v[e[:, 1]]), -1, 1))
    nominal = ICOSAHEDRON_EDGE / 2**k
    assert arc.min() == pytest.approx(nominal, rel=1e-9)
    assert arc.max() <= 1.2 * nominal
    assert MESH6.longest_edge_arc(k) == pytest.approx(arc.max(), rel=1e-12)


@pytest.mark.parametrize("k", range(7))
def test_level_edges_join_exactly_the_nearest_neighbours(k):
    v = _level_vertices(k)
    n = len(v)
    e = MESH6.level_edges[k]
    assert e.max() < n  # a level's edges use only that level's nodes
    degree = np.bincount(e.ravel(), minlength=n)
    assert set(np.unique(degree)) <= {5, 6}
    assert (degree == 5).sum() == 12  # the icosahedron's vertices; all others have 6
    # Independent reference: each node's `degree` nearest nodes (k-d tree) are its neighbours.
    _, idx = cKDTree(v).query(v, k=7)
    rank = np.arange(1, 7)[None, :]
    mask = rank <= degree[:, None]
    pairs = np.stack([np.repeat(np.arange(n), 6).reshape(n, 6)[mask], idx[:, 1:][mask]], axis=1)
    knn_keys = np.unique(np.sort(pairs, axis=1) @ np.array([n, 1]))
    mesh_keys = np.sort(np.sort(e, axis=1) @ np.array([n, 1]))
    assert np.array_equal(knn_keys, mesh_keys)


def test_faces_tile_the_sphere_outward():
    v, f = MESH6.vertices, MESH6.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    triple = np.einsum("ij,ij->i", a, np.cross(b, c))
    assert (triple > 0).all()  # counter-clockwise seen from outside
    # Van Oosterom-Strackee spherical excess; the triangles' areas add up to 4 pi.
    denom = 1 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c) + np.einsum("ij,ij->i", c, a)
    area = 2 * np.arctan2(triple, denom)
    assert area.sum() == pytest.approx(4 * np.pi, rel=1e-12)
    # Every finest edge borders exactly two faces.
    n = MESH6.num_nodes
    face_edges = np.sort(np.stack([f, np.roll(f, -1, axis=1)], axis=2).reshape(-1, 2), axis=1) @ np.array([n, 1])
    _, counts = np.unique(face_edges, return_counts=True)
    assert counts.size == MESH6.level_edges[-1].shape[0] and (counts == 2).all()


def test_refinement_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="refinement"):
        build_icosahedral_mesh(8)
