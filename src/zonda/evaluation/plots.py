"""Evaluation figures (PNG, matplotlib's Agg canvas; pyplot's global state is not touched).

* :func:`plot_scorecard` -- relative RMSE of the model against each baseline,
  per headline variable and lead, blue where the model is better;
* :func:`plot_error_growth` -- RMSE and ACC against lead for every model;
* :func:`plot_maps` -- forecast, truth and error maps for one init time.

Every function writes atomically and returns the path(s) written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zonda.evaluation import metrics as metric_fns
from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, as_datetimes, forecast_axes, truth_for_lead
from zonda.evaluation.headline import find_lead, headline_series, lead_days_of, lead_label, lead_position, parse_headline
from zonda.files import atomic_path

DPI = 110
METRIC_LABELS = {"rmse": "RMSE", "mse": "MSE", "bias": "Bias", "acc": "ACC"}
LOWER_IS_BETTER = ("rmse", "mse")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def _units(results: xr.Dataset | xr.DataArray, spec: str) -> str:
    name, _ = parse_headline(spec)
    da = results[name] if isinstance(results, xr.Dataset) else results
    return str(da.attrs.get("units", ""))


def _metric_axis_label(metric: str, units: str) -> str:
    if metric == "acc":
        return "ACC"
    shown = f"({units})**2" if metric == "mse" and units else units
    return f"{METRIC_LABELS.get(metric, metric)} [{shown}]" if shown else METRIC_LABELS.get(metric, metric)


def _first(results: Mapping[str, xr.Dataset]) -> xr.Dataset:
    if not results:
        raise ValueError("no results given")
    return next(iter(results.values()))


def relative_differences(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str = "rmse",
    model: str = "model",
    baselines: Sequence[str] = ("persistence", "climatology"),
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scorecard numbers: ``(percent, model_values, row_labels)``.

    ``percent[r, c] = 100 (model - baseline) / baseline`` for row ``r`` = (headline
    variable, baseline) and column ``c`` = lead; shapes ``(n_var * n_base, n_lead)``.
    """
    for key in [model, *baselines]:
        if key not in results:
            raise KeyError(f"results for {key!r} are missing (have {list(results)})")
    rows, pct, vals = [], [], []
    for spec in headline_variables:
        m = headline_series(results[model], spec, metric)
        m_at = np.array([float(m.isel(lead_time=lead_position(results[model], d))) for d in lead_days])
        for base in baselines:
            b = headline_series(results[base], spec, metric)
            b_at = np.array([float(b.isel(lead_time=lead_position(results[base], d))) for d in lead_days])
            with np.errstate(invalid="ignore", divide="ignore"):
                pct.append(100.0 * (m_at - b_at) / b_at)
            vals.append(m_at)
            rows.append(f"{spec}\nvs {base}")
    return np.array(pct), np.array(vals), rows


def plot_scorecard(
    results: Mapping[str, xr.Dataset],
    path: str | os.PathLike,
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str = "rmse",
    model: str = "model",
    baselines: Sequence[str] = ("persistence", "climatology"),
) -> Path:
    """Grid of ``100 (model - baseline) / baseline`` in %, blue = model better, with the numbers.

    Args:
      results: ``{"model": ..., "persistence": ..., "climatology": ...}`` from
        :func:`zonda.evaluation.results.evaluate_with_baselines`.
      path: PNG to write.
      headline_variables: ``name/level`` or surface ``name``; lead_days: columns.
      metric: ``rmse`` or ``mse`` (lower is better).
    """
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"scorecard metric must be one of {LOWER_IS_BETTER}, got {metric!r}")
    pct, vals, rows = relative_differences(results, headline_variables, lead_days, metric=metric, model=model, baselines=baselines)
    finite = np.abs(pct[np.isfinite(pct)])
    vmax = float(np.clip(finite.max() if finite.size else 10.0, 5.0, 100.0))
    fig = _figure(3.0 + 1.3 * len(lead_days), 1.2 + 0.75 * len(rows))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(pct), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for r in range(pct.shape[0]):
        for c in range(pct.shape[1]):
            colour = "white" if np.isfinite(pct[r, c]) and abs(pct[r, c]) > 0.6 * vmax else "black"
            ax.text(c, r, f"{pct[r, c]:+.1f}%\n{vals[r, c]:.4g}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(lead_days)), [lead_label(d) for d in lead_days])
    units = [_units(results[model], spec) for spec in headline_variables for _ in baselines]
    labels = [row.replace("\n", f" [{u}]\n", 1) if u else row for row, u in zip(rows, units)]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    for k in range(len(baselines), len(rows), len(baselines)):
        ax.axhline(k - 0.5, color="black", linewidth=1.5)
    ax.set_xlabel("lead time")
    label = METRIC_LABELS[metric]
    n_init = _first(results).attrs.get("n_init_times", "?")
    ax.set_title(f"{label} scorecard: {model} vs baselines ({n_init} init times)\ncell: relative difference, then {model} {label}")
    fig.colorbar(image, ax=ax, label=f"({model} - baseline) / baseline {label} [%]\nblue: {model} better, red: worse")
    return _save(fig, path)


def plot_error_growth(
    results: Mapping[str, xr.Dataset],
    path: str | os.PathLike,
    headline_variables: Sequence[str],
    *,
    metrics: Sequence[str] = ("rmse", "acc"),
) -> Path:
    """Metric against lead time, one line per model; rows = variables, columns = metrics."""
    styles = {"model": ("tab:blue", "o"), "persistence": ("tab:orange", "s"), "climatology": ("tab:green", "^")}
    fig = _figure(4.6 * len(metrics), 3.0 * len(headline_variables))
    axes = fig.subplots(len(headline_variables), len(metrics), squeeze=False)
    for r, spec in enumerate(headline_variables):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            for name, res in results.items():
                series = headline_series(res, spec, metric)
                colour, marker = styles.get(name, (None, "."))
                ax.plot(lead_days_of(res["lead_time"].values), series.values, marker=marker, markersize=3, color=colour, label=name)
            ax.set_title(f"{spec}: {METRIC_LABELS.get(metric, metric)}")
            ax.set_xlabel("lead time [days]")
            ax.set_ylabel(_metric_axis_label(metric, _units(_first(results), spec)))
            ax.grid(alpha=0.3)
            if metric == "acc":
                ax.axhline(0.6, color="grey", linestyle=":", linewidth=1)
    axes[0, 0].legend()
    fig.suptitle(f"Error growth ({_first(results).attrs.get('n_init_times', '?')} init times)")
    return _save(fig, path)


def _field(da: xr.DataArray, level: int | None, what: str) -> xr.DataArray:
    if level is None:
        return da
    if "level" not in da.dims or level not in da["level"].values:
        raise KeyError(f"{what} {da.name!r} has no level {level}")
    return da.sel(level=level)


def _map_panel(fig: Figure, ax, lon, lat, data: np.ndarray, title: str, cmap: str, vmin: float, vmax: float, units: str) -> None:
    mesh = ax.pcolormesh(lon, lat, data, cmap=cmap, vmin=vmin, vmax=vmax, shading="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("longitude [deg E]")
    ax.set_ylabel("latitude [deg N]")
    ax.set_aspect("equal")
    fig.colorbar(mesh, ax=ax, shrink=0.8, label=units)


def _safe_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec)


def plot_maps(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    out_dir: str | os.PathLike,
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    init_time=None,
) -> list[Path]:
    """One PNG per headline variable: rows = leads, columns = forecast, truth, forecast - truth.

    Args:
      forecast: WB2 layout ``(time, prediction_timedelta, [level], latitude, longitude)``.
      truth: ``(time, [level], latitude, longitude)`` covering the valid times.
      out_dir: directory for ``maps_<variable>_<level>.png``.
      init_time: which init time; default the first one.

    Returns:
      The paths written, in headline-variable order.
    """
    inits, leads = forecast_axes(forecast)
    init = as_datetimes([init_time])[0] if init_time is not None else inits[0]
    if init not in inits:
        raise KeyError(f"init time {pd.Timestamp(init)} is not in the forecast ({pd.Timestamp(inits[0])} .. {pd.Timestamp(inits[-1])})")
    paths = []
    for spec in headline_variables:
        name, level = parse_headline(spec)
        if name not in forecast.data_vars or name not in truth.data_vars:
            raise KeyError(f"{name!r} must be in both the forecast and the truth")
        units = str(truth[name].attrs.get("units", forecast[name].attrs.get("units", "")))
        fig = _figure(13.5, 2.9 * len(lead_days))
        axes = fig.subplots(len(lead_days), 3, squeeze=False)
        for r, days in enumerate(lead_days):
            j = find_lead(leads, days)
            f = _field(forecast[name].sel({INIT_DIM: init}).isel({LEAD_DIM: j}), level, "forecast")
            o = _field(truth_for_lead(truth[name], [init], leads[j], name).isel({INIT_DIM: 0}), level, "truth")
            f, o = f.transpose("latitude", "longitude"), o.transpose("latitude", "longitude")
            err = f.astype(np.float64) - o.astype(np.float64)
            lo, hi = float(min(f.min(), o.min())), float(max(f.max(), o.max()))
            emax = float(np.abs(err).max()) or 1.0
            rmse = float(metric_fns.rmse(f, o, time_dim=None))
            lon, lat = f["longitude"].values, f["latitude"].values
            label = lead_label(days)
            _map_panel(fig, axes[r, 0], lon, lat, f.values, f"forecast, lead {label}", "viridis", lo, hi, units)
            _map_panel(fig, axes[r, 1], lon, lat, o.values, f"truth, valid {pd.Timestamp(init + leads[j]):%Y-%m-%d %H:%M}", "viridis", lo, hi, units)
            _map_panel(fig, axes[r, 2], lon, lat, err.values, f"forecast - truth (RMSE {rmse:.4g})", "RdBu_r", -emax, emax, units)
        fig.suptitle(f"{spec} [{units}], init {pd.Timestamp(init):%Y-%m-%d %H:%M}")
        paths.append(_save(fig, Path(out_dir) / f"maps_{_safe_name(spec)}.png"))
    return paths
