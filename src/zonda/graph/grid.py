"""The regular latitude/longitude grid the graph is built for: axis checks and node order.

Grid nodes are numbered row-major, ``index = i_lat * n_lon + i_lon``, in the
order the axes are given (WeatherBench2: latitudes ascending from the south).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def validate_grid(latitudes: Any, longitudes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checks a regular lat/lon grid's axes and returns them as float64 (n_lat,), (n_lon,) degrees.

    Latitudes must lie in [-90, 90] and be strictly monotonic (WeatherBench2
    grids are ascending; the node order follows the given order; poles are
    allowed). Longitudes must be strictly monotonic and name distinct
    meridians (not both 0 and 360). Raises ValueError naming ``latitudes`` or
    ``longitudes``.
    """
    out = []
    for name, values in (("latitudes", latitudes), ("longitudes", longitudes)):
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: not an array of numbers ({exc})") from None
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D array of degrees, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} values are NaN or infinite")
        steps = np.diff(arr)
        if arr.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(f"{name}: values must be strictly increasing (or strictly decreasing), no repeats")
        out.append(arr + 0.0)  # + 0.0 turns -0.0 into 0.0, so equal grids hash equally
    lat, lon = out
    if lat.min() < -90.0 or lat.max() > 90.0:
        raise ValueError(f"latitudes: must lie in [-90, 90] degrees, got {lat.min():g} .. {lat.max():g}")
    if lon.max() - lon.min() >= 360.0:
        raise ValueError(
            f"longitudes: span {lon.max() - lon.min():g} degrees; the same meridian appears twice "
            "(drop the repeated 360 / -180 column)"
        )
    return lat, lon


def grid_nodes(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (n_lat * n_lon,) latitude and longitude of every grid node, row-major (lat, lon)."""
    return np.repeat(lat, lon.size), np.tile(lon, lat.size)
