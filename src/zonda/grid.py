"""Latitude/longitude grids: WeatherBench2 cell-area weights and the full-circle test of zonal spectra. The one place they are defined."""

from __future__ import annotations

import numpy as np


def latitude_cell_bounds(latitudes: np.ndarray) -> np.ndarray:
    """Cell bounds (degrees, ``n_lat + 1``) of strictly increasing latitudes.

    Bounds are the midpoints between neighbouring latitudes and +-90 at the
    ends (WB2's convention). On a regular grid this is ``lat +- dlat/2``
    clipped to +-90, so polar cells of a grid with poles are half cells.
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    if lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"latitudes must be a non-empty 1-D array, got shape {lat.shape}")
    if lat.min() < -90 or lat.max() > 90:
        raise ValueError(f"latitude outside [-90, 90]: min {lat.min()}, max {lat.max()}")
    if lat.size > 1 and not (np.diff(lat) > 0).all():
        raise ValueError("latitudes must be strictly increasing here")
    return np.concatenate([[-90.0], (lat[:-1] + lat[1:]) / 2, [90.0]])


def cell_area_weights(latitudes: np.ndarray) -> np.ndarray:
    """WB2 latitude weights: band area ``sin(upper) - sin(lower)``, normalised to mean 1, shape ``(n_lat,)``.

    Latitudes may be ascending or descending (weights follow their order).
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    descending = lat.size > 1 and lat[0] > lat[-1]
    ordered = lat[::-1] if descending else lat
    bounds = np.deg2rad(latitude_cell_bounds(ordered))
    w = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    w = w[::-1] if descending else w
    return w / w.mean()


def grid_area_weights(latitudes: np.ndarray, n_longitude: int) -> np.ndarray:
    """Cell-area weights per grid point in row-major (lat, lon) order, shape ``(n_lat * n_lon,)``, mean 1."""
    return np.repeat(cell_area_weights(latitudes), n_longitude)


def check_full_circle(longitudes: np.ndarray, *, what: str) -> None:
    """Raises ValueError starting with ``what`` unless a DFT along ``longitudes`` is a zonal wavenumber spectrum.

    It is when the longitudes are ascending, uniformly spaced and close the circle (``n * step = 360``).
    """
    lon = np.asarray(longitudes, dtype=np.float64)
    if lon.size < 2:
        raise ValueError(f"{what}: need at least 2 longitudes, got {lon.size}")
    step = np.diff(lon)  # (n_lon - 1,) degrees
    if step[0] <= 0 or np.abs(step - step[0]).max() > 1e-6:
        raise ValueError(f"{what}: longitudes must be ascending and uniformly spaced, got spacings {np.unique(step.round(6))}")
    if abs(step[0] * lon.size - 360.0) > 1e-6:
        raise ValueError(f"{what}: {lon.size} longitudes x {step[0]:g} deg do not cover the full circle (360 deg)")


def is_full_circle(longitudes: np.ndarray) -> bool:
    """Longitudes ascending, equally spaced and closing the circle (:func:`check_full_circle`)."""
    try:
        check_full_circle(longitudes, what="longitudes")
    except ValueError:
        return False
    return True
