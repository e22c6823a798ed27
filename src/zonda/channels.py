"""Channel layout: how a snapshot's variables and levels map onto network channels.

A snapshot stores WB2-style variables (``temperature`` with dims ``(time, level,
latitude, longitude)``, ``surface_pressure`` with ``(time, latitude, longitude)``).
Networks see a flat ``(..., G, C)`` array, ``G = n_lat * n_lon`` grid points in
row-major (latitude, longitude) order and ``C`` channels in the order given by
:attr:`ChannelLayout.names`: atmospheric variables level by level, then
surface variables.  This module is the single source of truth for that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import xarray as xr

from zonda.variables import variable


def channel_name(name: str, level: int | None) -> str:
    """``temperature/500`` for an atmospheric channel, ``surface_pressure`` otherwise."""
    return name if level is None else f"{name}/{level}"


@dataclass(frozen=True)
class ChannelLayout:
    """Ordered channels of a set of variables on a set of pressure levels."""

    variables: tuple[str, ...]
    levels: tuple[int, ...]

    @classmethod
    def of(cls, variables: Sequence[str], levels: Sequence[int]) -> "ChannelLayout":
        atmos = [v for v in variables if variable(v).has_levels]
        other = [v for v in variables if not variable(v).has_levels]
        return cls(tuple(atmos + other), tuple(sorted(int(lv) for lv in levels)))

    @property
    def entries(self) -> list[tuple[str, int | None]]:
        """(variable, level or None) per channel, in channel order."""
        out: list[tuple[str, int | None]] = []
        for name in self.variables:
            if variable(name).has_levels:
                out.extend((name, lv) for lv in self.levels)
            else:
                out.append((name, None))
        return out

    @property
    def names(self) -> list[str]:
        return [channel_name(n, lv) for n, lv in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def index(self, name: str, level: int | None = None) -> int:
        return self.names.index(channel_name(name, level))

    def stack(self, ds: xr.Dataset) -> np.ndarray:
        """``(..., G, C)`` float32 array from a Dataset holding the layout's variables.

        Leading dims (e.g. ``time``) are kept in the Dataset's order; the grid
        is flattened latitude-major.
        """
        parts = []
        for name in self.variables:
            da = ds[name]
            if variable(name).has_levels:
                da = da.sel(level=list(self.levels)).transpose(..., "level", "latitude", "longitude")
                arr = np.asarray(da.values, dtype=np.float32)
                arr = np.moveaxis(arr, -3, -1)  # (..., lat, lon, level)
            else:
                da = da.transpose(..., "latitude", "longitude")
                arr = np.asarray(da.values, dtype=np.float32)[..., None]
            parts.append(arr.reshape(arr.shape[:-3] + (-1, arr.shape[-1])))
        return np.concatenate(parts, axis=-1)

    def unstack(
        self,
        array: np.ndarray,
        latitude: np.ndarray,
        longitude: np.ndarray,
        leading: dict[str, np.ndarray] | None = None,
    ) -> xr.Dataset:
        """Inverse of :meth:`stack`: ``(*leading, G, C)`` -> Dataset with WB2 dims.

        ``leading`` maps the names of the leading dims to their coordinates, in order.
        """
        leading = leading or {}
        lead_dims = list(leading)
        n_lat, n_lon = len(latitude), len(longitude)
        array = np.asarray(array)
        if array.shape[-1] != len(self):
            raise ValueError(f"array has {array.shape[-1]} channels, layout has {len(self)}")
        if array.shape[-2] != n_lat * n_lon:
            raise ValueError(f"array has {array.shape[-2]} grid points, expected {n_lat}x{n_lon}")
        grid = array.reshape(array.shape[:-2] + (n_lat, n_lon, array.shape[-1]))
        data_vars = {}
        c = 0
        for name in self.variables:
            meta = variable(name)
            if meta.has_levels:
                k = len(self.levels)
                block = np.moveaxis(grid[..., c : c + k], -1, -3)
                data_vars[name] = (lead_dims + ["level", "latitude", "longitude"], block, {"units": meta.units, "long_name": meta.long_name})
                c += k
            else:
                data_vars[name] = (lead_dims + ["latitude", "longitude"], grid[..., c], {"units": meta.units, "long_name": meta.long_name})
                c += 1
        coords = {**{k: v for k, v in leading.items()}, "latitude": latitude, "longitude": longitude}
        if any(variable(n).has_levels for n in self.variables):
            coords["level"] = np.asarray(self.levels, dtype=np.int32)
        return xr.Dataset(data_vars, coords=coords)

    def pressure_of_channels(self) -> np.ndarray:
        """Pressure level (hPa) per channel; NaN for surface channels."""
        return np.array([np.nan if lv is None else float(lv) for _, lv in self.entries])


def stack_forcings(blocks: Sequence[tuple[Sequence[str], np.ndarray]], n_times: int, n_lat: int, n_lon: int) -> np.ndarray:
    """``(T, G, F)`` float32 forcings on the grid (``G`` row-major latitude, longitude).

    Args:
        blocks: one ``(dims, values)`` per forcing, in channel order; ``dims``
            is ``("time",)``, ``("time", "longitude")`` or ``("time",
            "latitude", "longitude")`` and ``values`` has those dimensions
            (a clock forcing is broadcast over the grid, a local-time one over
            the latitudes).
        n_times, n_lat, n_lon: ``T`` and the grid's shape.
    """
    out = np.empty((n_times, n_lat * n_lon, len(blocks)), dtype=np.float32)
    for f, (dims, values) in enumerate(blocks):
        dims = tuple(dims)
        if dims == ("time",):
            out[:, :, f] = values[:, None]
        elif dims == ("time", "longitude"):
            out[:, :, f] = np.broadcast_to(values[:, None, :], (n_times, n_lat, n_lon)).reshape(n_times, -1)
        elif dims == ("time", "latitude", "longitude"):
            out[:, :, f] = values.reshape(n_times, -1)
        else:
            raise ValueError(f"forcing {f} has dims {dims}; expected (time,), (time, longitude) or (time, latitude, longitude)")
    return out


def stack_static(columns: Sequence[np.ndarray], n_points: int) -> np.ndarray:
    """``(G, S)`` float32 static fields from ``(latitude, longitude)`` arrays, in channel order."""
    if not columns:
        return np.zeros((n_points, 0), dtype=np.float32)
    return np.stack([np.asarray(c, dtype=np.float32).reshape(-1) for c in columns], axis=-1)
