"""Forcings derived from the clock and the grid: they are known at any future time.

- ``year_progress_sin/cos``: phase of the tropical year, dims ``(time,)``.
- ``day_progress_sin/cos``: local mean solar time as a fraction of the day,
  dims ``(time, longitude)``.
- ``toa_incident_solar_radiation``: top-of-atmosphere incident short-wave
  energy accumulated over the hour ending at the valid time, J m**-2, dims
  ``(time, latitude, longitude)`` (the ERA5 convention GraphCast trains on).

Solar geometry follows the NOAA Global Monitoring Division's "General Solar
Position Calculations" (Spencer 1971 Fourier series for declination, equation
of time and the Earth-Sun distance factor).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from zonda.variables import variable

SOLAR_CONSTANT = 1361.0  # W m**-2 (Kopp & Lean 2011)
TROPICAL_YEAR_DAYS = 365.24219
SECONDS_PER_DAY = 86400.0
_TOA_SUBSTEPS = 12  # midpoint rule over the accumulation hour (5-minute steps)


def _seconds_since_epoch(times: np.ndarray) -> np.ndarray:
    return (np.asarray(times, dtype="datetime64[ns]") - np.datetime64("1970-01-01T00:00:00", "ns")) / np.timedelta64(1, "s")


def year_progress(times: np.ndarray) -> np.ndarray:
    """Fraction of the tropical year elapsed, in [0, 1), shape ``(T,)``."""
    return np.mod(_seconds_since_epoch(times) / (TROPICAL_YEAR_DAYS * SECONDS_PER_DAY), 1.0)


def day_progress(times: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """Local mean solar time as a fraction of the day, shape ``(T, n_lon)``."""
    utc = np.mod(_seconds_since_epoch(times), SECONDS_PER_DAY) / SECONDS_PER_DAY
    return np.mod(utc[:, None] + np.asarray(longitudes)[None, :] / 360.0, 1.0)


def _fractional_year(times: np.ndarray) -> np.ndarray:
    """NOAA's gamma (radians) for each time."""
    t = np.asarray(times, dtype="datetime64[ns]")
    year_start = t.astype("datetime64[Y]").astype("datetime64[ns]")
    next_year = (t.astype("datetime64[Y]") + 1).astype("datetime64[ns]")
    days_in_year = (next_year - year_start) / np.timedelta64(1, "D")
    day_of_year = (t - year_start) / np.timedelta64(1, "D")  # 0-based, fractional
    hours = np.mod(_seconds_since_epoch(t), SECONDS_PER_DAY) / 3600.0
    return 2.0 * np.pi / days_in_year * (np.floor(day_of_year) + (hours - 12.0) / 24.0)


def solar_declination(times: np.ndarray) -> np.ndarray:
    """Solar declination (radians), shape ``(T,)``."""
    g = _fractional_year(times)
    return (
        0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g) - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g) - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g)
    )


def equation_of_time_minutes(times: np.ndarray) -> np.ndarray:
    g = _fractional_year(times)
    return 229.18 * (
        0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
    )


def earth_sun_distance_factor(times: np.ndarray) -> np.ndarray:
    """(mean distance / distance)**2, shape ``(T,)``."""
    g = _fractional_year(times)
    return 1.000110 + 0.034221 * np.cos(g) + 0.001280 * np.sin(g) + 0.000719 * np.cos(2 * g) + 0.000077 * np.sin(2 * g)


def toa_flux(times: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """Instantaneous TOA incident solar flux (W m**-2), shape ``(T, n_lat, n_lon)``."""
    decl = solar_declination(times)[:, None, None]
    utc_minutes = np.mod(_seconds_since_epoch(times), SECONDS_PER_DAY) / 60.0
    true_solar_minutes = (
        utc_minutes[:, None] + equation_of_time_minutes(times)[:, None] + 4.0 * np.asarray(longitudes)[None, :]
    )
    hour_angle = np.deg2rad(true_solar_minutes / 4.0 - 180.0)[:, None, :]
    lat = np.deg2rad(np.asarray(latitudes))[None, :, None]
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    return SOLAR_CONSTANT * earth_sun_distance_factor(times)[:, None, None] * np.clip(cos_zenith, 0.0, None)


def toa_incident_solar_radiation(times: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """Energy (J m**-2) accumulated over the hour ending at each time, shape ``(T, n_lat, n_lon)``."""
    times = np.asarray(times, dtype="datetime64[ns]")
    step = np.timedelta64(3600 // _TOA_SUBSTEPS, "s")
    total = np.zeros((len(times), len(latitudes), len(longitudes)))
    for k in range(_TOA_SUBSTEPS):  # midpoints of the sub-intervals of the hour
        midpoint = times - np.timedelta64(3600, "s") + step * k + step // 2
        total += toa_flux(midpoint, latitudes, longitudes)
    return total * (3600.0 / _TOA_SUBSTEPS)


def forcing_dataset(names: list[str], times: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray) -> xr.Dataset:
    """The requested forcings on the given grid and times, with CF attrs from the catalogue."""
    out: dict[str, xr.DataArray] = {}
    coords = {"time": np.asarray(times, dtype="datetime64[ns]"), "latitude": latitudes, "longitude": longitudes}
    for name in names:
        meta = variable(name)
        if name.startswith("year_progress"):
            phase = 2 * np.pi * year_progress(times)
            data, dims = (np.sin(phase) if name.endswith("sin") else np.cos(phase)), ("time",)
        elif name.startswith("day_progress"):
            phase = 2 * np.pi * day_progress(times, longitudes)
            data, dims = (np.sin(phase) if name.endswith("sin") else np.cos(phase)), ("time", "longitude")
        elif name == "toa_incident_solar_radiation":
            data, dims = toa_incident_solar_radiation(times, latitudes, longitudes), ("time", "latitude", "longitude")
        else:
            raise ValueError(f"no rule to derive forcing {name!r}")
        out[name] = xr.DataArray(
            data.astype(np.float32), dims=dims, coords={d: coords[d] for d in dims},
            attrs={"units": meta.units, "long_name": meta.long_name, "zonda_derived": "clock"},
        )
    return xr.Dataset(out)
