"""Forecast inputs: leads, the initial state, forcings and static fields in the Forecaster's layout.

A forecast starts from an *initial state*: an :class:`xarray.Dataset` holding
the model's prognostic variables (WB2 names and dims: ``time, level,
latitude, longitude`` for atmospheric variables, ``time, latitude,
longitude`` for surface ones) at ``T_in`` or more consecutive 6-hourly times.
The last ``T_in`` times are used; the last of them is the initialisation time.
Other variables and levels in the Dataset are ignored.

Forcings are derived from the clock (:func:`zonda.data.forcings.forcing_dataset`),
so a forecast needs no data from the future; static fields come with the
registered model (``static.nc``).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from zonda.channels import ChannelLayout, stack_forcings, stack_static
from zonda.registry.errors import InitialStateError, LeadError, RegistryError
from zonda.variables import TIME_STEP, TIME_STEP_HOURS, variable
_LEAD = re.compile(r"^\s*(\d+)\s*([dDhH])\s*$")
_GRID_ATOL_DEGREES = 1e-4
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5")


# ------------------------------------------------------------------------ leads


def parse_lead(lead: str | timedelta | np.timedelta64 | pd.Timedelta) -> int:
    """Number of 6-hour steps in a lead: ``"10d"`` -> 40, ``"36h"`` -> 6, ``"6h"`` -> 1.

    Accepts ``<int>d`` or ``<int>h`` strings and timedeltas. Raises
    :class:`LeadError` unless the lead is a positive multiple of 6 hours.
    """
    if isinstance(lead, str):
        match = _LEAD.match(lead)
        if not match:
            raise LeadError(f"lead {lead!r} is not of the form <days>d or <hours>h (e.g. 10d, 36h, 6h)")
        amount, unit = int(match.group(1)), match.group(2).lower()
        hours = amount * 24 if unit == "d" else amount
    elif isinstance(lead, (timedelta, np.timedelta64, pd.Timedelta)):
        seconds = pd.Timedelta(lead).total_seconds()
        if seconds % 3600:
            raise LeadError(f"lead {pd.Timedelta(lead)} is not a whole number of hours")
        hours = int(seconds // 3600)
    else:
        raise LeadError(f"lead must be a string such as '10d' or a timedelta, got {type(lead).__name__}")
    if hours <= 0 or hours % TIME_STEP_HOURS:
        raise LeadError(f"lead {lead!r} is {hours} h; it must be a positive multiple of {TIME_STEP_HOURS} h")
    return hours // TIME_STEP_HOURS


def format_lead(steps: int) -> str:
    """Inverse of :func:`parse_lead`: 40 -> ``"10d"``, 6 -> ``"36h"``."""
    hours = int(steps) * TIME_STEP_HOURS
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


# ------------------------------------------------------------------ reading files


def open_initial_state(path: str | os.PathLike[str]) -> xr.Dataset:
    """Opens a zarr store (directory) or a netCDF file lazily; nothing is read until selected."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: initial state not found")
    if path.is_dir():
        return xr.open_zarr(path, chunks=None, consolidated=False)
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return xr.open_dataset(path, engine="h5netcdf")
    raise InitialStateError(f"{path}: not a zarr store (directory) or a netCDF file ({', '.join(NETCDF_SUFFIXES)})")


# ------------------------------------------------------------- the initial state


def prepare_initial_state(
    ds: xr.Dataset,
    layout: ChannelLayout,
    latitudes: np.ndarray,
    longitudes: np.ndarray,
    input_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Validates an initial state and stacks its last ``input_steps`` times.

    Returns:
        ``states`` ``(input_steps, G, C)`` float32 in ``layout`` order on the
        model's grid, and their ``times`` (``datetime64[ns]``); ``times[-1]`` is
        the initialisation time.

    Raises:
        InitialStateError: naming the missing variables or levels, the grid
        mismatch, too few or irregular times, or non-finite values.
    """
    if not isinstance(ds, xr.Dataset):
        raise InitialStateError(
            f"the initial state must be an xarray.Dataset (or a path to a zarr/netCDF file), got {type(ds).__name__}"
        )
    _check_variables(ds, layout)
    times = _input_times(ds, input_steps)
    sub = ds[list(layout.variables)].isel(time=slice(-input_steps, None))
    sub = _on_model_grid(_select_levels(sub, layout), latitudes, longitudes)
    sub = sub.load()
    _check_finite(sub, layout)
    return layout.stack(sub), times


def _check_variables(ds: xr.Dataset, layout: ChannelLayout) -> None:
    missing = [name for name in layout.variables if name not in ds.data_vars]
    if missing:
        raise InitialStateError(
            f"the initial state lacks variable(s) {missing}; the model needs {list(layout.variables)} "
            f"(it has {sorted(map(str, ds.data_vars))})"
        )
    for name in layout.variables:
        expected = {"time", "latitude", "longitude"} | ({"level"} if variable(name).has_levels else set())
        dims = set(map(str, ds[name].dims))
        if dims != expected:
            raise InitialStateError(f"variable {name!r} has dims {sorted(dims)}; expected {sorted(expected)}")


def _input_times(ds: xr.Dataset, input_steps: int) -> np.ndarray:
    if "time" not in ds.coords:
        raise InitialStateError("the initial state has no 'time' coordinate")
    times = np.asarray(ds["time"].values)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InitialStateError(f"the initial state's time coordinate is {times.dtype}, not datetime64")
    if times.size < input_steps:
        raise InitialStateError(
            f"the initial state has {times.size} time(s); the model needs the last {input_steps} "
            f"({TIME_STEP_HOURS}-hourly) states before the initialisation time"
        )
    last = times[-input_steps:].astype("datetime64[ns]")
    gaps = np.diff(last)
    if (gaps != TIME_STEP.astype("timedelta64[ns]")).any():
        shown = ", ".join(str(t) for t in last)
        raise InitialStateError(
            f"the last {input_steps} times of the initial state ({shown}) are not consecutive "
            f"{TIME_STEP_HOURS}-hourly steps"
        )
    return last


def _select_levels(ds: xr.Dataset, layout: ChannelLayout) -> xr.Dataset:
    if not any(variable(name).has_levels for name in layout.variables):
        return ds
    if "level" not in ds.coords:
        raise InitialStateError("the initial state has atmospheric variables but no 'level' coordinate")
    have = [int(v) for v in np.asarray(ds["level"].values)]
    missing = [lv for lv in layout.levels if lv not in have]
    if missing:
        raise InitialStateError(
            f"the initial state lacks pressure level(s) {missing} hPa (has {have}; the model needs {list(layout.levels)})"
        )
    return ds.sel(level=list(layout.levels))


def _on_model_grid(
    ds: xr.Dataset, latitudes: np.ndarray, longitudes: np.ndarray, what: str = "the initial state"
) -> xr.Dataset:
    """The Dataset on the model's grid; a latitude axis stored north-to-south is flipped."""
    for name in ("latitude", "longitude"):
        if name not in ds.coords:
            raise InitialStateError(f"{what} has no {name!r} coordinate")
    lat, lon = np.asarray(ds["latitude"].values, float), np.asarray(ds["longitude"].values, float)
    if _same(lat[::-1], latitudes) and not _same(lat, latitudes):
        ds = ds.isel(latitude=slice(None, None, -1))
        lat = lat[::-1]
    if not (_same(lat, latitudes) and _same(lon, longitudes)):
        raise InitialStateError(
            f"{what} is on a grid of {lat.size} latitudes {_span(lat)}, {lon.size} longitudes {_span(lon)}, "
            f"not the model's ({len(latitudes)} latitudes {_span(latitudes)}, "
            f"{len(longitudes)} longitudes {_span(longitudes)}); regrid it first"
        )
    return ds.assign_coords(latitude=np.asarray(latitudes), longitude=np.asarray(longitudes))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == np.shape(b) and bool(np.allclose(a, b, atol=_GRID_ATOL_DEGREES, rtol=0))


def _span(values: np.ndarray) -> str:
    values = np.asarray(values, float)
    return f"[{values[0]:g} .. {values[-1]:g}]" if values.size else "[]"


def _check_finite(ds: xr.Dataset, layout: ChannelLayout) -> None:
    bad = [name for name in layout.variables if not np.isfinite(np.asarray(ds[name].values)).all()]
    if bad:
        raise InitialStateError(f"the initial state has NaN or infinite values in {bad} at the input times")


# --------------------------------------------------------- forcings and static


def forcing_array(names: list[str], times: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """``(T, G, F)`` float32 forcings derived from the clock, broadcast to the grid (G row-major lat, lon)."""
    from zonda.data.forcings import forcing_dataset

    blocks = []
    if names:
        ds = forcing_dataset(list(names), np.asarray(times, dtype="datetime64[ns]"), latitudes, longitudes)
        for name in names:
            da = ds[name].transpose("time", *[d for d in ("latitude", "longitude") if d in ds[name].dims])
            blocks.append((da.dims, np.asarray(da.values)))
    return stack_forcings(blocks, len(times), len(latitudes), len(longitudes))


def static_array(static: xr.Dataset, names: list[str], latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """``(G, S)`` float32 static fields in ``names`` order, checked to lie on the model's grid."""
    missing = [name for name in names if name not in static.data_vars]
    if missing:
        raise RegistryError(f"static fields {missing} are missing from the model's static.nc")
    if names:
        static = _on_model_grid(static, latitudes, longitudes, what="the model's static.nc")
    columns = [static[name].transpose("latitude", "longitude").values for name in names]
    return stack_static(columns, len(latitudes) * len(longitudes))
