"""Per-init headline scores (per_init.nc): hand-computed cases, the link to results.nc, the file round trip."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import compute_climatology, evaluate
from zonda.evaluation.alignment import valid_times
from zonda.evaluation.per_init import parse_key, per_init_scores, read_per_init, write_per_init

LAT = np.linspace(-75.0, 75.0, 6)
LON = np.arange(0.0, 360.0, 45.0)
TIMES = pd.date_range("2000-01-01", periods=24, freq="6h")
LEADS = pd.to_timedelta([6, 12, 24], unit="h").values.astype("timedelta64[ns]")
INITS = TIMES[:6:2]  # three init times
OFFSETS = np.array([3.0, -4.0, 12.0])  # (init,) a constant error per forecast


def _truth() -> xr.Dataset:
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(len(TIMES), 2, 6, 8)), axis=0)
    sp = 1e5 + 50 * np.cumsum(rng.normal(size=(len(TIMES), 6, 8)), axis=0)
    return xr.Dataset(
        {"geopotential": (("time", "level", "latitude", "longitude"), 5e4 + 100 * walk),
         "surface_pressure": (("time", "latitude", "longitude"), sp)},
        coords={"time": TIMES, "level": [500, 850], "latitude": LAT, "longitude": LON},
    )


def _perfect(truth: xr.Dataset) -> xr.Dataset:
    valid = valid_times(INITS, LEADS)
    return truth.sel(time=valid).assign_coords(time=INITS.values).transpose("time", "prediction_timedelta", ...)


def test_per_init_rmse_of_a_constant_error_is_that_error_and_aggregates_to_the_results_rmse():
    truth = _truth()
    offset = xr.DataArray(OFFSETS, dims=["time"], coords={"time": INITS.values})
    forecast = _perfect(truth) + offset  # every grid point of init i is off by OFFSETS[i]
    keys = ["rmse.geopotential.500.1d", "rmse.surface_pressure.0.25d"]
    scores = per_init_scores(forecast, truth, None, keys)
    assert scores.dims == ("key", "time") and list(scores["key"].values) == keys
    np.testing.assert_allclose(scores.sel(key=keys[0]).values, [3.0, 4.0, 12.0], rtol=1e-12)
    np.testing.assert_allclose(scores.sel(key=keys[1]).values, [3.0, 4.0, 12.0], rtol=1e-9)
    # the headline RMSE is sqrt(mean_i rmse_i^2) = sqrt(169/3), as results.nc has it
    results = evaluate(forecast, truth, compute_climatology(truth, "mean"))
    headline = float(results["geopotential"].sel(metric="rmse", level=500).isel(lead_time=2))
    assert headline == pytest.approx(math.sqrt(169 / 3), rel=1e-12)
    assert float(np.sqrt(np.mean(scores.sel(key=keys[0]).values ** 2))) == pytest.approx(headline, rel=1e-12)


def test_per_init_acc_of_scaled_and_reversed_anomalies():
    truth = _truth()
    clim = compute_climatology(truth, "mean")
    anomaly = _perfect(truth) - clim
    key = ["acc.geopotential.850.0.5d"]
    np.testing.assert_allclose(per_init_scores(clim + 2.0 * anomaly, truth, clim, key).values, [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(per_init_scores(clim - anomaly, truth, clim, key).values, [[-1.0, -1.0, -1.0]])
    with pytest.raises(ValueError, match="needs the climatology"):
        per_init_scores(clim + anomaly, truth, None, key)


def test_keys_parse_and_bad_keys_are_named():
    assert parse_key("rmse.geopotential.500.5d") == ("rmse", "geopotential/500", 5.0)
    assert parse_key("rmse.surface_pressure.0.25d") == ("rmse", "surface_pressure", 0.25)
    assert parse_key("acc.temperature.850.0.5d") == ("acc", "temperature/850", 0.5)
    for bad in ("bias.geopotential.500.5d", "rmse.nonsense.500.5d", "rmse.geopotential.5d", "rmse.geopotential.500.5"):
        with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
            parse_key(bad)
    truth = _truth()
    with pytest.raises(KeyError, match="level 300"):
        per_init_scores(_perfect(truth), truth, None, ["rmse.geopotential.300.1d"])
    with pytest.raises(KeyError, match="lead 2d"):
        per_init_scores(_perfect(truth), truth, None, ["rmse.geopotential.500.2d"])


def test_file_round_trip(tmp_path):
    truth = _truth()
    scores = per_init_scores(_perfect(truth) + 1.0, truth, None, ["rmse.geopotential.500.1d"])
    path = write_per_init(scores, tmp_path / "per_init.nc", snapshot_id="sha256:abc")
    back = read_per_init(path)
    xr.testing.assert_identical(back.drop_attrs(), scores.drop_attrs())
    assert back.attrs["snapshot_id"] == "sha256:abc" and "rmse_definition" in back.attrs
    with pytest.raises(FileNotFoundError, match="missing.nc: no per-init scores"):
        read_per_init(tmp_path / "missing.nc")
