"""evaluate(): results layout, baselines, netCDF round trip, headline scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import (
    climatology_at,
    climatology_forecast,
    compute_climatology,
    evaluate,
    evaluate_with_baselines,
    headline_key,
    headline_scores,
    lead_label,
    persistence_forecast,
    read_results,
    stack_models,
    unstack_models,
    write_results,
)
from zonda.evaluation.alignment import valid_times

LAT = np.linspace(-75.0, 75.0, 6)
LON = np.arange(0.0, 360.0, 45.0)
LEVELS = [500, 850]
TIMES = pd.date_range("2000-01-01", periods=24, freq="6h")  # 6 days
LEADS = pd.to_timedelta([0, 6, 12, 24], unit="h").values.astype("timedelta64[ns]")
INITS = TIMES[:6:2]  # three init times, 12-hourly


def _truth(seed: int = 0) -> xr.Dataset:
    """Random-walk fields so that persistence error grows with lead."""
    rng = np.random.default_rng(seed)
    walk = lambda *shape: np.cumsum(rng.normal(size=(len(TIMES), *shape)), axis=0)  # noqa: E731
    dims3 = ("time", "level", "latitude", "longitude")
    return xr.Dataset(
        {
            "geopotential": (dims3, 5e4 + 100 * walk(2, 6, 8), {"units": "m**2 s**-2"}),
            "temperature": (dims3, (250 + walk(2, 6, 8)).astype(np.float32), {"units": "K"}),
            "surface_pressure": (("time", "latitude", "longitude"), 1e5 + 50 * walk(6, 8), {"units": "Pa"}),
        },
        coords={"time": TIMES, "level": LEVELS, "latitude": LAT, "longitude": LON},
    )


def _perfect(truth: xr.Dataset) -> xr.Dataset:
    """The truth in forecast layout: forecast(init, lead) = truth(init + lead)."""
    valid = valid_times(INITS, LEADS)
    return truth.sel(time=valid).assign_coords(time=INITS.values).transpose("time", "prediction_timedelta", ...)


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return _truth()


@pytest.fixture(scope="module")
def clim(truth) -> xr.Dataset:
    return compute_climatology(truth)


def _loop_rmse_acc(f: np.ndarray, o: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """f, o, c: (init, lat, lon) on LAT; WB2 RMSE and ACC by explicit loops."""
    bounds = np.deg2rad(np.clip(np.concatenate([LAT - 15, [90.0]]), -90, 90))
    area = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    mse_sum, acc_sum = 0.0, 0.0
    for t in range(f.shape[0]):
        s = {"ee": 0.0, "fo": 0.0, "ff": 0.0, "oo": 0.0, "w": 0.0}
        for i in range(f.shape[1]):
            for j in range(f.shape[2]):
                e, fa, oa = f[t, i, j] - o[t, i, j], f[t, i, j] - c[t, i, j], o[t, i, j] - c[t, i, j]
                s["ee"] += area[i] * e * e
                s["fo"] += area[i] * fa * oa
                s["ff"] += area[i] * fa * fa
                s["oo"] += area[i] * oa * oa
                s["w"] += area[i]
        mse_sum += s["ee"] / s["w"]
        acc_sum += s["fo"] / math.sqrt(s["ff"] * s["oo"])
    return math.sqrt(mse_sum / f.shape[0]), acc_sum / f.shape[0]


def test_results_layout(truth, clim):
    res = evaluate(_perfect(truth) + 1.0, truth, clim)
    assert res["geopotential"].dims == ("metric", "lead_time", "level")
    assert res["surface_pressure"].dims == ("metric", "lead_time")
    assert [str(m) for m in res["metric"].values] == ["rmse", "mse", "bias", "acc"]
    assert res["lead_time"].dtype == np.dtype("timedelta64[ns]")
    np.testing.assert_array_equal(res["lead_time"].values, LEADS)
    np.testing.assert_array_equal(res["level"].values, LEVELS)
    assert res["temperature"].attrs["units"] == "K"
    assert res.attrs["n_init_times"] == 3
    assert res.attrs["first_init_time"] == "2000-01-01 00:00:00"
    # a constant +1 error: RMSE 1, bias 1 everywhere
    np.testing.assert_allclose(res["temperature"].sel(metric=["rmse", "bias", "mse"]).values, 1.0, rtol=1e-6)


def test_evaluate_matches_explicit_loops(truth, clim):
    rng = np.random.default_rng(3)
    fc = _perfect(truth)
    noise = rng.normal(size=(3, 4, 2, 6, 8)) * 200
    fc["geopotential"] = fc["geopotential"] + noise
    res = evaluate(fc, truth, clim)
    for j, lead in enumerate(LEADS):
        for k, level in enumerate(LEVELS):
            f = fc["geopotential"].values[:, j, k]
            o = np.stack([truth["geopotential"].sel(time=t + lead, level=level).values for t in INITS.values])
            c = np.broadcast_to(clim["geopotential"].sel(level=level).values, f.shape)
            want_rmse, want_acc = _loop_rmse_acc(f, o, c)
            got = res["geopotential"].isel(lead_time=j, level=k)
            assert float(got.sel(metric="rmse")) == pytest.approx(want_rmse, rel=1e-10)
            assert float(got.sel(metric="acc")) == pytest.approx(want_acc, rel=1e-10)


def test_perfect_forecast_has_zero_error_and_unit_acc(truth, clim):
    res = evaluate(_perfect(truth), truth, clim)
    for name in res.data_vars:
        np.testing.assert_allclose(res[name].sel(metric=["rmse", "mse", "bias"]).values, 0.0, atol=1e-9)
        np.testing.assert_allclose(res[name].sel(metric="acc").values, 1.0, rtol=1e-9)


def test_persistence_is_truth_at_init_and_perfect_at_lead_zero(truth, clim):
    pers = persistence_forecast(truth, INITS, LEADS)
    assert pers["temperature"].dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    for j in range(len(LEADS)):
        np.testing.assert_array_equal(pers["temperature"].isel(prediction_timedelta=j).values, truth["temperature"].sel(time=INITS).values)
    res = evaluate(pers, truth, clim)
    np.testing.assert_array_equal(res["geopotential"].sel(metric="rmse").isel(lead_time=0).values, 0.0)
    rmse = res["geopotential"].sel(metric="rmse", level=500).values
    assert (np.diff(rmse) > 0).all()  # a random walk drifts away from the initial state


def test_climatology_baseline(truth, clim):
    fc = climatology_forecast(clim, INITS, LEADS)
    np.testing.assert_array_equal(
        fc["surface_pressure"].isel(time=1, prediction_timedelta=2).values,
        climatology_at(clim, [INITS[1] + LEADS[2]])["surface_pressure"].values[0],
    )
    res = evaluate(fc, truth, clim)
    for name in res.data_vars:  # no anomaly -> ACC 0 by convention
        np.testing.assert_array_equal(res[name].sel(metric="acc").values, 0.0)
    assert (res["geopotential"].sel(metric="rmse").values > 0).all()


def test_evaluate_with_baselines_uses_the_forecast_levels_and_leads(truth, clim):
    fc = _perfect(truth).sel(level=[850])
    runs = evaluate_with_baselines(fc, truth, clim)
    assert set(runs) == {"model", "persistence", "climatology"}
    for res in runs.values():
        np.testing.assert_array_equal(res["level"].values, [850])
        np.testing.assert_array_equal(res["lead_time"].values, LEADS)
    np.testing.assert_array_equal(runs["persistence"]["geopotential"].sel(metric="rmse").isel(lead_time=0).values, 0.0)


def test_progress_bar(truth, clim, capsys):
    evaluate(_perfect(truth), truth, clim, variables=["surface_pressure"], progress=True)
    assert "evaluate" in capsys.readouterr().err
    evaluate(_perfect(truth), truth, clim, variables=["surface_pressure"], progress=False)
    assert capsys.readouterr().err == ""


def test_evaluate_errors_name_the_problem(truth, clim):
    fc = _perfect(truth)
    with pytest.raises(KeyError, match="temperature.*truth"):
        evaluate(fc, truth.drop_vars("temperature"), clim)
    with pytest.raises(KeyError, match="geopotential at lead 1 days.*not in the truth"):
        evaluate(fc, truth.isel(time=slice(0, 8)), clim)
    with pytest.raises(ValueError, match="prediction_timedelta"):
        evaluate(fc.isel(prediction_timedelta=0, drop=True), truth, clim)
    with pytest.raises(KeyError, match="lacks levels \\[850\\]"):
        evaluate(fc, truth.sel(level=[500]), clim)
    with pytest.raises(ValueError, match="surface_pressure.*different coordinates"):
        evaluate(fc, truth.assign_coords(longitude=LON + 1), clim, variables=["surface_pressure"])


def test_results_netcdf_round_trip(tmp_path, truth, clim):
    runs = evaluate_with_baselines(_perfect(truth) + 2.0, truth, clim)
    path = write_results(runs["model"], tmp_path / "results.nc")
    back = read_results(path)
    xr.testing.assert_identical(back, runs["model"])
    assert back["lead_time"].dtype == np.dtype("timedelta64[ns]")
    stacked_path = write_results(stack_models(runs), tmp_path / "all.nc")
    back_runs = unstack_models(read_results(stacked_path))
    assert list(back_runs) == ["model", "persistence", "climatology"]
    for key in runs:
        xr.testing.assert_allclose(back_runs[key], runs[key])
        assert back_runs[key]["geopotential"].dims == ("metric", "lead_time", "level")
    assert {p.name for p in tmp_path.iterdir()} == {"results.nc", "all.nc"}  # no temporaries left behind
    write_results(runs["persistence"], path)  # overwriting replaces the file
    xr.testing.assert_identical(read_results(path), runs["persistence"])


def test_headline_key_format():
    assert headline_key("rmse", "geopotential/500", 5) == "rmse.geopotential.500.5d"
    assert headline_key("rmse", "surface_pressure", 5.0) == "rmse.surface_pressure.5d"
    assert headline_key("acc", "temperature/850", 0.25) == "acc.temperature.850.0.25d"
    assert [lead_label(d) for d in (1, 10.0, 0.5, 1.25)] == ["1d", "10d", "0.5d", "1.25d"]
    with pytest.raises(ValueError, match="geopotential/abc"):
        headline_key("rmse", "geopotential/abc", 1)


def test_headline_scores_pick_the_right_numbers(truth, clim):
    res = evaluate(persistence_forecast(truth, INITS, LEADS), truth, clim)
    scores = headline_scores(res, ["geopotential/500", "surface_pressure"], [0.5, 1], metrics=["rmse"])
    assert set(scores) == {"rmse.geopotential.500.0.5d", "rmse.geopotential.500.1d", "rmse.surface_pressure.0.5d", "rmse.surface_pressure.1d"}
    assert scores["rmse.geopotential.500.1d"] == float(res["geopotential"].sel(metric="rmse", level=500, lead_time=np.timedelta64(1, "D")))
    assert scores["rmse.surface_pressure.0.5d"] == float(res["surface_pressure"].sel(metric="rmse", lead_time=np.timedelta64(12, "h")))
    assert all(isinstance(v, float) for v in scores.values())
    assert "acc.geopotential.500.1d" in headline_scores(res, ["geopotential/500"], [1])  # default: every metric
    with pytest.raises(KeyError, match="lead 5d.*0.25d"):
        headline_scores(res, ["geopotential/500"], [5])
    with pytest.raises(KeyError, match="level 250"):
        headline_scores(res, ["geopotential/250"], [1])
    with pytest.raises(ValueError, match="geopotential/<level>"):
        headline_scores(res, ["geopotential"], [1])
