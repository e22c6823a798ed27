"""Checks a source must pass before a snapshot is written.

Structural checks (:func:`check_structure`) read only metadata and coordinates
and run before any heavy compute; value checks (:func:`check_values`) run on
each block as it streams into the snapshot. Every failure names the variable
and, for values, the valid time.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from zonda.data.time_steps import time_step_problems
from zonda.standard_atmosphere import layer_mean_temperature
from zonda.variables import TIME_STEP_HOURS, variable

# Unit spellings that mean the same thing as the catalogue's.
_UNIT_SYNONYMS = {
    "m**2 s**-2": {"m**2 s**-2", "m2 s-2", "m^2/s^2", "m2/s2", "m**2/s**2", "m^2 s^-2"},
    "m s**-1": {"m s**-1", "m s-1", "m/s", "m s^-1", "meter second-1"},
    "K": {"K", "kelvin", "degK"},
    "Pa": {"Pa", "pascal"},
    "Pa s**-1": {"Pa s**-1", "Pa s-1", "Pa/s"},
    "kg kg**-1": {"kg kg**-1", "kg kg-1", "kg/kg", "1"},
    "J m**-2": {"J m**-2", "J m-2", "J/m2"},
    "m": {"m", "metre", "meter"},
    "1": {"1", "", "(0 - 1)", "dimensionless", "~"},
}


class SnapshotValidationError(ValueError):
    """The source fails validation; the message lists every problem found."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("snapshot validation failed:\n  - " + "\n  - ".join(self.problems))


def units_match(expected: str, actual: str) -> bool:
    actual = actual.strip()
    return actual == expected or actual in _UNIT_SYNONYMS.get(expected, set())


def expected_dims(name: str) -> tuple[str, ...]:
    kind = variable(name).kind
    return {
        "atmospheric": ("time", "level", "latitude", "longitude"),
        "surface": ("time", "latitude", "longitude"),
        "static": ("latitude", "longitude"),
    }[kind]


def _check_coordinate(ds: xr.Dataset, name: str, problems: list[str]) -> None:
    if name not in ds.coords:
        problems.append(f"coordinate {name!r} is missing")
        return
    values = np.asarray(ds[name].values)
    if values.ndim != 1 or values.size == 0:
        problems.append(f"coordinate {name!r} must be 1-D and non-empty")
        return
    if name in ("latitude", "longitude", "level") and not np.all(np.isfinite(values)):
        problems.append(f"coordinate {name!r} has NaN/inf values")
        return
    diffs = np.diff(values)
    if name == "time":
        diffs = diffs.astype("timedelta64[ns]").astype(np.int64)
    dup = np.flatnonzero(diffs == 0)
    if dup.size:
        problems.append(f"coordinate {name!r} has duplicated values, first at {_fmt(values[dup[0]])}")
    elif values.size > 1 and not (np.all(diffs > 0) or (name != "time" and np.all(diffs < 0))):
        first = int(np.flatnonzero(np.sign(diffs) != np.sign(diffs[0]))[0]) + 1
        problems.append(f"coordinate {name!r} is not monotonic (order breaks at {_fmt(values[first])})")


def _fmt(value: object) -> str:
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    return str(value)


def check_structure(
    ds: xr.Dataset,
    variables: list[str],
    static: list[str],
    levels: list[int],
    start: np.datetime64,
    end: np.datetime64,
    *,
    step_hours: int = TIME_STEP_HOURS,
) -> None:
    """Raises SnapshotValidationError unless ``ds`` (already name-standardised) can make the snapshot.

    Checks coordinates (present, monotonic, no duplicates, latitude in [-90, 90]),
    each variable's presence, dims, units and levels, and that the source has
    every step of the ``step_hours`` grid over [start, end]
    (:mod:`zonda.data.time_steps`; steps between them, e.g. an hourly source's,
    are not judged).
    """
    problems: list[str] = []
    for coord in ("time", "latitude", "longitude"):
        _check_coordinate(ds, coord, problems)
    if any(variable(v).has_levels for v in variables):
        _check_coordinate(ds, "level", problems)
    if "latitude" in ds.coords:
        lat = np.asarray(ds["latitude"].values, dtype=np.float64)
        if lat.size and (lat.min() < -90.0 or lat.max() > 90.0):
            problems.append(f"coordinate 'latitude' outside [-90, 90]: range {lat.min()}..{lat.max()}")
    for name in list(variables) + list(static):
        _check_variable(ds, name, levels, problems)
    if "time" in ds.coords and not any("coordinate 'time'" in p for p in problems):
        problems.extend(time_step_problems(np.asarray(ds["time"].values), start, end, step_hours))
    if problems:
        raise SnapshotValidationError(problems)


def _check_variable(ds: xr.Dataset, name: str, levels: list[int], problems: list[str]) -> None:
    meta = variable(name)
    if name not in ds.data_vars:
        problems.append(f"variable {name!r} is missing from the source (has: {', '.join(sorted(map(str, ds.data_vars)))})")
        return
    da = ds[name]
    dims = tuple(d for d in da.dims if not (meta.kind == "static" and d == "time" and da.sizes[d] == 1))
    if sorted(dims) != sorted(expected_dims(name)):
        problems.append(f"variable {name!r} has dims {da.dims}, expected {expected_dims(name)}")
    units = da.attrs.get("units")
    if units is None:
        problems.append(f"variable {name!r} has no 'units' attribute (expected {meta.units!r})")
    elif not units_match(meta.units, str(units)):
        problems.append(f"variable {name!r} has units {units!r}, expected {meta.units!r}")
    if meta.has_levels and "level" in da.dims:
        have = set(np.asarray(ds["level"].values).round().astype(int).tolist())
        missing = [lv for lv in levels if lv not in have]
        if missing:
            problems.append(f"variable {name!r}: levels {missing} hPa missing from the source (has {sorted(have)})")


def check_values(block: xr.Dataset, names: Iterable[str]) -> None:
    """NaN/inf, plausible-range and constant-field checks on an in-memory block.

    Ranges are per pressure level where the catalogue has one (geopotential).
    A time-dependent field that is one value everywhere at one time (and level),
    e.g. zero-filled, is flagged unless the catalogue allows it. Each problem
    names the variable, level and first bad time.
    """
    problems: list[str] = []
    for name in names:
        meta = variable(name)
        da = block[name]
        values = np.asarray(da.values)
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append(f"variable {name!r} has {int(bad.sum())} NaN/inf value(s), first at {_where(da, bad)}")
            continue
        problems.extend(_range_problems(name, da, values))
        if name == "geopotential":
            problems.extend(_thickness_problems(da, values))
        if meta.has_time and not meta.may_be_constant:
            problems.extend(_constant_field_problems(name, da, values))
    if problems:
        raise SnapshotValidationError(problems)


def _range_problems(name: str, da: xr.DataArray, values: np.ndarray) -> list[str]:
    """Values outside the plausible range, per level where the variable's range depends on it."""
    meta = variable(name)
    if meta.level_range is not None and "level" in da.dims:
        axis = da.dims.index("level")
        pieces = [(float(lv), da.isel(level=[i]), np.take(values, [i], axis=axis))
                  for i, lv in enumerate(np.asarray(da["level"].values))]
    else:
        pieces = [(None, da, values)]
    problems = []
    for level, piece, piece_values in pieces:
        lo, hi = meta.plausible_range(level)
        out = (piece_values < lo) | (piece_values > hi)
        if out.any():
            at = f" at level {level:g} hPa" if level is not None else ""
            problems.append(
                f"variable {name!r}{at} has values outside the plausible range [{lo:g}, {hi:g}] {meta.units} "
                f"(min {piece_values.min():g}, max {piece_values.max():g}), first at {_where(piece, out)}: "
                f"wrong units or corrupt data?"
            )
    return problems


def _thickness_problems(da: xr.DataArray, values: np.ndarray) -> list[str]:
    """Geopotential between adjacent pressure levels whose thickness implies an implausible layer temperature.

    The per-level ranges of :func:`_range_problems` catch geopotential height in metres labelled
    m**2 s**-2 only from about 730 hPa up (nearer the ground the plausible ranges of both overlap);
    the hypsometric thickness between any two levels catches it everywhere: metres make the
    layer-mean temperature g0 = 9.8 times too low (about 30 K). Plausible: the catalogue's
    temperature range.
    """
    if "level" not in da.dims or da.sizes["level"] < 2:
        return []
    lo, hi = variable("temperature").valid_range
    axis = da.dims.index("level")
    levels = np.asarray(da["level"].values, dtype=np.float64)
    order = np.argsort(levels)[::-1]  # bottom (largest pressure) first
    problems = []
    for bottom, top in zip(order[:-1], order[1:]):
        thickness = np.take(values, top, axis=axis) - np.take(values, bottom, axis=axis)  # dims of da without level
        t_mean = layer_mean_temperature(thickness, p_bottom_hpa=float(levels[bottom]), p_top_hpa=float(levels[top]))
        bad = (t_mean < lo) | (t_mean > hi)
        if bad.any():
            piece = da.isel(level=int(bottom), drop=True)
            problems.append(
                f"variable 'geopotential' between {levels[bottom]:g} and {levels[top]:g} hPa: the thickness implies a "
                f"layer-mean temperature of {float(np.median(t_mean)):.0f} K (median; hypsometric equation), outside "
                f"the plausible [{lo:g}, {hi:g}] K, first at {_where(piece, bad)}: geopotential height in metres "
                f"labelled m**2 s**-2, or levels mislabelled?"
            )
    return problems


def _constant_field_problems(name: str, da: xr.DataArray, values: np.ndarray) -> list[str]:
    """Fields (one time, one level) that hold a single value at more than one grid point."""
    spatial = tuple(i for i, d in enumerate(da.dims) if d not in ("time", "level"))
    if not spatial or int(np.prod([values.shape[i] for i in spatial])) < 2:
        return []
    constant = np.ptp(values, axis=spatial) == 0  # (time[, level])
    if not constant.any():
        return []
    kept = [d for d in da.dims if d in ("time", "level")]
    index = np.unravel_index(int(np.flatnonzero(constant)[0]), constant.shape)
    where = ", ".join(f"{d}={_fmt(np.asarray(da[d].values)[i])}" for d, i in zip(kept, index) if d in da.coords)
    first = values[tuple(index[kept.index(d)] if d in kept else 0 for d in da.dims)]  # the field's one value
    return [
        f"variable {name!r} is constant ({float(first):g} everywhere) in {int(constant.sum())} field(s), first at "
        f"{where}: a missing or zero-filled field?"
    ]


def _where(da: xr.DataArray, mask: np.ndarray) -> str:
    index = np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape)
    parts = []
    for dim, i in zip(da.dims, index):
        if dim in da.coords:
            parts.append(f"{dim}={_fmt(np.asarray(da[dim].values)[i])}")
    return ", ".join(parts) if parts else "index " + str(tuple(int(i) for i in index))
