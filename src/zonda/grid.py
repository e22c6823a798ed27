"""Regular latitude/longitude grids: cell-area weights and point geometry."""

from __future__ import annotations

import numpy as np


def latitude_cell_bounds(latitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper latitude bounds (degrees) of each cell of an equally spaced grid, clipped to +-90."""
    lat = np.asarray(latitudes, dtype=np.float64)
    if lat.ndim != 1 or lat.size < 2:
        raise ValueError("latitudes must be a 1-D array of at least 2 values")
    spacing = np.diff(lat)
    if not np.allclose(spacing, spacing[0], rtol=1e-6, atol=1e-9):
        raise ValueError("latitudes must be equally spaced")
    half = abs(spacing[0]) / 2.0
    return np.clip(lat - half, -90.0, 90.0), np.clip(lat + half, -90.0, 90.0)


def cell_area_weights(latitudes: np.ndarray) -> np.ndarray:
    """WeatherBench2 latitude weights: cell area, proportional to sin(upper) - sin(lower), mean 1.

    Works for grids with poles (the polar cells are half cells) and without.
    Shape ``(n_lat,)``.
    """
    lower, upper = latitude_cell_bounds(latitudes)
    w = np.abs(np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)))
    return w / w.mean()


def grid_area_weights(latitudes: np.ndarray, n_longitude: int) -> np.ndarray:
    """Cell-area weights per grid point in row-major (lat, lon) order, shape ``(n_lat * n_lon,)``, mean 1."""
    return np.repeat(cell_area_weights(latitudes), n_longitude)
