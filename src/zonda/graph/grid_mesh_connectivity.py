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


def _descend(points: np.ndarray, mesh: IcosahedralMesh) -> np.ndarray:
    """int64 (P,) finest face containing each point, by descent through the refinement levels.

    Level 0: the best of the 20 icosahedron faces. Level k: of the 4 children of
    the face found at level k - 1, the corner child beyond one of the centre
    triangle's edges, else the centre child (3 sign tests per point and level).
    Exact up to rounding for points on a shared edge, which the caller checks.
    """
    v = mesh.vertices
    f0 = mesh.level_faces[0]
    a, b, c = v[f0[:, 0]], v[f0[:, 1]], v[f0[:, 2]]
    normals = np.concatenate([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1).reshape(-1, 3)
    raw = (points @ normals.T).reshape(len(points), len(f0), 3)          # (P, 20, 3)
    total = raw.sum(axis=2)
    score = np.where(total > 0, raw.min(axis=2) / np.where(total > 0, total, 1.0), -np.inf)
    face = score.argmax(axis=1)
    for k in range(1, mesh.refinement + 1):
        n_parent = len(mesh.level_faces[k - 1])
        centre = mesh.level_faces[k][3 * n_parent + face]                 # (P, 3): m01, m12, m20
        m01, m12, m20 = v[centre[:, 0]], v[centre[:, 1]], v[centre[:, 2]]
        sides = np.stack([_triple(m20, m01, points), _triple(m01, m12, points), _triple(m12, m20, points)], axis=1)
        corner = sides.argmin(axis=1)
        outside = sides[np.arange(len(points)), corner] < 0
        face = face + n_parent * np.where(outside, corner, 3)
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
    for start in range(0, n, _CHUNK):
        pts = grid_xyz[start:start + _CHUNK]
        f = _descend(pts, mesh)
        face[start:start + len(pts)] = f
        bary[start:start + len(pts)] = barycentric(pts, v[faces[f]])

    missing = np.flatnonzero(bary.min(axis=1) < -_BARY_TOL)
    if missing.size:
        table = incident_faces(faces, len(v))
        k = min(12, len(v))
        _, near = mesh_tree.query(grid_xyz[missing], k=k)
        candidates = table[np.asarray(near).reshape(len(missing), k)].reshape(len(missing), -1)
        _search(grid_xyz, missing, candidates, v, faces, face, bary)
        missing = np.flatnonzero(bary.min(axis=1) < -_BARY_TOL)
        step = max(1, (1 << 20) // len(faces))
        for start in range(0, missing.size, step):
            sel = missing[start:start + step]
            _search(grid_xyz, sel, np.broadcast_to(np.arange(len(faces)), (len(sel), len(faces))), v, faces, face, bary)
        missing = np.flatnonzero(bary.min(axis=1) < -_BARY_TOL)
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
