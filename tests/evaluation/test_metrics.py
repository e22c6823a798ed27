"""WB2 metrics: hand-computed cases, and agreement with explicit-loop definitions on random fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from zonda.evaluation.metrics import acc, anomaly_correlation, bias, latitude_weights, mse, rmse, spatial_mean

# lat [-60, 0, 60]: band bounds -90, -30, 30, 90 -> areas 0.5, 1, 0.5 -> weights (mean 1) 0.75, 1.5, 0.75
HAND_LAT = np.array([-60.0, 0.0, 60.0])


def _field(rows_per_time, lon=2, lat=HAND_LAT) -> xr.DataArray:
    """(time, latitude, longitude) field, constant along longitude; rows_per_time[t][i] = value at lat i."""
    data = np.repeat(np.asarray(rows_per_time, dtype=float)[:, :, None], lon, axis=2)
    return xr.DataArray(
        data,
        dims=["time", "latitude", "longitude"],
        coords={"time": np.arange(len(rows_per_time)), "latitude": lat, "longitude": np.arange(lon) * 360.0 / lon},
        name="x",
    )


def _analytic_weights(lat: np.ndarray) -> np.ndarray:
    """sin(lat + dlat/2) - sin(lat - dlat/2), bounds clipped to +-90, for a regular grid; mean 1."""
    dlat = abs(lat[1] - lat[0])
    upper = np.clip(lat + dlat / 2, -90, 90)
    lower = np.clip(lat - dlat / 2, -90, 90)
    area = np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower))
    return area / area.mean()


def _random(shape, seed, lat, dims=("time", "level", "latitude", "longitude")):
    rng = np.random.default_rng(seed)
    coords = {"latitude": lat, "longitude": np.linspace(0, 360, shape[-1], endpoint=False)}
    return xr.DataArray(rng.normal(size=shape), dims=dims, coords=coords, name="x")


def _loop_spatial_mean(values: np.ndarray, w: np.ndarray) -> float:
    """values (lat, lon): sum_ij w_i x_ij / sum_ij w_i, as explicit loops."""
    num = den = 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            num += w[i] * values[i, j]
            den += w[i]
    return num / den


# ----------------------------------------------------------------- weights


def test_latitude_weights_hand_cases():
    np.testing.assert_allclose(latitude_weights(HAND_LAT).values, [0.75, 1.5, 0.75])
    np.testing.assert_allclose(latitude_weights(np.array([-45.0, 45.0])).values, [1.0, 1.0])
    # with poles: bounds -90, -45, 45, 90 -> areas 1 - sqrt(2)/2, sqrt(2), 1 - sqrt(2)/2; mean 2/3
    pole, eq = (1 - math.sqrt(2) / 2) * 1.5, math.sqrt(2) * 1.5
    np.testing.assert_allclose(latitude_weights(np.array([-90.0, 0.0, 90.0])).values, [pole, eq, pole])


@pytest.mark.parametrize(
    "lat",
    [np.linspace(-90, 90, 121), np.linspace(-89.25, 89.25, 120), np.linspace(-87.1875, 87.1875, 32)],
    ids=["1.5deg-with-poles", "1.5deg-no-poles", "5.625deg-no-poles"],
)
def test_latitude_weights_match_cell_area_formula(lat):
    w = latitude_weights(lat)
    np.testing.assert_allclose(w.values, _analytic_weights(lat), rtol=1e-12)
    assert w.mean() == pytest.approx(1.0)
    assert w.dims == ("latitude",)
    np.testing.assert_array_equal(w["latitude"].values, lat)
    # descending latitude gives the same weight per latitude
    np.testing.assert_allclose(latitude_weights(lat[::-1]).values, w.values[::-1], rtol=1e-12)


def test_latitude_weights_vs_cos_lat():
    no_poles = np.linspace(-89.25, 89.25, 120)
    cos = np.cos(np.deg2rad(no_poles))
    # without poles the band areas are exactly proportional to cos(lat)
    np.testing.assert_allclose(latitude_weights(no_poles).values, cos / cos.mean(), rtol=1e-10)
    with_poles = np.linspace(-90, 90, 121)
    w = latitude_weights(with_poles).values
    cos = np.cos(np.deg2rad(with_poles))
    assert w[0] > 0 and w[-1] > 0 and cos[0] == pytest.approx(0, abs=1e-15)  # poles keep their polar cap area
    ratio = w[1:-1] / cos[1:-1]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)  # same shape in the interior ...
    assert not np.allclose(w, cos / cos.mean(), rtol=1e-6)  # ... but not the same weights
    np.testing.assert_allclose(w, cos / cos.mean(), atol=1e-2)  # only approximately


def test_latitude_weights_reject_bad_latitudes():
    with pytest.raises(ValueError, match="monotonic"):
        latitude_weights(np.array([0.0, 10.0, 5.0]))
    with pytest.raises(ValueError, match="outside"):
        latitude_weights(np.array([-95.0, 0.0, 95.0]))


def test_spatial_mean_matches_loop_and_keeps_other_dims():
    lat = np.linspace(-80, 80, 9)
    x = _random((3, 2, 9, 6), 0, lat)
    w = _analytic_weights(lat)
    out = spatial_mean(x)
    assert out.dims == ("time", "level")
    for t in range(3):
        for k in range(2):
            assert out.values[t, k] == pytest.approx(_loop_spatial_mean(x.values[t, k], w), rel=1e-12)


def test_spatial_mean_requires_spatial_dims():
    da = xr.DataArray(np.zeros((2, 3)), dims=["time", "latitude"], name="temperature")
    with pytest.raises(ValueError, match="temperature.*longitude"):
        spatial_mean(da)


# ----------------------------------------------------------- hand-computed


def test_mse_rmse_bias_hand_case():
    truth = _field([[0, 0, 0], [0, 0, 0]])
    # errors: time 0 rows [2, 0, 2], time 1 rows [0, 4, 0]
    fc = _field([[2, 0, 2], [0, 4, 0]])
    # per-time mean error: (0.75*2 + 0.75*2)/3 = 1 and 1.5*4/3 = 2; per-time MSE: (0.75*4*2)/3 = 2 and 1.5*16/3 = 8
    assert float(bias(fc, truth)) == pytest.approx(1.5)
    assert float(mse(fc, truth)) == pytest.approx(5.0)
    assert float(rmse(fc, truth)) == pytest.approx(math.sqrt(5.0))
    # the square root is taken after the time mean, not before: sqrt(5) != (sqrt(2) + sqrt(8)) / 2
    assert float(rmse(fc, truth)) != pytest.approx((math.sqrt(2) + math.sqrt(8)) / 2)
    np.testing.assert_allclose(mse(fc, truth, time_dim=None).values, [2.0, 8.0])
    np.testing.assert_allclose(bias(fc, truth, time_dim=None).values, [1.0, 2.0])


def test_acc_hand_case():
    clim = xr.full_like(_field([[0, 0, 0]]).isel(time=0, drop=True), 10.0)
    # time 0: f' = [1, 0, -1], o' = [1, 1, 0]: <f'o'> = 0.75/3, <f'^2> = 1.5/3, <o'^2> = 2.25/3 -> 0.25/sqrt(0.375)
    # time 1: f' = o' = [1, 2, 3] -> 1
    fc = _field([[11, 10, 9], [11, 12, 13]])
    truth = _field([[11, 11, 10], [11, 12, 13]])
    per_time = acc(fc, truth, clim, time_dim=None)
    np.testing.assert_allclose(per_time.values, [0.25 / math.sqrt(0.375), 1.0])
    assert float(acc(fc, truth, clim)) == pytest.approx((0.25 / math.sqrt(0.375) + 1.0) / 2)


def test_perfect_forecast_scores():
    lat = np.linspace(-90, 90, 7)
    truth = _random((4, 2, 7, 8), 1, lat)
    clim = truth.mean("time") + 0.3
    np.testing.assert_allclose(rmse(truth, truth).values, 0.0)
    np.testing.assert_allclose(bias(truth, truth).values, 0.0)
    np.testing.assert_allclose(acc(truth, truth, clim).values, 1.0, rtol=1e-12)


def test_acc_of_zero_anomaly_forecast_is_zero_by_convention():
    lat = np.linspace(-80, 80, 5)
    truth = _random((3, 5, 4), 2, lat, dims=("time", "latitude", "longitude"))
    clim = truth.mean("time")
    clim_forecast = xr.broadcast(clim, truth)[0]
    np.testing.assert_array_equal(acc(clim_forecast, truth, clim, time_dim=None).values, 0.0)
    # undefined when the truth has no anomaly either
    assert np.isnan(float(anomaly_correlation(truth.isel(time=0) * 0, truth.isel(time=0) * 0)))


# -------------------------------------------------------- random vs loops


def _loop_metrics(f: np.ndarray, o: np.ndarray, c: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """f, o, c: (time, level, lat, lon). Returns per-level WB2 metrics by explicit loops over time."""
    n_t, n_l = f.shape[:2]
    out = {k: np.zeros(n_l) for k in ("mse", "bias", "acc")}
    for k in range(n_l):
        for t in range(n_t):
            e = f[t, k] - o[t, k]
            fa, oa = f[t, k] - c[t, k], o[t, k] - c[t, k]
            out["mse"][k] += _loop_spatial_mean(e * e, w) / n_t
            out["bias"][k] += _loop_spatial_mean(e, w) / n_t
            cov = _loop_spatial_mean(fa * oa, w)
            out["acc"][k] += cov / math.sqrt(_loop_spatial_mean(fa * fa, w) * _loop_spatial_mean(oa * oa, w)) / n_t
    out["rmse"] = np.sqrt(out["mse"])
    return out


@pytest.mark.parametrize("lat", [np.linspace(-90, 90, 7), np.linspace(-75, 75, 6)], ids=["poles", "no-poles"])
def test_metrics_match_explicit_loops_on_random_fields(lat):
    f = _random((5, 2, len(lat), 6), 3, lat)
    o = _random((5, 2, len(lat), 6), 4, lat) + 0.5 * f
    c = _random((5, 2, len(lat), 6), 5, lat) * 0.3
    expected = _loop_metrics(f.values, o.values, c.values, _analytic_weights(lat))
    np.testing.assert_allclose(mse(f, o).values, expected["mse"], rtol=1e-10)
    np.testing.assert_allclose(rmse(f, o).values, expected["rmse"], rtol=1e-10)
    np.testing.assert_allclose(bias(f, o).values, expected["bias"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(acc(f, o, c).values, expected["acc"], rtol=1e-10)


def test_metrics_work_in_float64_for_float32_inputs():
    lat = np.linspace(-80, 80, 5)
    o = (_random((2, 5, 4), 6, lat, dims=("time", "latitude", "longitude")) + 5e4).astype(np.float32)
    f = o + np.float32(1.0)
    assert rmse(f, o).dtype == np.float64
    assert float(rmse(f, o)) == pytest.approx(1.0, rel=1e-6)


def test_metrics_reject_mismatched_grids():
    lat = np.linspace(-80, 80, 5)
    f = _random((2, 5, 4), 7, lat, dims=("time", "latitude", "longitude")).rename("temperature")
    o = f.assign_coords(latitude=lat + 1.0)
    with pytest.raises(ValueError, match="temperature.*different coordinates"):
        rmse(f, o)
    with pytest.raises(ValueError, match="time_dim 'init'"):
        rmse(f, f, time_dim="init")
