"""Stage 5 glue: 10-day forecasts over the held-out period, scored against baselines.

:func:`run_evaluation` picks initial conditions over the test split (every
``evaluation.init_every_hours``, each with its whole forecast inside the
split), runs the trained forecaster autoregressively in batches (on the GPU
when there is one), streams the forecasts into ``forecast.zarr`` (WB2 layout:
``time`` = init, ``prediction_timedelta``, ``level``, ``latitude``,
``longitude``), then scores them, persistence, climatology and every
``evaluation.baselines`` entry (:mod:`zonda.evaluation.external`: forecast
stores and the Held-Suarez physics baseline, checked before the model's
forecasts run) with the WeatherBench2 metrics of :mod:`zonda.evaluation`.

Output directory::

    results.nc        WB2 results layout, one data variable per variable, dims (model, metric, lead_time, region[, level]),
                      regions WB2's global, tropics, extra-tropics, northern-/southern-hemisphere
    error_growth.csv  the model's global RMSE per lead of the headline variables (DVC's plots file)
    baselines/<name>.zarr  each physics baseline's forecasts (WB2 layout), see evaluation.baselines
    headline.json     headline scores (e.g. rmse.geopotential.500.5d) of the model and the baselines
    per_init.nc       the model's rmse/acc headline scores per init time (the promotion gate's paired test)
    summary.md        Markdown summary (the KFP UI shows it); verdict.txt the same verdict as plain text
    spectra.nc, spectra.png  zonal power spectra of every forecast and the truth (zonda.evaluation.spectra)
    scorecard.png, error_growth.png, maps_<variable>_<level>.png
    forecast.zarr     the model's forecasts (consolidated, CF coordinate and global attributes)
    manifest.json, params.resolved.yaml   added by the stage (zonda.outputs.write_output), not here
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from zonda import evaluation as ev
from zonda.channels import ChannelLayout
from zonda.evaluation.error_growth import ERROR_GROWTH_FILE, write_error_growth
from zonda.evaluation.external import PreparedBaseline, Target, prepare_baselines
from zonda.evaluation.headline import headline_series
from zonda.evaluation.per_init import PER_INIT_FILE, PER_INIT_METRICS, per_init_scores, write_per_init
from zonda.evaluation.regions import WB2_REGIONS
from zonda.evaluation.results import global_region
from zonda.files import read_json_file, write_json_atomic, write_text_atomic
from zonda.models.forecaster import inference_device
from zonda.models.precision import FLOAT32, autocast, inference_precision, trained_precision
from zonda.models.saved import load_forecaster, read_model_card
from zonda.params import Params
from zonda.provenance import code_version, read_manifest
from zonda.snapshot import DATA_DIRNAME, open_snapshot
from zonda.snapshot_reader import SnapshotReader
from zonda.variables import TIME_STEP_HOURS, forecast_cf_attrs, lead_timedeltas
from zonda.zarr_files import consolidate_zarr

log = logging.getLogger(__name__)

FORECAST_STORE = "forecast.zarr"
RESULTS_FILE = "results.nc"
HEADLINE_FILE = "headline.json"
BASELINES_DIR = "baselines"
SUMMARY_FILE = "summary.md"
VERDICT_FILE = "verdict.txt"
SPECTRA_FILE = "spectra.nc"


def lead_steps(params: Params) -> int:
    """Number of 6-hour steps of a forecast (40 for 10 days)."""
    return int(round(params.evaluation.lead_days * 24 / TIME_STEP_HOURS))


def init_indices(times: np.ndarray, params: Params, input_steps: int) -> np.ndarray:
    """Time indices of the initial conditions: inside the test split with the whole forecast,
    spaced ``init_every_hours``, the ``input_steps - 1`` earlier states available."""
    times = np.asarray(times, dtype="datetime64[ns]")
    test = params.data.splits.test
    start, end = np.datetime64(test.start, "ns"), np.datetime64(test.end, "ns")
    steps = lead_steps(params)
    every = np.timedelta64(params.evaluation.init_every_hours, "h")
    idx = np.arange(len(times))
    ok = (times >= start) & (idx >= input_steps - 1) & (idx + steps < len(times))
    ok &= np.isin(idx, np.flatnonzero(times <= end) - steps)  # verification inside the split
    ok &= ((times - start) % every) == np.timedelta64(0, "ns")
    chosen = idx[ok]
    if params.evaluation.max_inits is not None:
        chosen = chosen[: params.evaluation.max_inits]
    if chosen.size == 0:
        raise ValueError(
            f"data.splits.test ({test.as_str()}) holds no initial condition with a whole "
            f"{params.evaluation.lead_days:g}-day forecast after it"
        )
    return chosen


def _forecast_template(
    layout: ChannelLayout, latitudes: np.ndarray, longitudes: np.ndarray, init_times: np.ndarray, steps: int
) -> xr.Dataset:
    leads = lead_timedeltas(steps)
    empty = np.zeros((len(init_times), steps, len(latitudes) * len(longitudes), len(layout)), dtype=np.float32)
    ds = layout.unstack(empty, latitudes, longitudes, {"time": init_times, "prediction_timedelta": leads})
    return ds.chunk({"time": 1, "prediction_timedelta": -1})


def write_forecasts(
    forecaster: torch.nn.Module,
    reader: Any,
    layout: ChannelLayout,
    latitudes: np.ndarray,
    longitudes: np.ndarray,
    times: np.ndarray,
    inits: np.ndarray,
    steps: int,
    batch_size: int,
    store: Path,
    *,
    attrs: dict[str, Any] | None = None,
    precision: str = FLOAT32,
    progress: bool = True,
) -> xr.Dataset:
    """Runs batched autoregressive forecasts and writes them into a zarr store; returns it opened lazily.

    ``precision`` (``32-true`` or ``bf16-mixed``, :mod:`zonda.models.precision`) is the forward pass's;
    the store holds float32. It carries CF coordinate attributes, ``attrs`` as its global
    attributes and consolidated metadata (plain ``xr.open_zarr`` opens it without a warning)."""
    device = inference_device()
    forecaster = forecaster.to(device).eval()
    t_in = forecaster.input_steps
    template = forecast_cf_attrs(_forecast_template(layout, latitudes, longitudes, times[inits], steps))
    template.attrs.update(attrs or {})
    template.to_zarr(store, mode="w", compute=False, zarr_format=3, consolidated=False)
    static = torch.from_numpy(reader.static()).to(device)
    leads = lead_timedeltas(steps)
    bar = tqdm(total=len(inits), desc="forecasts", unit="init", disable=not progress)
    for a in range(0, len(inits), batch_size):
        batch = inits[a : a + batch_size]
        states = np.stack([reader.states(i - t_in + 1, i + 1) for i in batch])
        forcings = np.stack([reader.forcings(i - t_in + 1, i + 1 + steps) for i in batch])
        with torch.inference_mode(), autocast(precision, device):
            out = forecaster.rollout(
                torch.from_numpy(states).to(device), torch.from_numpy(forcings).to(device), static, steps
            )
        block = layout.unstack(
            out.float().cpu().numpy(), latitudes, longitudes, {"time": times[batch], "prediction_timedelta": leads}
        )
        block.drop_vars(["latitude", "longitude", "level", "prediction_timedelta"], errors="ignore").to_zarr(
            store, region={"time": slice(a, a + len(batch))}, zarr_format=3, consolidated=False
        )
        bar.update(len(batch))
    bar.close()
    consolidate_zarr(store)
    return xr.open_zarr(store)


def run_evaluation(
    params: Params,
    snapshot_dir: str | os.PathLike[str],
    statistics_dir: str | os.PathLike[str],
    graph_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Forecasts, scores, plots and summary into ``out_dir`` (see the module docstring); returns the manifest."""
    card = read_model_card(model_dir)
    forecaster = load_forecaster(model_dir, graph_dir, statistics_dir)
    layout = ChannelLayout(tuple(card["layout"]["variables"]), tuple(card["layout"]["levels"]))
    snapshot = open_snapshot(snapshot_dir)
    times = snapshot["time"].values
    lat, lon = snapshot["latitude"].values, snapshot["longitude"].values
    reader = SnapshotReader(
        Path(snapshot_dir) / DATA_DIRNAME, layout, card["forcings"], card["static"],
        [int(v) for v in snapshot["level"].values], (len(lat), len(lon)),
    )
    steps = lead_steps(params)
    inits = init_indices(times, params, forecaster.input_steps)
    spec, leads = params.evaluation.headline_variables, params.evaluation.headline_lead_days
    target = Target(
        init_times=times[inits], leads=lead_timedeltas(steps), variables=tuple(layout.variables),
        levels=tuple(int(v) for v in layout.levels), latitudes=lat, longitudes=lon, headline_variables=tuple(spec),
    )
    external = prepare_baselines(
        params.evaluation.baselines, target, snapshot_dir=snapshot_dir,
        snapshot_manifest=read_manifest(snapshot_dir) or {}, progress=progress,
    )
    log.info("evaluating %d forecasts of %d steps from %s to %s", len(inits), steps, times[inits[0]], times[inits[-1]])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = trained_precision(card)
    precision = inference_precision(params.evaluation.precision, trained=trained, device=inference_device())
    log.info("forecasts run in %s (model trained in %s)", precision, trained)
    forecast = write_forecasts(
        forecaster, reader, layout, lat, lon, times, inits, steps, params.evaluation.batch_size,
        out_dir / FORECAST_STORE, attrs={**_forecast_attrs(card), "inference_precision": precision},
        precision=precision, progress=progress,
    )
    variables = list(layout.variables)
    train = params.data.splits.train
    clim = ev.compute_climatology(
        snapshot[variables].sel(time=slice(np.datetime64(train.start), np.datetime64(train.end))).load(),
        params.evaluation.climatology,
    )
    test = params.data.splits.test
    truth = snapshot[variables].sel(time=slice(np.datetime64(test.start), np.datetime64(test.end))).load()
    forecast = forecast.load()
    regional = ev.evaluate_with_baselines(forecast, truth, clim, variables=variables, regions=WB2_REGIONS, progress=progress)
    forecasts = {"model": forecast}
    for baseline in external:
        forecasts[baseline.name] = baseline.load()
        regional[baseline.name] = _score_baseline(baseline, forecasts[baseline.name], truth, clim, out_dir, like=regional["model"], progress=progress)
    ev.write_results(ev.stack_models(regional), out_dir / RESULTS_FILE)
    results = {name: global_region(res) for name, res in regional.items()}  # headline, plots, summary: global
    write_error_growth(results["model"], spec, out_dir / ERROR_GROWTH_FILE)
    spectra_leads = params.evaluation.spectra_lead_days or leads
    spectra = ev.forecast_spectra(
        {name: fc[[v for v in variables if v in fc.data_vars]] for name, fc in forecasts.items()},
        truth, variables=spec, lead_days=spectra_leads,
    )
    ev.write_spectra(spectra, out_dir / SPECTRA_FILE)
    ev.plot_spectra(spectra, out_dir / "spectra.png", spec, spectra_leads)

    headline = {name: ev.headline_scores(res, spec, leads, metrics=["rmse", "acc"]) for name, res in results.items()}
    write_json_atomic(out_dir / HEADLINE_FILE, headline)
    paired = [key for key in headline["model"] if key.partition(".")[0] in PER_INIT_METRICS]
    write_per_init(per_init_scores(forecast, truth, clim, paired), out_dir / PER_INIT_FILE, snapshot_id=card.get("snapshot_id"))
    ev.plot_scorecard(results, out_dir / "scorecard.png", spec, leads)
    ev.plot_error_growth(results, out_dir / "error_growth.png", spec)
    ev.plot_maps(forecast, truth, out_dir, spec, params.evaluation.map_lead_days, init_time=times[inits[0]])
    summary = ev.markdown_summary(results, spec, leads, spectra=spectra, spectra_lead_days=spectra_leads)
    ev.write_summary(summary, out_dir / SUMMARY_FILE)
    verdict = ev.console_verdict(results, spec)
    write_text_atomic(out_dir / VERDICT_FILE, verdict + "\n")
    log.info("%s", verdict)

    manifest = {
        "kind": "zonda.evaluation",
        "model_lineage": {k: card.get(k) for k in ("snapshot_id", "statistics_hash", "graph_hash")},
        "init_times": {
            "count": int(len(inits)),
            "first": pd.Timestamp(times[inits[0]]).isoformat(),
            "last": pd.Timestamp(times[inits[-1]]).isoformat(),
            "every_hours": params.evaluation.init_every_hours,
        },
        "lead_steps": steps,
        "inference_precision": precision,
        "baselines": {b.name: {"description": b.description, **b.lineage} for b in external},
        "headline": headline["model"],
        "beats_persistence": beats_persistence(results, spec),
        "spectra": ev.spectral_headline(spectra, spectra_leads),
        "verdict": verdict,
        "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return manifest  # zonda.stages.evaluate_stage finishes the directory (resolved params, manifest last)


def _score_baseline(
    baseline: PreparedBaseline,
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset,
    out_dir: Path,
    *,
    like: xr.Dataset,
    progress: bool,
) -> xr.Dataset:
    """Scores one external baseline's ``forecast`` like the model (a physics baseline's forecasts are kept
    as a WB2 store); variables it lacks are NaN so every entry of results.nc has the same variables."""
    if "physics" in baseline.lineage:
        store = out_dir / BASELINES_DIR / f"{baseline.name}.zarr"
        store.parent.mkdir(parents=True, exist_ok=True)
        forecast_cf_attrs(forecast).chunk({"time": 1}).to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        consolidate_zarr(store)
    scored = ev.evaluate(
        forecast, truth, climatology, variables=list(baseline.variables), regions=WB2_REGIONS, progress=progress
    )
    for name in like.data_vars:
        if name not in scored.data_vars:
            scored[name] = xr.full_like(like[name], np.nan)
    return scored[list(like.data_vars)]


def _forecast_attrs(card: dict[str, Any]) -> dict[str, Any]:
    """Global attributes of ``forecast.zarr``: what made it (model ID, snapshot ID, zonda version)."""
    return {
        "title": "zonda forecasts over the test split (WeatherBench2 forecast layout)",
        "source": f"zonda model {card.get('model_id')}",
        "model_id": str(card.get("model_id")),
        "snapshot_id": str(card.get("snapshot_id")),
        "created_by": f"zonda {code_version()['zonda']}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def beats_persistence(results: dict[str, xr.Dataset], headline_variables: list[str]) -> dict[str, bool]:
    """Whether the model's RMSE is below persistence's at every lead, per headline variable."""
    out = {}
    for spec in headline_variables:
        model = headline_series(results["model"], spec, "rmse").values
        persistence = headline_series(results["persistence"], spec, "rmse").values
        out[spec] = bool(np.all(model < persistence))
    return out


def read_summary(directory: str | os.PathLike[str]) -> str:
    return (Path(directory) / SUMMARY_FILE).read_text()


def read_headline(directory: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """``{"model" | "persistence" | "climatology": {score key: value}}`` of an evaluation output directory."""
    return read_json_file(Path(directory) / HEADLINE_FILE, "not an evaluation output directory")


__all__ = ["run_evaluation", "init_indices", "write_forecasts", "beats_persistence", "read_headline", "read_summary"]
