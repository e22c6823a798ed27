"""Climatologies: mode choice, day-of-year/hour means, smoothing, and lookup at valid times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation.climatology import (
    climatology_at,
    compute_climatology,
    resolve_mode,
    smooth_day_of_year,
    triangular_window,
)

LAT = np.array([-45.0, 45.0])
LON = np.array([0.0, 120.0, 240.0])


def _dataset(times: pd.DatetimeIndex, values: np.ndarray) -> xr.Dataset:
    """temperature (time, level, lat, lon) and surface_pressure (time, lat, lon) from per-time ``values``."""
    spatial = values[:, None, None] + np.arange(len(LAT))[None, :, None] + 0.0 * LON
    return xr.Dataset(
        {
            "temperature": (("time", "level", "latitude", "longitude"), np.stack([spatial, spatial + 100], axis=1), {"units": "K"}),
            "surface_pressure": (("time", "latitude", "longitude"), spatial * 10, {"units": "Pa"}),
            "geopotential_at_surface": (("latitude", "longitude"), np.zeros((len(LAT), len(LON)))),
        },
        coords={"time": times, "level": [500, 850], "latitude": LAT, "longitude": LON},
    )


def test_auto_mode_rule_is_one_year_of_coverage():
    six_hourly = lambda start, end: pd.date_range(start, end, freq="6h")  # noqa: E731
    assert resolve_mode(six_hourly("2000-01-01", "2000-01-14 18:00")) == "mean"
    assert resolve_mode(six_hourly("2001-01-01", "2001-12-31 18:00")) == "day_of_year_hour"  # exactly 365 days
    assert resolve_mode(six_hourly("2001-01-01", "2001-12-30 18:00")) == "mean"  # 364 days
    assert resolve_mode(six_hourly("2000-01-01", "2000-01-02"), "day_of_year_hour") == "day_of_year_hour"
    with pytest.raises(ValueError, match="'daily'"):
        resolve_mode(six_hourly("2000-01-01", "2000-01-02"), "daily")


def test_mean_mode_is_time_mean_of_time_dependent_variables():
    times = pd.date_range("2000-01-01", periods=40, freq="6h")
    ds = _dataset(times, np.random.default_rng(0).normal(size=40))
    clim = compute_climatology(ds)
    assert clim.attrs["climatology_mode"] == "mean"
    assert set(clim.data_vars) == {"temperature", "surface_pressure"}  # static fields have no climatology
    xr.testing.assert_allclose(clim["temperature"], ds["temperature"].mean("time"))
    assert clim["temperature"].attrs["units"] == "K"


def test_day_of_year_hour_hand_case_without_smoothing():
    times = pd.date_range("2001-01-01", "2002-12-31 18:00", freq="6h")  # two non-leap years
    values = times.day_of_year * 10.0 + times.hour + (times.year - 2001) * 100.0
    clim = compute_climatology(_dataset(times, np.asarray(values)), "auto", window_days=1)
    assert clim.attrs["climatology_mode"] == "day_of_year_hour"
    t = clim["temperature"]
    assert t.dims == ("hour", "dayofyear", "level", "latitude", "longitude")
    np.testing.assert_array_equal(t["hour"].values, [0, 6, 12, 18])
    np.testing.assert_array_equal(t["dayofyear"].values, np.arange(1, 367))
    # mean over the two years: doy*10 + hour + 50; day 366 (no leap year) copies day 365
    point = t.sel(level=500, latitude=-45.0, longitude=0.0)
    assert float(point.sel(hour=6, dayofyear=32)) == pytest.approx(320 + 6 + 50)
    assert float(point.sel(hour=18, dayofyear=365)) == pytest.approx(3650 + 18 + 50)
    assert float(point.sel(hour=18, dayofyear=366)) == pytest.approx(3650 + 18 + 50)


def _loop_smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Circular triangular weights h + 1 - |k|, NaN days left out; explicit loops."""
    n, h = len(x), window // 2
    out = np.full(n, np.nan)
    for d in range(n):
        num = den = 0.0
        for k in range(-h, h + 1):
            v = x[(d - k) % n]
            if np.isfinite(v):
                num += (h + 1 - abs(k)) * v
                den += h + 1 - abs(k)
        if den > 0:
            out[d] = num / den
    return out


def test_smoothing_matches_loop_definition_with_gaps():
    rng = np.random.default_rng(1)
    x = rng.normal(size=366)
    x[[0, 5, 6, 7, 200, 365]] = np.nan
    np.testing.assert_allclose(smooth_day_of_year(x, axis=0, window_days=7), _loop_smooth(x, 7), rtol=1e-12)
    np.testing.assert_allclose(triangular_window(5), [1, 2, 3, 2, 1])
    with pytest.raises(ValueError, match="odd"):
        triangular_window(60)


def test_smoothed_climatology_recovers_the_seasonal_cycle():
    times = pd.date_range("2001-01-01", "2003-12-31 18:00", freq="6h")
    seasonal = 10.0 * np.sin(2 * np.pi * times.day_of_year / 365.0) + 0.5 * (times.hour / 6)
    noisy = seasonal + np.random.default_rng(2).normal(scale=2.0, size=len(times))
    clim = compute_climatology(_dataset(times, np.asarray(noisy)), window_days=31)["surface_pressure"]
    doy = clim["dayofyear"].values
    expected = 10.0 * (10.0 * np.sin(2 * np.pi * doy[None, :] / 365.0) + 0.5 * (clim["hour"].values[:, None] / 6))
    got = clim.sel(latitude=-45.0, longitude=0.0).values
    # noise std 20 Pa per sample -> far smaller after averaging ~3 years x 31 days; smoothing bias of a 31-day window is small
    assert np.abs(got - expected).max() < 8.0
    assert np.abs(got - expected).max() < 0.2 * np.abs(expected).max()


def test_gappy_training_period_is_rejected_naming_the_variable():
    times = pd.date_range("2001-01-01", "2002-01-31 18:00", freq="6h")
    times = times[(times < "2001-03-01") | (times >= "2001-06-01")]  # three months missing in one year only
    with pytest.raises(ValueError, match="'temperature'.*window_days"):
        compute_climatology(_dataset(times, np.zeros(len(times))), "day_of_year_hour", window_days=31)


def test_climatology_at_valid_times_2d():
    times = pd.date_range("2001-01-01", "2001-12-31 18:00", freq="6h")
    clim = compute_climatology(_dataset(times, np.asarray(times.day_of_year * 10.0 + times.hour)), window_days=1)
    init = np.array(["2005-03-01T00", "2005-07-10T12"], dtype="datetime64[ns]")
    lead = np.array([6, 30], dtype="timedelta64[h]").astype("timedelta64[ns]")
    valid = xr.DataArray(init[:, None] + lead[None, :], dims=["time", "prediction_timedelta"],
                         coords={"time": init, "prediction_timedelta": lead})
    out = climatology_at(clim, valid)
    assert out["temperature"].dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    assert out["surface_pressure"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    for i in range(2):
        for j in range(2):
            ts = pd.Timestamp(valid.values[i, j])
            expected = clim["temperature"].sel(hour=ts.hour, dayofyear=ts.day_of_year)
            np.testing.assert_array_equal(out["temperature"].values[i, j], expected.values)
    assert float(out["temperature"].isel(time=0, prediction_timedelta=0, level=0, latitude=0, longitude=0)) == pytest.approx(600 + 6)
    with pytest.raises(KeyError, match=r"hours of day \[0, 6, 12, 18\].*\[3\]"):
        climatology_at(clim, np.array(["2005-01-01T03"], dtype="datetime64[ns]"))


def test_climatology_at_for_time_mean_broadcasts():
    times = pd.date_range("2000-01-01", periods=8, freq="6h")
    clim = compute_climatology(_dataset(times, np.arange(8.0)))
    want = np.array(["2000-02-01", "2000-03-01T06"], dtype="datetime64[ns]")
    out = climatology_at(clim, want)
    assert out["temperature"].dims == ("time", "level", "latitude", "longitude")
    np.testing.assert_array_equal(out["time"].values, want)
    np.testing.assert_array_equal(out["surface_pressure"].values[1], clim["surface_pressure"].values)
