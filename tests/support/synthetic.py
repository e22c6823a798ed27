"""A WB2-like synthetic source: plausible values, 6-hourly, latitude ascending, CF units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

UNITS = {
    "temperature": "K",
    "geopotential": "m**2 s**-2",
    "u_component_of_wind": "m s**-1",
    "v_component_of_wind": "m s**-1",
    "surface_pressure": "Pa",
    "geopotential_at_surface": "m**2 s**-2",
}


def synthetic_dataset(
    n_time: int = 56,
    levels: tuple[int, ...] = (250, 500, 850),
    n_lat: int = 32,
    n_lon: int = 64,
    start: str = "2000-01-01",
    seed: int = 0,
) -> xr.Dataset:
    """A WB2-like Dataset with plausible values (per level for geopotential): 6-hourly, latitude ascending, CF units."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n_time, freq="6h")
    dlat = 180.0 / n_lat
    lat = np.linspace(-90 + dlat / 2, 90 - dlat / 2, n_lat)
    lon = np.arange(n_lon) * 360.0 / n_lon
    shape4 = (n_time, len(levels), n_lat, n_lon)

    def field(base, scale, shape=shape4):
        return (base + scale * rng.standard_normal(shape)).astype("f4")

    # Geopotential of each level by the hypsometric equation for an isothermal 250 K column over
    # 1013.25 hPa: Phi = R T ln(p0 / p), about 5.1e4 m2 s-2 at 500 hPa, 1.3e4 at 850 hPa.
    z_base = (287.0 * 250.0 * np.log(1013.25 / np.asarray(levels, dtype="f8")))[:, None, None]  # (level, 1, 1)

    ds = xr.Dataset(
        {
            "temperature": (("time", "level", "latitude", "longitude"), field(250.0, 10.0)),
            "geopotential": (("time", "level", "latitude", "longitude"), field(z_base, 1.0e3)),
            "u_component_of_wind": (("time", "level", "latitude", "longitude"), field(5.0, 10.0)),
            "v_component_of_wind": (("time", "level", "latitude", "longitude"), field(0.0, 10.0)),
            "surface_pressure": (("time", "latitude", "longitude"), field(1.0e5, 500.0, (n_time, n_lat, n_lon))),
            "geopotential_at_surface": (("latitude", "longitude"), np.zeros((n_lat, n_lon), "f4")),
        },
        coords={"time": times, "level": np.asarray(levels), "latitude": lat, "longitude": lon},
    )
    for name, units in UNITS.items():
        ds[name].attrs["units"] = units
    return ds


def write_zarr(ds: xr.Dataset, path: Path) -> Path:
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def append_step(store: str | Path, *, zarr_format: int = 3) -> None:
    """One more 6-hourly step at the end of the store's time axis (as ERA5T grows); a v2 store is reconsolidated."""
    ds = xr.open_zarr(store, chunks=None, consolidated=zarr_format == 2)
    last = ds.isel(time=[-1]).load()
    last = last.assign_coords(time=last["time"].values + np.timedelta64(6, "h"))
    for var in last.variables.values():
        var.encoding = {}
    last[[n for n in last.data_vars if "time" in last[n].dims]].to_zarr(
        store, append_dim="time", zarr_format=zarr_format, consolidated=zarr_format == 2
    )
