"""Climatologies from a training period, and their values at arbitrary valid times.

Two kinds (``mode``):

``day_of_year_hour``
  WB2-style: for each hour of day present in the data and each day of year
  (1..366, ``time.dt.dayofyear``), the mean over all training years, then
  smoothed along day of year with triangular weights over a circular window of
  ``window_days`` days (``w_k = h + 1 - |k|`` for offsets ``k = -h..h``,
  ``h = window_days // 2``; days without data are left out of the weighted
  mean). Day 366 that no training year covers is taken from day 365, as in WB2.
  Layout: ``(hour, dayofyear, [level], latitude, longitude)``.

``mean``
  The time mean of the training period, ``([level], latitude, longitude)``.

``auto`` chooses ``day_of_year_hour`` when the training period covers at least
365 days (last time - first time + one time step >= 365 days), so every day of
year is seen at least once, and ``mean`` otherwise (e.g. a two-week
Held-Suarez run, which has no seasonal cycle to resolve anyway).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd
import xarray as xr

ClimatologyMode = Literal["auto", "day_of_year_hour", "mean"]
MODES = ("auto", "day_of_year_hour", "mean")
MIN_SEASONAL_COVERAGE = pd.Timedelta(days=365)
DAYS_OF_YEAR = np.arange(1, 367)


def training_coverage(times: np.ndarray | pd.DatetimeIndex) -> pd.Timedelta:
    """Period covered by ``times``: last - first + the median time step."""
    idx = pd.DatetimeIndex(np.sort(np.asarray(times, dtype="datetime64[ns]")))
    if len(idx) == 0:
        raise ValueError("the training dataset has no time steps")
    step = pd.Timedelta(np.median(np.diff(idx.asi8))) if len(idx) > 1 else pd.Timedelta(0)
    return idx[-1] - idx[0] + step


def resolve_mode(times: np.ndarray | pd.DatetimeIndex, mode: ClimatologyMode = "auto") -> str:
    """The concrete mode (``day_of_year_hour`` or ``mean``) for training ``times``."""
    if mode not in MODES:
        raise ValueError(f"climatology mode {mode!r} is not one of {MODES}")
    if mode != "auto":
        return mode
    return "day_of_year_hour" if training_coverage(times) >= MIN_SEASONAL_COVERAGE else "mean"


def triangular_window(window_days: int) -> np.ndarray:
    """``(window_days,)`` weights ``h + 1 - |k|`` for ``k = -h..h`` (not normalised)."""
    if window_days < 1 or window_days % 2 != 1:
        raise ValueError(f"window_days must be a positive odd number, got {window_days}")
    h = window_days // 2
    return (h + 1 - np.abs(np.arange(-h, h + 1))).astype(np.float64)


def smooth_day_of_year(values: np.ndarray, axis: int, window_days: int) -> np.ndarray:
    """Circular, NaN-aware triangular smoothing of ``values`` along the day-of-year ``axis``.

    ``out[d] = sum_k w_k x[d-k] / sum_k w_k [x[d-k] is finite]`` with indices
    modulo the axis length; NaN where no day in the window has data.
    """
    weights = triangular_window(window_days)
    h = window_days // 2
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    finite = np.isfinite(x)
    data = np.where(finite, x, 0.0)
    num = np.zeros_like(data)
    den = np.zeros_like(data)
    for k, w in zip(range(-h, h + 1), weights):
        num += w * np.roll(data, k, axis=0)
        den += w * np.roll(finite, k, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    return np.moveaxis(out, 0, axis)


def _hour_day_counts(times: pd.DatetimeIndex, hours: np.ndarray) -> np.ndarray:
    """``(n_hours, 366)`` number of training times per (hour of day, day of year)."""
    counts = np.zeros((len(hours), 366), dtype=np.int64)
    h_idx = np.searchsorted(hours, times.hour)
    np.add.at(counts, (h_idx, times.day_of_year - 1), 1)
    return counts


def _check_coverage(name: str, counts: np.ndarray, hours: np.ndarray, window_days: int) -> None:
    covered = smooth_day_of_year(np.where(counts > 0, 1.0, np.nan), axis=1, window_days=window_days)
    covered = np.isfinite(covered)
    covered[:, 365] |= covered[:, 364]  # day 366 falls back to day 365
    if not covered.all():
        h, d = np.nonzero(~covered)
        examples = ", ".join(f"day {dd + 1} {hours[hh]:02d}h" for hh, dd in list(zip(h, d))[:5])
        raise ValueError(
            f"climatology of {name!r}: no training data within {window_days} days for {len(h)} "
            f"(hour, day-of-year) pairs, e.g. {examples}; use mode='mean' or a larger window_days"
        )


def _day_of_year_hour_climatology(da: xr.DataArray, window_days: int) -> xr.DataArray:
    """``(hour, dayofyear, ...)`` smoothed climatology of one variable."""
    times = pd.DatetimeIndex(da["time"].values)
    hours = np.unique(times.hour)
    _check_coverage(str(da.name), _hour_day_counts(times, hours), hours, window_days)
    per_hour = []
    for hour in hours:
        sub = da.isel(time=np.flatnonzero(times.hour == hour))
        raw = sub.groupby("time.dayofyear").mean("time").reindex(dayofyear=DAYS_OF_YEAR)
        per_hour.append(raw)
    raw = xr.concat(per_hour, dim=xr.DataArray(hours.astype(np.int64), dims="hour", name="hour"))
    raw = raw.transpose("hour", "dayofyear", ...)
    smooth = smooth_day_of_year(raw.values, axis=1, window_days=window_days)
    leap = np.isnan(smooth[:, 365])
    smooth[:, 365] = np.where(leap, smooth[:, 364], smooth[:, 365])
    dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
    return raw.copy(data=smooth.astype(dtype))


def compute_climatology(
    train: xr.Dataset,
    mode: ClimatologyMode = "auto",
    *,
    window_days: int = 61,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Climatology of the time-dependent variables of a training-period dataset.

    Args:
      train: snapshot-layout dataset, variables ``(time, [level], latitude, longitude)``.
      mode: ``auto`` | ``day_of_year_hour`` | ``mean`` (see the module docstring).
      window_days: odd smoothing window for ``day_of_year_hour`` (WB2 uses 61).
      variables: which variables; default all data variables with a ``time`` dim.

    Returns:
      Dataset of the same variables and units; attrs ``climatology_mode``,
      ``window_days``, ``training_start``, ``training_end``, ``n_times``.
    """
    if "time" not in train.dims:
        raise ValueError(f"training dataset has no 'time' dim (dims {dict(train.sizes)})")
    names = list(variables) if variables is not None else [n for n in train.data_vars if "time" in train[n].dims]
    missing = [n for n in names if n not in train.data_vars]
    if missing:
        raise KeyError(f"variables {missing} are not in the training dataset")
    concrete = resolve_mode(train["time"].values, mode)
    out = {}
    for name in names:
        da = train[name]
        if "time" not in da.dims:
            raise ValueError(f"variable {name!r} has no 'time' dim; a climatology needs one")
        clim = da.mean("time") if concrete == "mean" else _day_of_year_hour_climatology(da, window_days)
        out[name] = clim.assign_attrs(da.attrs)
    times = pd.DatetimeIndex(train["time"].values)
    attrs = {
        "climatology_mode": concrete,
        "window_days": int(window_days) if concrete == "day_of_year_hour" else 0,
        "training_start": str(times.min()),
        "training_end": str(times.max()),
        "n_times": int(len(times)),
    }
    return xr.Dataset(out, attrs=attrs)


def _as_time_array(times: xr.DataArray | np.ndarray | pd.DatetimeIndex | Sequence) -> xr.DataArray:
    if isinstance(times, xr.DataArray):
        da = times
    else:
        values = np.asarray(times, dtype="datetime64[ns]")
        if values.ndim != 1:
            raise ValueError(f"times must be 1-D unless given as a DataArray, got shape {values.shape}")
        da = xr.DataArray(values, dims=["time"], coords={"time": values})
    if not np.issubdtype(da.dtype, np.datetime64):
        raise TypeError(f"times must be datetime64, got {da.dtype}")
    return da


def climatology_at(climatology: xr.Dataset, times: xr.DataArray | np.ndarray | pd.DatetimeIndex | Sequence) -> xr.Dataset:
    """The climatology at arbitrary valid ``times``.

    Args:
      climatology: from :func:`compute_climatology` (either layout).
      times: valid times; a 1-D array gives a ``time`` dim with those times as
        coordinate; a DataArray (e.g. ``(time, prediction_timedelta)`` of valid
        times) keeps its dims and coordinates.

    Returns:
      Dataset with dims ``(*times.dims, [level], latitude, longitude)``. For a
      ``mean`` climatology the values are broadcast (a read-only view).
    """
    t = _as_time_array(times)
    clim = climatology
    if "dayofyear" not in clim.dims:
        shape = xr.zeros_like(t, dtype=np.int8)
        out = clim.map(lambda da: xr.broadcast(da, shape)[0].transpose(*t.dims, ...), keep_attrs=True)
        return out.assign_coords(shape.coords)
    selection = {"dayofyear": t.dt.dayofyear}
    if "hour" in clim.dims:
        wanted = np.unique(t.dt.hour.values)
        have = clim["hour"].values
        absent = sorted(set(wanted.tolist()) - set(have.tolist()))
        if absent:
            raise KeyError(f"climatology has hours of day {have.tolist()}, not {absent} requested by the valid times")
        selection["hour"] = t.dt.hour
    out = clim.sel(selection).drop_vars(["dayofyear", "hour"], errors="ignore")
    return out.map(lambda da: da.transpose(*t.dims, ...), keep_attrs=True)
