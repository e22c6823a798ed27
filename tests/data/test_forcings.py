"""Derived forcings against published solar-geometry facts."""

from __future__ import annotations

import numpy as np
import pytest

from zonda.data.forcings import (
    SOLAR_CONSTANT,
    day_progress,
    earth_sun_distance_factor,
    forcing_dataset,
    solar_declination,
    toa_incident_solar_radiation,
    year_progress,
)


def test_declination_at_solstices_and_equinox() -> None:
    t = np.array(["2001-06-21T12", "2001-12-21T12", "2001-03-20T12"], dtype="datetime64[ns]")
    decl = np.rad2deg(solar_declination(t))
    assert decl[0] == pytest.approx(23.44, abs=0.1)
    assert decl[1] == pytest.approx(-23.44, abs=0.1)
    assert abs(decl[2]) < 0.5


def test_distance_factor_peaks_at_perihelion() -> None:
    jan, jul = earth_sun_distance_factor(np.array(["2001-01-03", "2001-07-04"], dtype="datetime64[ns]"))
    assert jan == pytest.approx(1.0342, abs=1e-3) and jul == pytest.approx(0.9669, abs=1e-3)


def test_daily_insolation_matches_the_closed_form() -> None:
    """Sum of 24 hourly accumulations = S0/pi * d * (h0 sin(phi) sin(delta) + cos(phi) cos(delta) sin(h0)) * 86400."""
    times = np.arange(np.datetime64("2001-05-10T01", "ns"), np.datetime64("2001-05-11T01", "ns"), np.timedelta64(1, "h"))
    lats = np.array([-60.0, -20.0, 0.0, 35.0, 60.0])
    daily = toa_incident_solar_radiation(times, lats, np.array([0.0])).sum(axis=0)[:, 0]
    delta = solar_declination(np.array(["2001-05-10T12"], dtype="datetime64[ns]"))[0]
    d = earth_sun_distance_factor(np.array(["2001-05-10T12"], dtype="datetime64[ns]"))[0]
    phi = np.deg2rad(lats)
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1, 1))
    expected = SOLAR_CONSTANT / np.pi * d * (h0 * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(h0)) * 86400
    np.testing.assert_allclose(daily, expected, rtol=0.01)


def test_polar_night_and_noon_maximum() -> None:
    t = np.array(["2001-12-21T12"], dtype="datetime64[ns]")
    toa = toa_incident_solar_radiation(t, np.array([-80.0, 0.0, 85.0]), np.arange(0, 360, 30.0))
    assert np.all(toa[0, 2] == 0.0)  # Arctic winter
    assert toa[0, 1].argmax() == 0  # the hour ending 12 UTC is brightest near 0E at the equator...
    assert toa[0, 1].max() <= SOLAR_CONSTANT * 1.04 * 3600


def test_progress_features() -> None:
    t = np.array(["1970-01-01T00", "1970-01-01T06", "1970-07-02T12"], dtype="datetime64[ns]")
    yp = year_progress(t)
    assert yp[0] == 0.0 and yp[1] == pytest.approx(0.25 / 365.24219)
    assert yp[2] == pytest.approx(182.5 / 365.24219)  # 181 days to 1 July, then 1.5 more
    dp = day_progress(t, np.array([0.0, 90.0, 180.0]))
    np.testing.assert_allclose(dp[1], [0.25, 0.5, 0.75])
    ds = forcing_dataset(["year_progress_sin", "day_progress_cos"], t, np.array([0.0]), np.array([0.0, 90.0, 180.0]))
    assert ds["year_progress_sin"].dims == ("time",) and ds["day_progress_cos"].dims == ("time", "longitude")
    np.testing.assert_allclose(ds["day_progress_cos"].values[0], np.cos(2 * np.pi * np.array([0, 0.25, 0.5])), atol=1e-6)
