"""Space-filling-curve order of points on the sphere (for windowed attention).

A sliding attention window over "nearby nodes in sequence order" is only
spatially local if the sequence order is. :func:`hilbert_order` sorts points
along a Hilbert curve drawn over the equirectangular (longitude, latitude)
plane: consecutive points are close on the sphere except where the curve
crosses the dateline seam or runs along the poles, where the plane
stretches. The order depends only on the coordinates (ties, which distinct
points practically never have at 2**16 cells per axis, are broken by
latitude, then longitude), so it does not depend on how the nodes are
numbered.
"""

from __future__ import annotations

import numpy as np

_BITS = 16


def hilbert_index(x: np.ndarray, y: np.ndarray, bits: int = _BITS) -> np.ndarray:
    """Distance along the Hilbert curve of cells ``(x, y)`` of a ``2**bits`` square.

    x, y: integer arrays in ``[0, 2**bits)``, same shape -> int64 array of that shape.
    """
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    n = np.int64(1) << bits
    d = np.zeros_like(x)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def hilbert_order(latlon: np.ndarray, bits: int = _BITS) -> np.ndarray:
    """Permutation ``(N,)`` that sorts points ``latlon`` ``(N, 2)`` (degrees) along the curve."""
    latlon = np.asarray(latlon, dtype=np.float64)
    lat, lon = latlon[:, 0], np.mod(latlon[:, 1], 360.0)
    cells = (1 << bits) - 1
    x = np.clip(np.floor(lon / 360.0 * (cells + 1)), 0, cells)
    y = np.clip(np.floor((lat + 90.0) / 180.0 * (cells + 1)), 0, cells)
    key = hilbert_index(x, y, bits)
    return np.lexsort((lon, lat, key))
