"""Refined icosahedral meshes and the GraphCast multi-mesh.

The base icosahedron has two vertices at the poles and two rings of five at
latitude +-atan(1/2) (about 26.57 deg), the upper ring at longitudes 0, 72, ...,
288 deg and the lower ring at 36, 108, ..., 324 deg. Each refinement splits
every triangle into four through its edge midpoints, projected back onto the
unit sphere. New nodes are appended after the old ones, so the nodes of
refinement level k are exactly the first ``10 * 4**k + 2`` nodes of any finer
mesh. That prefix property makes the multi-mesh (the union of the edges of
levels 0..r, GraphCast) a plain concatenation on the finest node indices, and
lets the level of any multi-mesh edge be read off its larger node index (every
edge of level k >= 1 has at least one endpoint created at level k).

Counts for refinement r: ``10 * 4**r + 2`` nodes, ``20 * 4**r`` faces,
``30 * 4**r`` undirected edges at level r, and
``60 * (4**(r + 1) - 1) / 3`` directed multi-mesh edges over levels 0..r
(``60 * (4**(r + 1) - 4) / 3`` without level 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zonda.graph.spherical import arc_between, chord_to_arc

MAX_REFINEMENT = 7


def num_mesh_nodes(refinement: int) -> int:
    """Nodes of the icosahedral mesh refined ``refinement`` times: 10 * 4**r + 2."""
    return 10 * 4**refinement + 2


def num_multimesh_edges(refinement: int, include_level0: bool = True) -> int:
    """Directed multi-mesh edges over levels 0..r (or 1..r): 60 * 4**k summed over the levels."""
    first = 0 if include_level0 else 1
    return sum(60 * 4**k for k in range(first, refinement + 1))


@dataclass(frozen=True)
class IcosahedralMesh:
    """An icosahedral mesh refined ``refinement`` times, with the edges of every level.

    Attributes:
        refinement: r, the number of 1-to-4 splits of the icosahedron.
        vertices: float64 (M, 3) unit vectors, M = 10 * 4**r + 2; the first
            10 * 4**k + 2 rows are the nodes of level k.
        level_faces: per level k = 0..r, int64 (20 * 4**k, 3) triangles,
            counter-clockwise seen from outside the sphere. Face f of level k
            is split into faces f + j * 20 * 4**k (j = 0..3) of level k + 1:
            j = 0, 1, 2 the corner triangles at its vertices 0, 1, 2 and j = 3
            the centre triangle of its three edge midpoints.
        level_edges: per level k = 0..r, int64 (30 * 4**k, 2) undirected edges
            (i < j) of the level-k mesh, on the finest node indices.
    """

    refinement: int
    vertices: np.ndarray
    level_faces: tuple[np.ndarray, ...]
    level_edges: tuple[np.ndarray, ...]

    @property
    def faces(self) -> np.ndarray:
        """int64 (20 * 4**r, 3) the finest triangles."""
        return self.level_faces[-1]

    @property
    def num_nodes(self) -> int:
        return int(self.vertices.shape[0])

    def nodes_per_level(self) -> np.ndarray:
        """int64 (r + 1,) node counts of levels 0..r (each a prefix of :attr:`vertices`)."""
        return np.array([num_mesh_nodes(k) for k in range(self.refinement + 1)], dtype=np.int64)

    def level_edge_arcs(self, level: int) -> np.ndarray:
        """float64 (30 * 4**level,) great-circle lengths (radians) of the level's edges."""
        e = self.level_edges[level]
        return arc_between(self.vertices[e[:, 0]], self.vertices[e[:, 1]])

    def longest_edge_arc(self, level: int | None = None) -> float:
        """Longest edge (radians) of a level (default: the finest)."""
        e = self.level_edges[self.refinement if level is None else level]
        d = self.vertices[e[:, 0]] - self.vertices[e[:, 1]]
        return float(chord_to_arc(np.sqrt(np.einsum("ij,ij->i", d, d).max())))


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """The base icosahedron: float64 (12, 3) unit vertices and int64 (20, 3) CCW faces."""
    ring_lat = np.arctan(0.5)
    k = np.arange(5)
    upper_lon = np.deg2rad(72.0 * k)
    lower_lon = np.deg2rad(72.0 * k + 36.0)
    upper = np.stack([np.cos(ring_lat) * np.cos(upper_lon), np.cos(ring_lat) * np.sin(upper_lon),
                      np.full(5, np.sin(ring_lat))], axis=1)
    lower = np.stack([np.cos(ring_lat) * np.cos(lower_lon), np.cos(ring_lat) * np.sin(lower_lon),
                      np.full(5, -np.sin(ring_lat))], axis=1)
    vertices = np.concatenate([[[0.0, 0.0, 1.0]], upper, lower, [[0.0, 0.0, -1.0]]])
    north, south = 0, 11
    u = 1 + k               # upper ring
    u1 = 1 + (k + 1) % 5    # next upper vertex
    lo = 6 + k              # lower vertex between u and u1
    lo1 = 6 + (k + 1) % 5
    faces = np.concatenate([
        np.stack([np.full(5, north), u, u1], axis=1),
        np.stack([u, lo, u1], axis=1),
        np.stack([lo, lo1, u1], axis=1),
        np.stack([np.full(5, south), lo1, lo], axis=1),
    ]).astype(np.int64)
    return vertices, orient_outward(vertices, faces)


def orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces reordered so that (b - a) x (c - a) points away from the origin (CCW from outside)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    outward = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) > 0
    return np.where(outward[:, None], faces, faces[:, [0, 2, 1]])


def unique_edges(faces: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges of a triangle mesh.

    Args:
        faces: int64 (F, 3).
        num_nodes: N, bound on the node indices.

    Returns:
        (edges, inverse): int64 (E, 2) sorted pairs (i < j), in increasing order
        of ``i * N + j``; and int64 (F, 3) index into ``edges`` of face edges
        (v0, v1), (v1, v2), (v2, v0).
    """
    a = faces
    b = np.roll(faces, -1, axis=1)
    lo = np.minimum(a, b).ravel()
    hi = np.maximum(a, b).ravel()
    keys = lo * np.int64(num_nodes) + hi
    uniq, inverse = np.unique(keys, return_inverse=True)
    edges = np.stack([uniq // num_nodes, uniq % num_nodes], axis=1)
    return edges, inverse.reshape(faces.shape)


def refine(vertices: np.ndarray, faces: np.ndarray, edges: np.ndarray,
           face_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One 1-to-4 split through the edge midpoints, which are appended after the old nodes.

    The new mesh's edges are built directly (no de-duplication): each old edge
    u = (a, b) becomes the halves 2u = (a, m) and 2u + 1 = (b, m), with m = N + u
    its midpoint node, and each old face f adds the three inner edges
    2E + 3f + (0, 1, 2) = (m01, m12), (m12, m20), (m20, m01).

    Args:
        vertices: float64 (N, 3) unit vectors.
        faces: int64 (F, 3) CCW triangles (v0, v1, v2).
        edges: int64 (E, 2) undirected edges (i < j).
        face_edges: int64 (F, 3) index in ``edges`` of each face's (v0, v1),
            (v1, v2), (v2, v0).

    Returns:
        The same four arrays for the refined mesh: (N + E, 3), (4F, 3), (2E + 3F, 2), (4F, 3).
    """
    n, n_edges, n_faces = len(vertices), len(edges), len(faces)
    mid = vertices[edges[:, 0]] + vertices[edges[:, 1]]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)

    v0, v1, v2 = faces[:, 0], faces[:, 1], faces[:, 2]
    e01, e12, e20 = face_edges[:, 0], face_edges[:, 1], face_edges[:, 2]
    m01, m12, m20 = e01 + n, e12 + n, e20 + n

    def half(e: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Index of the half of edge e that touches node v."""
        return 2 * e + (edges[e, 0] != v)

    inner = 2 * n_edges + 3 * np.arange(n_faces, dtype=np.int64)
    new_faces = np.concatenate([
        np.stack([v0, m01, m20], axis=1),
        np.stack([v1, m12, m01], axis=1),
        np.stack([v2, m20, m12], axis=1),
        np.stack([m01, m12, m20], axis=1),
    ])
    new_face_edges = np.concatenate([
        np.stack([half(e01, v0), inner + 2, half(e20, v0)], axis=1),
        np.stack([half(e12, v1), inner, half(e01, v1)], axis=1),
        np.stack([half(e20, v2), inner + 1, half(e12, v2)], axis=1),
        np.stack([inner, inner + 1, inner + 2], axis=1),
    ])
    mids = np.arange(n, n + n_edges, dtype=np.int64)
    halves = np.stack([edges, np.stack([mids, mids], axis=1)], axis=2).reshape(2 * n_edges, 2)
    inner_edges = np.stack([np.stack([m01, m12], axis=1), np.stack([m12, m20], axis=1),
                            np.stack([m20, m01], axis=1)], axis=1).reshape(3 * n_faces, 2)
    new_edges = np.concatenate([halves, np.sort(inner_edges, axis=1)])
    return np.concatenate([vertices, mid]), new_faces, new_edges, new_face_edges


def build_icosahedral_mesh(refinement: int) -> IcosahedralMesh:
    """The icosahedron refined ``refinement`` (0..7) times, with every level's edges."""
    if not isinstance(refinement, (int, np.integer)) or not 0 <= refinement <= MAX_REFINEMENT:
        raise ValueError(f"refinement must be an integer in 0..{MAX_REFINEMENT}, got {refinement!r}")
    vertices, faces = icosahedron()
    edges, face_edges = unique_edges(faces, len(vertices))
    level_faces, level_edges = [faces], [edges]
    for _ in range(int(refinement)):
        vertices, faces, edges, face_edges = refine(vertices, faces, edges, face_edges)
        level_faces.append(faces)
        level_edges.append(edges)
    return IcosahedralMesh(int(refinement), vertices, tuple(level_faces), tuple(level_edges))


def multimesh_edges(mesh: IcosahedralMesh, include_level0: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Directed multi-mesh edges: every level's edges in both directions, on the finest nodes.

    Args:
        mesh: the refined mesh.
        include_level0: keep the 60 directed edges of the icosahedron itself
            (GraphCast) or leave them out (anemoi-graphs).

    Returns:
        (edge_index, level): int64 (2, E) with row 0 = sender, row 1 = receiver,
        ordered by level (within a level: all i -> j with i < j, then j -> i);
        and int8 (E,) the level of each edge.
    """
    first = 0 if include_level0 else 1
    parts, levels = [], []
    for k in range(first, mesh.refinement + 1):
        e = mesh.level_edges[k]
        parts.append(np.concatenate([e, e[:, ::-1]]))
        levels.append(np.full(2 * e.shape[0], k, dtype=np.int8))
    if not parts:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int8)
    return np.ascontiguousarray(np.concatenate(parts).T), np.concatenate(levels)


def refinement_of(num_nodes: int) -> int:
    """r such that num_nodes == 10 * 4**r + 2; ValueError if there is none."""
    for r in range(MAX_REFINEMENT + 1):
        if num_mesh_nodes(r) == num_nodes:
            return r
    raise ValueError(f"{num_nodes} mesh nodes is not 10 * 4**r + 2 for any r in 0..{MAX_REFINEMENT}")


def node_levels(num_nodes: int) -> np.ndarray:
    """int8 (M,) the refinement level at which each node of an M-node mesh first appears."""
    r = refinement_of(num_nodes)
    bounds = np.array([num_mesh_nodes(k) for k in range(r + 1)])
    return np.searchsorted(bounds, np.arange(num_nodes), side="right").astype(np.int8)


def edge_levels(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """int8 (E,) level of each multi-mesh edge: the level of its newer endpoint.

    Valid for edges produced by :func:`multimesh_edges` (a level-0 edge joins two
    icosahedron vertices; a level-k edge always has an endpoint born at level k).
    """
    levels = node_levels(num_nodes)
    return np.maximum(levels[edge_index[0]], levels[edge_index[1]])
