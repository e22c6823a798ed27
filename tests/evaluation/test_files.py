"""The evaluation's files as WB2 users open them: plain ``xr.open_zarr`` without a warning, CF attributes,
``results.nc`` with WB2's regions, ``error_growth.csv`` and the DVC declarations that point at them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import zonda.data.sources as sources
from tests.support import registry_builders as rf
from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset
from zonda.evaluation import read_results
from zonda.evaluation.climatology import compute_climatology
from zonda.evaluation.error_growth import ERROR_GROWTH_FILE, LEAD_HOURS, column
from zonda.evaluation.external import PreparedBaseline
from zonda.evaluation.headline import headline_key
from zonda.evaluation.regions import GLOBAL, WB2_REGIONS
from zonda.evaluation.results import evaluate, global_region
from zonda.evaluation.run import BASELINES_DIR, FORECAST_STORE, HEADLINE_FILE, RESULTS_FILE, _score_baseline, run_evaluation
from zonda.models.saved import read_model_card
from zonda.params import load_params
from zonda.variables import lead_timedeltas


def open_quietly(path: Path) -> xr.Dataset:
    """``xr.open_zarr(path)`` as a user calls it, with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Failed to open Zarr store with consolidated metadata"
        return xr.open_zarr(path)


def assert_cf_coordinates(ds: xr.Dataset) -> None:
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert {"units": "degrees_north", "standard_name": "latitude"}.items() <= ds["latitude"].attrs.items()
    assert {"units": "degrees_east", "standard_name": "longitude"}.items() <= ds["longitude"].attrs.items()
    assert ds["time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["prediction_timedelta"].attrs["standard_name"] == "forecast_period"
    if "level" in ds.coords:
        assert {"units": "hPa", "standard_name": "air_pressure", "positive": "down"}.items() <= ds["level"].attrs.items()
    for name in ds.data_vars:
        assert ds[name].attrs.get("units"), f"{name} has no units"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Path:
    p = rf.params()
    dirs = rf.stage_dirs()
    out = tmp_path_factory.mktemp("eval")
    run_evaluation(p, dirs["snapshot"], dirs["statistics"], dirs["graph"], rf.model_dir(), out, progress=False)
    return out


def test_forecast_store_opens_with_plain_xarray_and_carries_cf_and_lineage_attrs(evaluation) -> None:
    ds = open_quietly(evaluation / FORECAST_STORE)
    assert_cf_coordinates(ds)
    card = read_model_card(rf.model_dir())
    assert ds.attrs["model_id"] == card["model_id"] and card["model_id"] in ds.attrs["source"]
    assert ds.attrs["snapshot_id"] == card["snapshot_id"]
    assert ds.attrs["created_by"].startswith("zonda ") and ds.attrs["title"]
    assert ds["temperature"].attrs["standard_name"] == "air_temperature"


def test_results_carry_wb2_regions_and_the_headline_reads_the_global_one(evaluation) -> None:
    results = read_results(evaluation / RESULTS_FILE)
    assert [str(r) for r in results["region"].values] == [r.name for r in WB2_REGIONS]
    headline = json.loads((evaluation / HEADLINE_FILE).read_text())["model"]
    z = global_region(results)["geopotential"].sel(model="model", metric="rmse", level=500)
    day = int(np.flatnonzero(results["lead_time"].values == np.timedelta64(1, "D"))[0])
    assert headline[headline_key("rmse", "geopotential/500", 1)] == pytest.approx(float(z[day]), rel=1e-12)
    tropics = results["geopotential"].sel(model="model", metric="rmse", level=500, region="tropics")
    assert not np.allclose(tropics.values, z.values)  # a region scores its own rows


def test_error_growth_csv_is_the_models_global_rmse_per_lead(evaluation) -> None:
    table = pd.read_csv(evaluation / ERROR_GROWTH_FILE)
    results = global_region(read_results(evaluation / RESULTS_FILE)).sel(model="model", metric="rmse")
    hours = results["lead_time"].values / np.timedelta64(1, "h")
    np.testing.assert_array_equal(table[LEAD_HOURS].values, hours)
    p = rf.params()
    for spec in p.evaluation.headline_variables:
        name, _, level = spec.partition("/")
        expected = results[name].sel(level=int(level)) if level else results[name]
        np.testing.assert_allclose(table[column(spec)].values, expected.values, rtol=1e-12)


def test_a_physics_baseline_store_opens_with_plain_xarray_and_carries_cf_attrs(tmp_path) -> None:
    truth = synthetic_dataset(n_time=16, levels=(500, 850), seed=1)
    inits, leads = truth["time"].values[2:6], lead_timedeltas(2)
    fields = {
        name: xr.concat(
            [truth[name].sel(time=inits + lead).assign_coords(time=inits) for lead in leads],
            dim=pd.Index(leads, name="prediction_timedelta"),
        ).transpose("time", "prediction_timedelta", ...)
        for name in ("temperature", "geopotential")
    }
    forecast = xr.Dataset(fields, attrs={"title": "physics baseline"})
    baseline = PreparedBaseline("hs-coarse", "physics", ("temperature", "geopotential"), {"physics": {"truncation": 21}}, lambda: forecast)
    clim = compute_climatology(truth, "mean")
    like = evaluate(forecast, truth, clim, regions=WB2_REGIONS)
    _score_baseline(baseline, forecast, truth, clim, tmp_path, like=like, progress=False)
    ds = open_quietly(tmp_path / BASELINES_DIR / "hs-coarse.zarr")
    assert_cf_coordinates(ds)
    assert ds.attrs["title"] == "physics baseline"  # its own attributes are kept


def test_dvc_metrics_and_plots_are_files_the_evaluate_stage_writes() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = Path(dvc["stages"]["evaluate"]["outs"][0])
    assert (out / HEADLINE_FILE).as_posix() in dvc["metrics"]
    (plot,) = dvc["plots"]
    spec = next(iter(plot.values()))
    assert spec["x"] == LEAD_HOURS
    (path, columns), = spec["y"].items()
    assert path == (out / ERROR_GROWTH_FILE).as_posix()
    local = load_params(REPO / "params" / "local.yaml")
    assert columns == [column(s) for s in local.evaluation.headline_variables]
    assert GLOBAL == WB2_REGIONS[0].name


def test_the_held_suarez_source_cache_opens_with_plain_xarray(tmp_path, monkeypatch) -> None:
    import zonda.data.sources as sources

    p = load_params(REPO / "params" / "debug.yaml")
    made = synthetic_dataset(n_time=8, levels=tuple(p.data.levels), seed=2)
    # the generator itself is tested in test_heldsuarez; here only the cache store it fills
    monkeypatch.setattr("zonda.data.heldsuarez.generate", lambda *args, **kwargs: made)
    sources.open_heldsuarez_source(p.data, tmp_path, progress=False)
    (store,) = tmp_path.glob("heldsuarez-*.zarr")
    xr.testing.assert_equal(open_quietly(store).load(), made)


def test_the_forecast_store_and_manifest_name_the_precision_the_forecasts_ran_in(evaluation, tmp_path) -> None:
    """The test model's card has no training precision (float32): ``auto`` runs it in float32; an explicit
    ``bf16-mixed`` runs it in bf16 and still writes float32 forecasts, close to the float32 ones."""
    full = open_quietly(evaluation / FORECAST_STORE)
    assert full.attrs["inference_precision"] == "32-true"
    dirs = rf.stage_dirs()
    manifest = run_evaluation(
        rf.params("evaluation.precision=bf16-mixed"), dirs["snapshot"], dirs["statistics"], dirs["graph"], rf.model_dir(),
        tmp_path / "bf16", progress=False,
    )
    assert manifest["inference_precision"] == "bf16-mixed"
    low = open_quietly(tmp_path / "bf16" / FORECAST_STORE)
    assert low.attrs["inference_precision"] == "bf16-mixed"
    assert low["temperature"].dtype == np.float32
    spread = float(full["temperature"].std())
    difference = float(abs(low["temperature"] - full["temperature"]).max())
    assert 0 < difference < 0.05 * spread
