"""External baselines (``evaluation.baselines``): alignment checks and scoring like the model.

References: a forecast store that is the truth plus a known offset has, by hand,
RMSE equal to that offset (a constant) or to the cos-latitude-weighted RMS of
the offset pattern (brute force in numpy); every coverage gap is named before
any forecast runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.support import registry_builders as rf
from tests.support.synthetic import synthetic_dataset
from zonda.evaluation import evaluate, read_results, read_spectra, run
from zonda.evaluation.climatology import compute_climatology
from zonda.evaluation.external import BaselineError, Target, prepare_baselines
from zonda.evaluation.run import init_indices, lead_steps, read_headline, run_evaluation
from zonda.params import BaselineParams, load_params
from zonda.snapshot import open_snapshot
from zonda.variables import lead_timedeltas

LEVELS = (500, 850)
STEPS = 4  # 6 h .. 24 h
SPLITS = ("data.splits.validation=2000-01-05/2000-01-05", "data.splits.test=2000-01-06/2000-01-08")  # two test inits


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return synthetic_dataset(n_time=40, levels=LEVELS, seed=3)


def _target(truth: xr.Dataset, inits: np.ndarray) -> Target:
    return Target(
        init_times=inits, leads=lead_timedeltas(STEPS), variables=("temperature", "geopotential", "surface_pressure"),
        levels=LEVELS, latitudes=truth["latitude"].values, longitudes=truth["longitude"].values,
        headline_variables=("geopotential/500", "temperature/850"),
    )


def _store(truth: xr.Dataset, inits: np.ndarray, leads: np.ndarray, offsets: dict[str, xr.DataArray | float]) -> xr.Dataset:
    """A WB2-layout forecast: the truth at each valid time plus ``offsets[name]``."""
    fields = {}
    for name, offset in offsets.items():
        per_lead = [truth[name].sel(time=inits + lead).assign_coords(time=inits) + offset for lead in leads]
        fields[name] = xr.concat(per_lead, dim=pd.Index(leads, name="prediction_timedelta")).transpose("time", "prediction_timedelta", ...)
        fields[name].attrs["units"] = truth[name].attrs["units"]
    return xr.Dataset(fields)


def _write(ds: xr.Dataset, path) -> str:
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return str(path)


def test_store_baseline_is_scored_like_a_hand_computation(truth, tmp_path):
    inits = truth["time"].values[4:20:4]
    leads = np.concatenate([[np.timedelta64(0, "ns")], lead_timedeltas(STEPS + 2)])  # a lead 0 and extra leads: ignored
    pattern = 2.0 * np.sin(np.deg2rad(truth["latitude"]))  # K, varies with latitude
    store = _store(truth, inits, leads, {"geopotential": 30.0, "temperature": pattern, "surface_pressure": 0.0})
    spec = BaselineParams(name="hres", path=_write(store, tmp_path / "hres.zarr"))
    (prepared,) = prepare_baselines([spec], _target(truth, inits), snapshot_dir=tmp_path, snapshot_manifest={})
    forecast = prepared.load()
    assert list(forecast["prediction_timedelta"].values) == list(lead_timedeltas(STEPS))
    scores = evaluate(forecast, truth, compute_climatology(truth, "mean"), variables=list(prepared.variables))

    np.testing.assert_allclose(scores["geopotential"].sel(metric="rmse").values, 30.0, rtol=1e-5)
    weights = np.cos(np.deg2rad(truth["latitude"].values))
    expected_t = np.sqrt(np.sum(weights * pattern.values**2) / np.sum(weights))  # same at every lead and level
    np.testing.assert_allclose(scores["temperature"].sel(metric="rmse").values, expected_t, rtol=1e-5)
    np.testing.assert_allclose(scores["surface_pressure"].sel(metric="rmse").values, 0.0, atol=1e-6)


def test_store_names_are_mapped_with_rename(truth, tmp_path):
    inits = truth["time"].values[4:12:4]
    store = _store(truth, inits, lead_timedeltas(STEPS), {"geopotential": 0.0, "temperature": 0.0})
    store = store.rename({"geopotential": "z", "temperature": "t", "latitude": "lat", "longitude": "lon"})
    spec = BaselineParams(name="other", path=_write(store, tmp_path / "o.zarr"), rename={"z": "geopotential", "t": "temperature"})
    (prepared,) = prepare_baselines([spec], _target(truth, inits), snapshot_dir=tmp_path, snapshot_manifest={})
    assert prepared.variables == ("temperature", "geopotential")  # surface_pressure absent: not scored, not required


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("drop_init", r"does not cover the evaluation's initial times: 1 of 3 missing \(first 2000-01-04"),
        ("twelve_hourly", r"lacks 2 of the 4 lead times \(first 0 days 06:00:00\)"),
        ("other_grid", r"its latitude .* is not the snapshot's"),
        ("units", r"geopotential is in 'm', the evaluation needs 'm\*\*2 s\*\*-2'"),
        ("no_headline", r"lacks the headline variables \['temperature'\]"),
        ("no_level", r"lacks pressure levels \[850\] hPa"),
    ],
)
def test_gaps_are_named(truth, tmp_path, change, match):
    inits = truth["time"].values[4:16:4]
    leads = lead_timedeltas(STEPS)
    store = _store(truth, inits, leads, {"geopotential": 0.0, "temperature": 0.0})
    if change == "drop_init":
        store = store.isel(time=[0, 1])
    elif change == "twelve_hourly":
        store = store.isel(prediction_timedelta=[1, 3])
    elif change == "other_grid":
        store = store.assign_coords(latitude=store["latitude"].values + 1.0)
    elif change == "units":
        store["geopotential"].attrs["units"] = "m"
    elif change == "no_headline":
        store = store.drop_vars("temperature")
    elif change == "no_level":
        store = store.sel(level=[500])
    spec = BaselineParams(name="bad", path=_write(store, tmp_path / "bad.zarr"))
    with pytest.raises(BaselineError, match=r"baseline 'bad' .*" + match):
        prepare_baselines([spec], _target(truth, inits), snapshot_dir=tmp_path, snapshot_manifest={})


def test_missing_store_and_physics_without_states_are_refused(truth, tmp_path):
    inits = truth["time"].values[4:8:4]
    with pytest.raises(BaselineError, match=r"no such zarr store"):
        prepare_baselines([BaselineParams(name="x", path=str(tmp_path / "nope.zarr"))], _target(truth, inits),
                          snapshot_dir=tmp_path, snapshot_manifest={})
    with pytest.raises(BaselineError, match=r"holds no truth states"):
        prepare_baselines([BaselineParams(name="phys", heldsuarez={"truncation": 10, "layers": 6})], _target(truth, inits),
                          snapshot_dir=tmp_path, snapshot_manifest={})


def test_baseline_params_are_checked():
    with pytest.raises(ValueError, match=r"exactly one of path .* or heldsuarez"):
        BaselineParams(name="x")
    with pytest.raises(ValueError, match=r"reserved"):
        BaselineParams(name="persistence", path="a.zarr")
    base = rf.REPO / "params" / "debug.yaml"
    with pytest.raises(ValueError, match=r"names \['a'\] are used more than once"):
        load_params(base, ["evaluation.baselines=[{name: a, path: x.zarr}, {name: a, path: y.zarr}]"])


def _truth_store(p, tmp_path, *, offset: float, drop_first_init: bool = False) -> str:
    """A forecast store on the debug preset's test inits: the snapshot's truth + ``offset`` (geopotential)."""
    snap = open_snapshot(rf.stage_dirs()["snapshot"]).load()
    times = snap["time"].values
    inits = times[init_indices(times, p, 2)]
    if drop_first_init:
        inits = inits[1:] if len(inits) > 1 else inits[:0]
    offsets = {"geopotential": offset, "temperature": 0.0}
    return _write(_store(snap, inits, lead_timedeltas(lead_steps(p)), offsets), tmp_path / "store.zarr")


def test_run_evaluation_scores_store_baselines_beside_the_model(tmp_path):
    p0 = rf.params()
    path = _truth_store(p0, tmp_path, offset=25.0)
    p = rf.params(f"evaluation.baselines=[{{name: truth-plus-25, path: {path}}}]")
    dirs = rf.stage_dirs()
    manifest = run_evaluation(p, dirs["snapshot"], dirs["statistics"], dirs["graph"], rf.model_dir(), tmp_path / "eval", progress=False)
    results = read_results(tmp_path / "eval" / "results.nc")
    assert list(results["model"].values) == ["model", "persistence", "climatology", "truth-plus-25"]
    z = results["geopotential"].sel(model="truth-plus-25", metric="rmse", level=500)
    np.testing.assert_allclose(z.values, 25.0, rtol=1e-5)
    assert np.isnan(results["u_component_of_wind"].sel(model="truth-plus-25", metric="rmse")).all()  # not in the store
    assert read_headline(tmp_path / "eval")["truth-plus-25"]["rmse.geopotential.500.1d"] == pytest.approx(25.0, rel=1e-5)
    assert manifest["baselines"]["truth-plus-25"]["path"] == path

    spectra = read_spectra(tmp_path / "eval" / "spectra.nc")
    assert {"model", "truth-plus-25", "truth"} <= set(spectra["model"].values)
    verdict = (tmp_path / "eval" / "verdict.txt").read_text()
    assert "truth-plus-25" in verdict and "climatology" in verdict


def test_uncovered_baseline_fails_before_any_forecast(tmp_path, monkeypatch):
    p0 = rf.params(*SPLITS)  # two inits
    path = _truth_store(p0, tmp_path, offset=0.0, drop_first_init=True)
    p = rf.params(*SPLITS, f"evaluation.baselines=[{{name: late, path: {path}}}]")

    def no_forecast(*args, **kwargs):
        raise AssertionError("the model's forecasts ran before the baseline was checked")

    monkeypatch.setattr(run, "write_forecasts", no_forecast)
    dirs = rf.stage_dirs()
    with pytest.raises(BaselineError, match=r"baseline 'late' .* 1 of 2 missing \(first 2000-01-06"):
        run.run_evaluation(p, dirs["snapshot"], dirs["statistics"], dirs["graph"], rf.model_dir(), tmp_path / "eval", progress=False)
    assert not (tmp_path / "eval").exists()
