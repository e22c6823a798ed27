"""Edges between the lat/lon grid and the mesh: encoder radius query, decoder triangles or k-NN.

All positions are float64 (N, 3) unit vectors (see :mod:`zonda.graph.spherical`).
Radii are great-circle angles in radians; the k-d trees on 3-D vectors work in
chords, so every radius is converted with ``chord = 2 sin(arc / 2)`` before a
query (an arc radius compared directly with chords would admit slightly too
many neighbours).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from zonda.graph.icosahedral_mesh import IcosahedralMesh
from zonda.graph.spherical import arc_to_chord, chord_to_arc

_BARY_TOL = 1e-9   # a point this close outside a triangle edge (in barycentric units) counts as inside
_CHUNK = 1 << 17   # grid points per vectorised block in the triangle search (bounds memory)


def _workers(n_queries: int) -> int:
    """k-d tree threads: all cores for big queries, one for small ones (thread start-up dominates)."""
    return -1 if n_queries >= 100_000 else 1


def radius_edges(grid_xyz: np.ndarray, mesh_tree: cKDTree, radius_arc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (grid point, mesh node) pair within a great-circle radius.

    One k-nearest query with k a little above the expected count in a cap of
    that radius; the rows whose k-th neighbour is still inside the radius are
    queried again with twice the k, until none is.

    Args:
        grid_xyz: float64 (G, 3) grid points.
        mesh_tree: k-d tree over the float64 (M, 3) mesh nodes.
        radius_arc: radius, radians.

    Returns:
        (grid_index, mesh_index, arc): int64 (E,), int64 (E,), float64 (E,) radians;
        ordered by grid point, then by distance.
    """
    n, m = len(grid_xyz), mesh_tree.n
    radius_chord = float(arc_to_chord(radius_arc))
    expected = m * (1.0 - np.cos(min(radius_arc, np.pi))) / 2.0     # mesh nodes in a cap, on average
    k = int(min(m, max(4, np.ceil(2.0 * expected + 4))))
    rows = np.arange(n)
    grid_parts, mesh_parts, dist_parts = [], [], []
    while rows.size:
        dist, idx = mesh_tree.query(grid_xyz[rows], k=k, distance_upper_bound=radius_chord, workers=_workers(rows.size))
        dist, idx = dist.reshape(rows.size, k), idx.reshape(rows.size, k)
        full = (idx[:, -1] < m) & (k < m)
        done = ~full
        valid = (idx < m) & done[:, None]
        grid_parts.append(np.broadcast_to(rows[:, None], idx.shape)[valid])
        mesh_parts.append(idx[valid])
        dist_parts.append(dist[valid])
        rows, k = rows[full], min(m, 2 * k)
    grid_index = np.concatenate(grid_parts).astype(np.int64)
    order = np.argsort(grid_index, kind="stable") if len(grid_parts) > 1 else slice(None)
    return (grid_index[order], np.concatenate(mesh_parts).astype(np.int64)[order],
            chord_to_arc(np.concatenate(dist_parts))[order])


def knn_edges(grid_xyz: np.ndarray, mesh_tree: cKDTree, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest mesh nodes of every grid point.

    Returns:
        (grid_index, mesh_index): int64 (G * k,) each, grid-major, nearest first.
    """
    _, idx = mesh_tree.query(grid_xyz, k=k, workers=_workers(len(grid_xyz)))
    idx = np.asarray(idx, dtype=np.int64).reshape(len(grid_xyz), k)
    grid_index = np.repeat(np.arange(len(grid_xyz), dtype=np.int64), k)
    return grid_index, idx.ravel()


def incident_faces(faces: np.ndarray, num_nodes: int) -> np.ndarray:
    """int64 (M, D) faces around each node, D = max degree; short rows repeat their first face."""
    flat = faces.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=num_nodes)
    if counts.min() == 0:
        raise ValueError("mesh has a node that belongs to no face")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(flat.size) - np.repeat(starts, counts)
    table = np.repeat((order[starts] // 3)[:, None], counts.max(), axis=1)
    table[flat[order], slot] = order // 3
    return table


def _triple(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """float64 (P,) det(a, b, p) = p . (a x b) for (P, 3) arrays: > 0 iff p is left of the arc a -> b."""
    return (p[:, 0] * (a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1])
            + p[:, 1] * (a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2])
            + p[:, 2] * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))


def barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Normalised (gnomonic) barycentric coordinates of points in spherical triangles.

    The point p is written as p ~ alpha a + beta b + gamma c (its central
    projection onto the triangle's plane); all three are >= 0 iff p lies in the
    spherical triangle (a, b, c), taken counter-clockwise from outside.

    Args:
        points: float64 (P, 3) unit vectors.
        corners: float64 (P, 3, 3) the triangle (a, b, c) for each point.

    Returns:
        float64 (P, 3) coordinates summing to 1; a point on the far side of the
        sphere (where the projection does not exist) gets (-1, -1, -1).
    """
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    raw = np.stack([_triple(b, c, points), _triple(c, a, points), _triple(a, b, points)], axis=1)
    total = raw.sum(axis=1, keepdims=True)
    return np.where(total > 0, raw / np.where(total > 0, total, 1.0), -1.0)


def _min3(x: np.ndarray) -> np.ndarray:
    """Row minimum of a (P, 3) array (element-wise; faster than a strided reduction)."""
    return np.minimum(np.minimum(x[:, 0], x[:, 1]), x[:, 2])


def _descent_tables(mesh: IcosahedralMesh) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plane normals for :func:`_descend`.

    Returns:
        (level0, centre): float64 (4, 5, 3) normals of the great circles that split
        the icosahedron (see :func:`_icosahedron_face`); and per level k = 1..r a
        float64 (F_{k-1}, 3, 3) table whose row f holds m20 x m01, m01 x m12,
        m12 x m20 for the centre child (m01, m12, m20) of face f of level k - 1.
    """
    v = mesh.vertices
    k = np.arange(5)
    north, upper, lower, south = v[0], v[1 + k], v[6 + k], v[11]
    upper1, lower1 = v[1 + (k + 1) % 5], v[6 + (k + 1) % 5]

    def facing(normals: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Normals flipped so that the reference points (5, 3) or (3,) lie on their positive side."""
        return normals * np.sign(np.einsum("kj,kj->k", normals, np.broadcast_to(ref, normals.shape)))[:, None]

    level0 = np.stack([
        facing(np.cross(upper, upper1), north),   # north of the upper ring's arc k: top cap face k
        facing(np.cross(lower, lower1), south),   # south of the lower ring's arc k: bottom cap face 15 + k
        facing(np.cross(upper, lower), upper1),   # east of edge U_k - L_k: face 5 + k
        facing(np.cross(lower, upper1), upper),   # west of edge L_k - U_k+1: face 5 + k
    ])
    centre = []
    for level in range(1, mesh.refinement + 1):
        n_parent = len(mesh.level_faces[level - 1])
        tri = mesh.level_faces[level][3 * n_parent:]
        m01, m12, m20 = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
        centre.append(np.stack([np.cross(m20, m01), np.cross(m01, m12), np.cross(m12, m20)], axis=1))
    return level0, centre


def _icosahedron_face(points: np.ndarray, level0: np.ndarray) -> np.ndarray:
    """int64 (P,) the face of the base icosahedron (:func:`icosahedron` layout) containing each point.

    The layout: node 0 the north pole, 1 + k the upper ring at longitude 72k,
    6 + k the lower ring at 72k + 36, 11 the south pole; faces k (N, U_k, U_k+1),
    5 + k (U_k, L_k, U_k+1), 10 + k (L_k, L_k+1, U_k+1), 15 + k (S, L_k+1, L_k).
    A point in the 72 deg sector j = floor(lon / 72) is in top face j if it lies
    north of the arc U_j - U_j+1; else, with j' = floor((lon - 36) / 72), in bottom
    face j' if south of the arc L_j' - L_j'+1; else in the band, where one edge
    (U_j - L_j in the sector's western half, L_j - U_j+1 in its eastern half)
    separates face 5 + j from face 10 + j'. Every test is a plane through the
    origin, so it is exact up to rounding.
    """
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    lon = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    j = np.minimum((lon // 72.0).astype(np.int64), 4)
    jp = np.mod(np.floor((lon - 36.0) / 72.0).astype(np.int64), 5)
    west = lon - 72.0 * j < 36.0

    def side(normals: np.ndarray, idx: np.ndarray) -> np.ndarray:
        n = normals[idx]
        return x * n[:, 0] + y * n[:, 1] + z * n[:, 2]

    band_edge = np.where(west, side(level0[2], j), side(level0[3], j))
    return np.where(side(level0[0], j) >= 0, j,
                    np.where(side(level0[1], jp) >= 0, 15 + jp,
                             np.where(band_edge >= 0, 5 + j, 10 + jp)))


def _descend(points: np.ndarray, mesh: IcosahedralMesh, tables: tuple[np.ndarray, list[np.ndarray]]) -> np.ndarray:
    """int64 (P,) finest face containing each point, by descent through the refinement levels.

    Level 0: :func:`_icosahedron_face`. Level k: of the 4 children of the face
    found at level k - 1, the corner child beyond one of the centre triangle's
    edges, else the centre child (3 plane tests per point and level). Exact up
    to rounding for points on a shared edge, which the caller checks.
    """
    level0, centre = tables
    face = _icosahedron_face(points, level0)
    for k in range(1, mesh.refinement + 1):
        sides = np.einsum("pij,pj->ip", centre[k - 1][face], points)   # (3, P); < 0: beyond that centre edge
        s0, s1, s2 = sides
        child = np.where((s0 <= s1) & (s0 <= s2), 0, np.where(s1 <= s2, 1, 2))
        child = np.where(np.minimum(np.minimum(s0, s1), s2) < 0, child, 3)
        face = face + len(mesh.level_faces[k - 1]) * child
    return face


def containing_triangles(grid_xyz: np.ndarray, mesh: IcosahedralMesh,
                         mesh_tree: cKDTree) -> tuple[np.ndarray, np.ndarray]:
    """The finest mesh triangle that contains each grid point, and its barycentric coordinates.

    Found by descent through the refinement levels (:func:`_descend`); a point
    that rounding sent astray (more than 1e-9 outside the triangle found) is
    searched again among the triangles around its 12 nearest mesh nodes, then
    among all triangles. A point on a shared edge or vertex gets one of the
    triangles that contain it.

    Args:
        grid_xyz: float64 (G, 3).
        mesh: the refined mesh (its triangles cover the sphere).
        mesh_tree: k-d tree over ``mesh.vertices`` (used only for the rare re-search).

    Returns:
        (face, bary): int64 (G,) index into ``mesh.faces``; float64 (G, 3)
        coordinates >= 0 summing to 1 (w.r.t. ``mesh.faces[face]``). A face of
        -1 marks a point that no triangle contains (impossible for a closed mesh).
    """
    faces, v = mesh.faces, mesh.vertices
    n = len(grid_xyz)
    face = np.empty(n, dtype=np.int64)
    bary = np.empty((n, 3))
    tables = _descent_tables(mesh)
    for start in range(0, n, _CHUNK):
        pts = grid_xyz[start:start + _CHUNK]
        f = _descend(pts, mesh, tables)
        face[start:start + len(pts)] = f
        bary[start:start + len(pts)] = barycentric(pts, v[faces[f]])

    missing = np.flatnonzero(_min3(bary) < -_BARY_TOL)
    if missing.size:
        table = incident_faces(faces, len(v))
        k = min(12, len(v))
        _, near = mesh_tree.query(grid_xyz[missing], k=k)
        candidates = table[np.asarray(near).reshape(len(missing), k)].reshape(len(missing), -1)
        _search(grid_xyz, missing, candidates, v, faces, face, bary)
        missing = np.flatnonzero(_min3(bary) < -_BARY_TOL)
        step = max(1, (1 << 20) // len(faces))
        for start in range(0, missing.size, step):
            sel = missing[start:start + step]
            _search(grid_xyz, sel, np.broadcast_to(np.arange(len(faces)), (len(sel), len(faces))), v, faces, face, bary)
        missing = np.flatnonzero(_min3(bary) < -_BARY_TOL)
        face[missing] = -1
    bary = np.clip(bary, 0.0, None)
    bary /= np.where(bary.sum(axis=1, keepdims=True) > 0, bary.sum(axis=1, keepdims=True), 1.0)
    return face, bary


def _search(points: np.ndarray, sel: np.ndarray, candidates: np.ndarray, v: np.ndarray, faces: np.ndarray,
            face: np.ndarray, bary: np.ndarray) -> None:
    """Updates face/bary of points ``sel`` with the best of (len(sel), C) candidate faces, where better."""
    n_sel, n_cand = candidates.shape
    pts = np.repeat(points[sel], n_cand, axis=0)
    coords = barycentric(pts, v[faces[candidates.ravel()]]).reshape(n_sel, n_cand, 3)
    worst = coords.min(axis=2)
    best = worst.argmax(axis=1)
    rows = np.arange(n_sel)
    better = worst[rows, best] > bary[sel].min(axis=1)
    face[sel[better]] = candidates[rows, best][better]
    bary[sel[better]] = coords[rows, best][better]


def triangle_edges(face: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decoder edges from each grid point's containing triangle (its 3 vertices).

    Args:
        face: int64 (G,) from :func:`containing_triangles`; -1 entries get no edges.
        faces: int64 (F, 3).

    Returns:
        (grid_index, mesh_index): int64 (3 * covered,) each, grid-major.
    """
    ok = np.flatnonzero(face >= 0)
    return np.repeat(ok, 3), faces[face[ok]].ravel()


def nearest_distance(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 (P,) great-circle distance (radians) from each point to its nearest target."""
    if len(points) == 0:
        return np.zeros(0)
    dist, _ = cKDTree(targets, balanced_tree=False).query(points, k=1, workers=_workers(len(points)))
    return chord_to_arc(dist)
