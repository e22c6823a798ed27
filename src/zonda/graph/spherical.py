"""Coordinates on the unit sphere: lat/lon <-> 3-D unit vectors, chord <-> arc.

Conventions used by the whole graph package:

* latitude ``lat`` in degrees, -90 (south pole) .. 90 (north pole);
* longitude ``lon`` in degrees, any range (only ``lon mod 360`` matters);
* a position is the 3-D unit vector ``(cos lat cos lon, cos lat sin lon, sin lat)``:
  x points to (0N, 0E), y to (0N, 90E), z to the north pole;
* distances between positions are either the *chord* ``|a - b|`` (what a
  k-d tree on 3-D vectors measures) or the *arc* (great-circle angle, radians);
  ``chord = 2 sin(arc / 2)``. Both are for the unit sphere; multiply by
  :data:`EARTH_RADIUS_KM` for kilometres.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius (km) used to express unit-sphere arcs in kilometres."""


def latlon_to_xyz(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Unit vectors of points given in degrees.

    Args:
        lat_deg: latitudes, degrees, shape (N,).
        lon_deg: longitudes, degrees, shape (N,).

    Returns:
        float64 (N, 3) unit vectors (x, y, z).
    """
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def xyz_to_latlon(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees) of 3-D vectors (need not be unit length).

    Args:
        xyz: float (N, 3).

    Returns:
        (lat, lon): float64 (N,) each; lat in [-90, 90], lon in (-180, 180]
        (0 at the poles, where longitude is undefined).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    lon = np.rad2deg(np.arctan2(y, x))
    return lat, lon


def chord_to_arc(chord: np.ndarray | float) -> np.ndarray:
    """Great-circle angle (radians) of a chord length on the unit sphere (0 .. 2)."""
    return 2.0 * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0))


def arc_to_chord(arc: np.ndarray | float) -> np.ndarray:
    """Chord length on the unit sphere of a great-circle angle (radians, capped at pi)."""
    return 2.0 * np.sin(np.clip(np.asarray(arc, dtype=np.float64), 0.0, np.pi) / 2.0)


def arc_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angle (radians) between unit vectors, accurate for tiny and near-pi angles.

    Args:
        a, b: float (..., 3) unit vectors (broadcastable).

    Returns:
        float64 (...) angles in [0, pi].
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.einsum("...i,...i->...", a, b))
