"""Evaluation of a forecast against the truth, in the WeatherBench2 results layout.

:func:`evaluate` returns one data variable per forecast variable with dims
``(metric, lead_time[, region][, level])``: ``metric`` holds ``rmse``, ``mse``,
``bias``, ``acc`` (definitions in :mod:`zonda.evaluation.metrics`; averages
over the forecast's init times), ``lead_time`` is timedelta64[ns].
Values are in the variable's units (``mse``: units squared, ``acc``:
dimensionless). Dataset attrs record the init times covered and the
climatology used for the ACC. With ``regions`` (the evaluation stage passes
:data:`~zonda.evaluation.regions.WB2_REGIONS`) the scores gain WB2's
``region`` dim; every reader of a results file picks the global region with
:func:`global_region` (headline numbers, plots, summaries are global).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

import zonda.evaluation.metrics as metrics
from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, forecast_axes, truth_for_lead
from zonda.evaluation.baselines import climatology_forecast, persistence_forecast
from zonda.evaluation.climatology import climatology_at
from zonda.evaluation.regions import GLOBAL, REGION_DIM, Region
from zonda.files import write_netcdf_atomic
from zonda.variables import VARIABLES

METRICS = ("rmse", "mse", "bias", "acc")
LEAD_TIME = "lead_time"
MODEL_DIM = "model"


def _label_dim(name: str, labels: Sequence[str]) -> xr.DataArray:
    """A string coordinate for ``xr.concat`` (numpy ``<U``, which netCDF stores as text)."""
    return xr.DataArray(np.array(list(labels), dtype=str), dims=[name], name=name)


def _forecast_variables(forecast: xr.Dataset, truth: xr.Dataset, climatology: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    names = list(variables) if variables is not None else [n for n in forecast.data_vars if LEAD_DIM in forecast[n].dims]
    if not names:
        raise ValueError(f"forecast has no variables with a {LEAD_DIM!r} dim (variables {list(forecast.data_vars)})")
    for where, ds in (("forecast", forecast), ("truth", truth), ("climatology", climatology)):
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise KeyError(f"variables {missing} are not in the {where} dataset (it has {list(ds.data_vars)})")
    return names


def _match_levels(da: xr.DataArray, like: xr.DataArray, what: str) -> xr.DataArray:
    """``da`` at the levels of ``like`` (when ``like`` has a ``level`` dim)."""
    if "level" not in like.dims:
        if "level" in da.dims:
            raise ValueError(f"{what} {da.name!r} has a level dim but the forecast does not")
        return da
    if "level" not in da.dims:
        raise ValueError(f"{what} {da.name!r} has no level dim but the forecast has levels {like['level'].values.tolist()}")
    absent = sorted(set(like["level"].values.tolist()) - set(da["level"].values.tolist()))
    if absent:
        raise KeyError(f"{what} {da.name!r} lacks levels {absent} that the forecast has")
    return da.sel(level=like["level"].values)


def _scores_for_lead(f: xr.DataArray, o: xr.DataArray, c: xr.DataArray, regions: Sequence[Region] | None) -> xr.DataArray:
    """``(metric, [region], [level])`` scores of one variable at one lead, averaged over init times."""
    values = metrics.scores(f.compute(), o.compute(), c.compute(), time_dim=INIT_DIM, regions=regions)
    return xr.concat([values[m] for m in METRICS], dim=_label_dim("metric", METRICS), coords="minimal", compat="override")


def _climatology_for_lead(climatology: xr.Dataset, name: str, init: np.ndarray, lead: np.timedelta64) -> xr.DataArray:
    """The climatology of ``name`` at valid times ``init + lead`` (``time`` = init times); a time mean as is."""
    if "dayofyear" not in climatology[name].dims:
        return climatology[name]
    valid = xr.DataArray(init + lead, dims=[INIT_DIM], coords={INIT_DIM: init})
    return climatology_at(climatology[[name]], valid)[name]


def _units(name: str, truth: xr.Dataset) -> str:
    units = truth[name].attrs.get("units")
    if units is not None:
        return str(units)
    return VARIABLES[name].units if name in VARIABLES else ""


def evaluate(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset,
    *,
    variables: Sequence[str] | None = None,
    regions: Sequence[Region] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Scores a WB2-layout forecast against the truth, per variable, level and lead.

    Args:
      forecast: ``(time, prediction_timedelta, [level], latitude, longitude)``,
        ``time`` = init times, ``prediction_timedelta`` = leads.
      truth: ``(time, [level], latitude, longitude)`` covering every valid time
        ``init + lead``; same grid as the forecast.
      climatology: from :func:`zonda.evaluation.climatology.compute_climatology`
        (used for the ACC anomalies).
      variables: which forecast variables; default all with a lead dim.
      regions: score each of these regions (a ``region`` dim, WB2's layout);
        default the globe only, without a ``region`` dim.
      progress: show a tqdm bar over (variable, lead) pairs. Each step is
        vectorised over init times and levels.

    Returns:
      Dataset, per variable ``(metric, lead_time[, region][, level])`` float64.
    """
    init, leads = forecast_axes(forecast)
    names = _forecast_variables(forecast, truth, climatology, variables)
    tasks = [(name, j) for name in names for j in range(len(leads))]
    per_var: dict[str, list[xr.DataArray]] = {name: [] for name in names}
    for name, j in tqdm(tasks, desc="evaluate", unit="lead", disable=not progress):
        f = forecast[name].isel({LEAD_DIM: j}, drop=True).transpose(INIT_DIM, ...)
        o = _match_levels(truth_for_lead(truth[name], init, leads[j], name), f, "truth")
        c = _match_levels(_climatology_for_lead(climatology, name, init, leads[j]), f, "climatology")
        per_var[name].append(_scores_for_lead(f, o, c, regions))
    lead_index = pd.Index(leads, name=LEAD_TIME)
    out = {}
    for name in names:
        da = xr.concat(per_var[name], dim=lead_index).transpose("metric", LEAD_TIME, ...)
        out[name] = da.assign_attrs(units=_units(name, truth), note="mse in units squared; acc dimensionless")
    attrs = {
        "n_init_times": int(len(init)),
        "first_init_time": str(pd.Timestamp(init.min())),
        "last_init_time": str(pd.Timestamp(init.max())),
        "climatology_mode": str(climatology.attrs.get("climatology_mode", "unknown")),
        "rmse_definition": "sqrt(mean over init times of the area-weighted MSE)",
    }
    return xr.Dataset(out, attrs=attrs)


def evaluate_with_baselines(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset,
    *,
    variables: Sequence[str] | None = None,
    regions: Sequence[Region] | None = None,
    progress: bool = False,
) -> dict[str, xr.Dataset]:
    """Scores the model, persistence and climatology on the forecast's init times and leads.

    Returns:
      ``{"model": ..., "persistence": ..., "climatology": ...}``, each as from :func:`evaluate`
      (with ``regions``: a ``region`` dim).
    """
    init, leads = forecast_axes(forecast)
    names = _forecast_variables(forecast, truth, climatology, variables)
    levels = {"level": forecast["level"].values} if "level" in forecast.coords else {}
    persistence = persistence_forecast(truth, init, leads, variables=names)
    clim = climatology_forecast(climatology, init, leads, variables=names)
    if levels:
        persistence = persistence.sel(levels) if "level" in persistence.dims else persistence
        clim = clim.sel(levels) if "level" in clim.dims else clim
    runs = {"model": forecast, "persistence": persistence, "climatology": clim}
    return {
        key: evaluate(fc, truth, climatology, variables=names, regions=regions, progress=progress) for key, fc in runs.items()
    }


def stack_models(results: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """One Dataset with a leading ``model`` dim from ``{model name: results}`` (attrs of the first)."""
    if not results:
        raise ValueError("no results to stack")
    keys = list(results)
    stacked = xr.concat([results[k] for k in keys], dim=_label_dim(MODEL_DIM, keys), combine_attrs="override")
    return stacked.transpose(MODEL_DIM, ...)


def unstack_models(stacked: xr.Dataset) -> dict[str, xr.Dataset]:
    """Inverse of :func:`stack_models`."""
    if MODEL_DIM not in stacked.dims:
        raise ValueError(f"dataset has no {MODEL_DIM!r} dim (dims {dict(stacked.sizes)})")
    return {str(m): stacked.sel({MODEL_DIM: m}, drop=True) for m in stacked[MODEL_DIM].values}


def global_region(results: xr.Dataset) -> xr.Dataset:
    """The global scores of a results Dataset: its ``region="global"`` entry without the ``region`` dim.

    Results without a ``region`` dim (from :func:`evaluate` without ``regions``)
    are global by construction and come back as they are; results with regions
    but no global entry raise KeyError.
    """
    if REGION_DIM not in results.dims:
        return results
    names = [str(r) for r in results[REGION_DIM].values]
    if GLOBAL not in names:
        raise KeyError(f"results have no {GLOBAL!r} region (regions {names})")
    return results.sel({REGION_DIM: GLOBAL}, drop=True)


def write_results(results: xr.Dataset, path: str | os.PathLike) -> Path:
    """Writes a results Dataset (from :func:`evaluate` or :func:`stack_models`) to netCDF atomically."""
    return write_netcdf_atomic(results, path)


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Reads a results netCDF fully into memory (lead_time as timedelta64, string coords as str)."""
    with xr.open_dataset(path, engine="h5netcdf", decode_timedelta=True) as ds:
        ds = ds.load()
    for coord in ("metric", MODEL_DIM, REGION_DIM):
        if coord in ds.coords:
            ds = ds.assign_coords({coord: ds[coord].values.astype(str)})
    return ds
