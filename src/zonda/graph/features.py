"""Node and edge features (GraphCast style).

Node features: ``(cos lat, sin lon, cos lon)`` for grid and mesh nodes alike.

Edge features: ``[length, dx, dy, dz]``, where ``(dx, dy, dz)`` is the
displacement ``sender - receiver`` (3-D, unit sphere) expressed in the
*receiver's local frame*: the rotation that carries the receiver to the
reference point (lat 0, lon 0) = (1, 0, 0). That rotation is "rotate about z
by -lon, then about y by +lat"; its rows are the receiver's radial, eastward
and northward unit vectors, so ``dx`` is the radial part (always <= 0 for
points on the sphere), ``dy`` the eastward and ``dz`` the northward part.
``length`` is the chord ``|sender - receiver|`` (= the norm of the
displacement). Each edge set is divided by its own longest length, so its
lengths lie in [0, 1].
"""

from __future__ import annotations

import numpy as np

_EDGE_CHUNK = 1 << 20  # edges per block: bounds the float64 temporaries to ~100 MB


def node_features(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """float32 (N, 3) ``[cos lat, sin lon, cos lon]`` from degrees (N,)."""
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    return np.stack([np.cos(lat), np.sin(lon), np.cos(lon)], axis=1).astype(np.float32)


def local_frames(xyz: np.ndarray) -> np.ndarray:
    """float64 (N, 3, 3) rotations whose rows are the radial, east and north unit vectors.

    ``frames[i] @ xyz[i] == (1, 0, 0)``. At the poles, where east is undefined,
    the frame of longitude 0 is used (east = +y).
    """
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rho = np.hypot(x, y)
    pole = rho < 1e-15
    rho_safe = np.where(pole, 1.0, rho)
    cos_lon = np.where(pole, 1.0, x / rho_safe)
    sin_lon = np.where(pole, 0.0, y / rho_safe)
    frames = np.empty((len(xyz), 3, 3))
    frames[:, 0] = np.stack([rho * cos_lon, rho * sin_lon, z], axis=1)          # radial (= xyz)
    frames[:, 1] = np.stack([-sin_lon, cos_lon, np.zeros_like(z)], axis=1)     # east
    frames[:, 2] = np.stack([-z * cos_lon, -z * sin_lon, rho], axis=1)         # north
    return frames


def edge_features(sender_xyz: np.ndarray, receiver_xyz: np.ndarray, edge_index: np.ndarray) -> tuple[np.ndarray, float]:
    """GraphCast edge features of one edge set.

    Args:
        sender_xyz: float64 (Ns, 3) unit vectors of the sender node type.
        receiver_xyz: float64 (Nr, 3) unit vectors of the receiver node type.
        edge_index: int64 (2, E), row 0 sender, row 1 receiver.

    Returns:
        (features, scale): float32 (E, 4) ``[length, dx, dy, dz] / scale``, and
        ``scale``, the longest chord of the set (unit sphere; 1.0 for an empty
        or zero-length set). ``(dx, dy, dz) = frames[receiver] @ (sender - receiver)``
        with the frames of :func:`local_frames`, computed component-wise.
    """
    n_edges = edge_index.shape[1]
    out = np.empty((n_edges, 4), dtype=np.float64)
    sx, sy, sz = (np.ascontiguousarray(sender_xyz[:, i]) for i in range(3))
    frames = local_frames(receiver_xyz)
    px, py, pz = (np.ascontiguousarray(frames[:, 0, i]) for i in range(3))
    sin_lon, cos_lon, rho = -frames[:, 1, 0], frames[:, 1, 1], frames[:, 2, 2]
    sin_lon, cos_lon, rho = (np.ascontiguousarray(a) for a in (sin_lon, cos_lon, rho))
    for start in range(0, n_edges, _EDGE_CHUNK):
        s = edge_index[0, start:start + _EDGE_CHUNK]
        r = edge_index[1, start:start + _EDGE_CHUNK]
        rx, ry, rz = px[r], py[r], pz[r]
        dx, dy, dz = sx[s] - rx, sy[s] - ry, sz[s] - rz
        cl, sl = cos_lon[r], sin_lon[r]
        block = out[start:start + len(s)]
        block[:, 0] = np.sqrt(dx * dx + dy * dy + dz * dz)
        block[:, 1] = dx * rx + dy * ry + dz * rz                    # radial
        block[:, 2] = cl * dy - sl * dx                              # east
        block[:, 3] = rho[r] * dz - rz * (cl * dx + sl * dy)         # north
    scale = float(out[:, 0].max()) if n_edges else 0.0
    if scale <= 0.0:
        scale = 1.0
    out /= scale
    return out.astype(np.float32), scale
