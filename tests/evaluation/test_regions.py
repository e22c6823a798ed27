"""WB2's regions in results: regional scores against a brute-force hand computation.

Reference: WB2's ``scripts/evaluate.py`` regions (label slices include both ends)
and its spatial mean over a region: the global cell-area weights of the rows in
the region, renormalised (``weighted(...).mean``). The crafted forecast errs by
1 on every row with |lat| <= 20 and by 3 elsewhere, on a 10-degree grid with
poles (rows at exactly +-20), so each region's MSE is a weighted mix of 1 and 9
computed here from ``sin(upper) - sin(lower)`` band areas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from zonda.evaluation import WB2_REGIONS, evaluate, global_region
from zonda.evaluation.climatology import compute_climatology
from zonda.evaluation.regions import Region

LAT = np.arange(-90.0, 90.1, 10.0)  # 19 rows, poles and +-20 included
LON = np.arange(0.0, 360.0, 30.0)
LEADS = pd.to_timedelta([6, 12], unit="h").values.astype("timedelta64[ns]")


def _band_areas(lat: np.ndarray) -> np.ndarray:
    """Brute force: each row's band from the midpoints to its neighbours (+-90 at the ends), area sin(up) - sin(lo)."""
    areas = []
    for i, phi in enumerate(lat):
        lo = -90.0 if i == 0 else (lat[i - 1] + phi) / 2
        up = 90.0 if i == len(lat) - 1 else (lat[i + 1] + phi) / 2
        areas.append(np.sin(np.deg2rad(up)) - np.sin(np.deg2rad(lo)))
    return np.array(areas)


def _mse_by_hand(error: np.ndarray, rows: np.ndarray) -> float:
    w = _band_areas(LAT)
    return float(sum(w[i] * error[i] ** 2 for i in range(len(LAT)) if rows[i]) / sum(w[i] for i in range(len(LAT)) if rows[i]))


@pytest.fixture(scope="module")
def crafted() -> tuple[xr.Dataset, xr.Dataset, xr.Dataset, np.ndarray]:
    rng = np.random.default_rng(0)
    times = pd.date_range("2000-01-01", periods=8, freq="6h").values
    truth = xr.Dataset(
        {"temperature": (("time", "level", "latitude", "longitude"), 250 + rng.standard_normal((8, 1, LAT.size, LON.size)))},
        coords={"time": times, "level": [850], "latitude": LAT, "longitude": LON},
    )
    truth["temperature"].attrs["units"] = "K"
    error = np.where(np.abs(LAT) <= 20, 1.0, 3.0)  # (lat,) K
    inits = times[:3]
    per_lead = [
        truth["temperature"].sel(time=inits + lead).assign_coords(time=inits) + xr.DataArray(error, dims=["latitude"], coords={"latitude": LAT})
        for lead in LEADS
    ]
    forecast = xr.Dataset({"temperature": xr.concat(per_lead, dim=pd.Index(LEADS, name="prediction_timedelta"))})
    forecast = forecast.transpose("time", "prediction_timedelta", ...)
    return forecast, truth, compute_climatology(truth, "mean"), error


def test_regional_rmse_and_bias_match_a_hand_computation(crafted) -> None:
    forecast, truth, clim, error = crafted
    res = evaluate(forecast, truth, clim, regions=WB2_REGIONS)
    assert [str(r) for r in res["region"].values] == [
        "global", "tropics", "extra-tropics", "northern-hemisphere", "southern-hemisphere"
    ]
    rows = {
        "global": np.ones(LAT.size, bool),
        "tropics": np.abs(LAT) <= 20,
        "extra-tropics": np.abs(LAT) >= 20,
        "northern-hemisphere": LAT >= 20,
        "southern-hemisphere": LAT <= -20,
    }
    for region, inside in rows.items():
        rmse = res["temperature"].sel(region=region, metric="rmse", level=850).values  # (lead,)
        np.testing.assert_allclose(rmse, np.sqrt(_mse_by_hand(error, inside)), rtol=1e-12, err_msg=region)
        bias = res["temperature"].sel(region=region, metric="bias", level=850).values
        w = _band_areas(LAT) * inside
        np.testing.assert_allclose(bias, (w * error).sum() / w.sum(), rtol=1e-12, err_msg=region)
    assert float(res["temperature"].sel(region="tropics", metric="rmse", level=850)[0]) == pytest.approx(1.0, rel=1e-12)
    # the hemispheres hold the +-20 rows (error 1) besides the error-3 rows
    assert 1.0 < float(res["temperature"].sel(region="northern-hemisphere", metric="rmse", level=850)[0]) < 3.0


def test_the_global_region_is_identical_to_the_unregioned_scores(crafted) -> None:
    forecast, truth, clim, _ = crafted
    regional = evaluate(forecast, truth, clim, regions=WB2_REGIONS)
    plain = evaluate(forecast, truth, clim)
    xr.testing.assert_identical(global_region(regional), plain)  # headline numbers do not move
    assert global_region(plain) is plain  # results without regions are global by construction


def test_a_region_without_grid_rows_and_results_without_global_are_refused(crafted) -> None:
    forecast, truth, clim, _ = crafted
    with pytest.raises(ValueError, match="region 'polar-cap'.*holds no row"):
        evaluate(forecast, truth, clim, regions=[Region("polar-cap", ((89.5, 89.9),))])
    only_tropics = evaluate(forecast, truth, clim, regions=[Region("tropics", ((-20.0, 20.0),))])
    with pytest.raises(KeyError, match="no 'global' region"):
        global_region(only_tropics)
