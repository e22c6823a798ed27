"""Evaluation figures (PNG, matplotlib's Agg canvas; pyplot's global state is not touched).

* :func:`plot_scorecard` -- relative RMSE of the model against every baseline,
  per headline variable and lead, blue where the model is better, loss cells hatched;
* :func:`plot_error_growth` -- RMSE and ACC against lead for every model
  (ACC only where computed: not the climatology's 0 by convention);
* :func:`plot_spectra` -- zonal power spectra and their ratio to the truth's;
* :func:`plot_maps` -- forecast, truth and error maps for one init time.

Every ``plot_*`` function writes atomically and returns the path(s) written;
``*_figure`` builds the same figure without writing it.
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
from matplotlib.patches import Rectangle

import zonda.evaluation.metrics as metric_fns
from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, as_datetimes, forecast_axes, truth_for_lead
from zonda.evaluation.headline import (
    acc_defined,
    find_lead,
    headline_series,
    lead_days_of,
    lead_label,
    optional_series,
    optional_value,
    parse_headline,
)
from zonda.evaluation.spectra import MODEL_DIM as SPECTRA_MODEL_DIM
from zonda.evaluation.spectra import SPECTRAL_RATIO_LIMIT, TRUTH, WAVENUMBER, spectrum_name
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


def _baselines(results: Mapping[str, xr.Dataset], model: str, baselines: Sequence[str] | None) -> list[str]:
    names = [k for k in results if k != model] if baselines is None else list(baselines)
    for key in [model, *names]:
        if key not in results:
            raise KeyError(f"results for {key!r} are missing (have {list(results)})")
    if not names:
        raise ValueError(f"no baselines besides {model!r} in the results")
    return names


def _scorecard_numbers(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str,
    model: str,
    baselines: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(percent, model_values, baseline_values, row_labels)``, each array ``(n_var * n_base, n_lead)``."""
    rows, pct, vals, refs = [], [], [], []
    for spec in headline_variables:
        headline_series(results[model], spec, metric)  # the model must have it: KeyError otherwise
        m_at = np.array([optional_value(results[model], spec, metric, d) for d in lead_days])
        for base in baselines:
            b_at = np.array([optional_value(results[base], spec, metric, d) for d in lead_days])
            with np.errstate(invalid="ignore", divide="ignore"):
                pct.append(100.0 * (m_at - b_at) / b_at)
            vals.append(m_at)
            refs.append(b_at)
            rows.append(f"{spec}\nvs {base}")
    return np.array(pct), np.array(vals), np.array(refs), rows


def relative_differences(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str = "rmse",
    model: str = "model",
    baselines: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scorecard numbers: ``(percent, model_values, row_labels)``.

    ``percent[r, c] = 100 (model - baseline) / baseline`` for row ``r`` = (headline
    variable, baseline) and column ``c`` = lead; shapes ``(n_var * n_base, n_lead)``.
    ``baselines`` default: every key of ``results`` but ``model``. NaN where a
    baseline has no score for the variable or lead.
    """
    names = _baselines(results, model, baselines)
    pct, vals, _, rows = _scorecard_numbers(results, headline_variables, lead_days, metric=metric, model=model, baselines=names)
    return pct, vals, rows


def scorecard_losses(percent: np.ndarray, model_values: np.ndarray, baseline_values: np.ndarray) -> np.ndarray:
    """Cells where the model loses (same rule as the verdict): model >= baseline, or the model NaN where the baseline is finite."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(baseline_values) & ((percent >= 0) | ~np.isfinite(model_values))


def plot_scorecard(
    results: Mapping[str, xr.Dataset],
    path: str | os.PathLike,
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str = "rmse",
    model: str = "model",
    baselines: Sequence[str] | None = None,
) -> Path:
    """Writes :func:`scorecard_figure` to the PNG ``path``."""
    return _save(scorecard_figure(results, headline_variables, lead_days, metric=metric, model=model, baselines=baselines), path)


def scorecard_figure(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    metric: str = "rmse",
    model: str = "model",
    baselines: Sequence[str] | None = None,
) -> Figure:
    """Grid of ``100 (model - baseline) / baseline`` in %, blue = model better, with the numbers.

    One row per (headline variable, baseline); cells where the model loses
    (:func:`scorecard_losses`) are hatched and framed in black, with "LOSS" in
    the text; cells without a baseline score are grey "n/a".

    Args:
      results: ``{"model": ..., "persistence": ..., "climatology": ..., <other baselines>}``.
      headline_variables: ``name/level`` or surface ``name``; lead_days: columns.
      metric: ``rmse`` or ``mse`` (lower is better).
      baselines: rows; default every key of ``results`` but ``model``.
    """
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"scorecard metric must be one of {LOWER_IS_BETTER}, got {metric!r}")
    names = _baselines(results, model, baselines)
    pct, vals, refs, rows = _scorecard_numbers(results, headline_variables, lead_days, metric=metric, model=model, baselines=names)
    losses = scorecard_losses(pct, vals, refs)
    finite = np.abs(pct[np.isfinite(pct)])
    vmax = float(np.clip(finite.max() if finite.size else 10.0, 5.0, 100.0))
    fig = _figure(3.0 + 1.3 * len(lead_days), 1.2 + 0.75 * len(rows))
    ax = fig.add_subplot()
    ax.set_facecolor("lightgrey")
    image = ax.imshow(np.ma.masked_invalid(pct), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for r in range(pct.shape[0]):
        for c in range(pct.shape[1]):
            colour = "white" if np.isfinite(pct[r, c]) and abs(pct[r, c]) > 0.6 * vmax else "black"
            if not np.isfinite(refs[r, c]):
                text = "n/a"
            elif not np.isfinite(vals[r, c]):
                text = f"{model} NaN\nLOSS"
            else:
                text = f"{pct[r, c]:+.1f}%\n{vals[r, c]:.4g}" + ("\nLOSS" if losses[r, c] else "")
            if losses[r, c]:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="/", edgecolor="black", linewidth=2.0, label="loss"))
                box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
                ax.text(c, r, text, ha="center", va="center", fontsize=8, color="black", fontweight="bold", bbox=box)
            else:
                ax.text(c, r, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(lead_days)), [lead_label(d) for d in lead_days])
    units = [_units(results[model], spec) for spec in headline_variables for _ in names]
    labels = [row.replace("\n", f" [{u}]\n", 1) if u else row for row, u in zip(rows, units)]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    for k in range(len(names), len(rows), len(names)):
        ax.axhline(k - 0.5, color="black", linewidth=1.5)
    ax.set_xlabel("lead time")
    label = METRIC_LABELS[metric]
    n_init = _first(results).attrs.get("n_init_times", "?")
    ax.set_title(
        f"{label} scorecard: {model} vs baselines ({n_init} init times)\n"
        f"cell: relative difference, then {model} {label}; hatched = {model} loses ({int(losses.sum())} of {int(np.isfinite(refs).sum())})"
    )
    fig.colorbar(image, ax=ax, label=f"({model} - baseline) / baseline {label} [%]\nblue: {model} better, red: worse")
    return fig


#: (colour, marker, linestyle) of the standard forecasts in line plots; others cycle through :data:`EXTRA_STYLES`.
STYLES = {
    "model": ("tab:blue", "o", "-"),
    "persistence": ("tab:orange", "s", "--"),
    "climatology": ("tab:green", "^", ":"),
    "truth": ("black", "", "-"),
}
EXTRA_STYLES = (
    ("tab:red", "D", "-."),
    ("tab:purple", "v", (0, (5, 1))),
    ("tab:brown", "P", (0, (3, 1, 1, 1, 1, 1))),
    ("tab:pink", "X", "-."),
    ("tab:olive", "*", (0, (1, 1))),
    ("tab:cyan", "h", (0, (5, 2, 1, 2))),
)


def line_styles(names: Sequence[str]) -> dict[str, tuple]:
    """``{name: (colour, marker, linestyle)}``: fixed for the standard names, distinct for the rest."""
    extras = [n for n in names if n not in STYLES]
    styles = {n: STYLES[n] for n in names if n in STYLES}
    styles.update({n: EXTRA_STYLES[i % len(EXTRA_STYLES)] for i, n in enumerate(extras)})
    return styles


def plot_error_growth(
    results: Mapping[str, xr.Dataset],
    path: str | os.PathLike,
    headline_variables: Sequence[str],
    *,
    metrics: Sequence[str] = ("rmse", "acc"),
) -> Path:
    """Writes :func:`error_growth_figure` to the PNG ``path``."""
    return _save(error_growth_figure(results, headline_variables, metrics=metrics), path)


def error_growth_figure(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    *,
    metrics: Sequence[str] = ("rmse", "acc"),
) -> Figure:
    """Metric against lead time, one line per model; rows = variables, columns = metrics.

    Draws only what was computed: no ACC line for
    :data:`~zonda.evaluation.headline.ACC_BY_CONVENTION` forecasts (the
    climatology's 0 by convention), and no line for a baseline without scores
    for the variable. Every name in ``results`` has its own style.
    """
    styles = line_styles(list(results))
    fig = _figure(4.6 * len(metrics), 3.0 * len(headline_variables))
    axes = fig.subplots(len(headline_variables), len(metrics), squeeze=False)
    first = _first(results)
    for r, spec in enumerate(headline_variables):
        headline_series(first, spec, metrics[0])  # the first entry (the model) must have it
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            for name, res in results.items():
                if metric == "acc" and not acc_defined(name):
                    continue
                series = optional_series(res, spec, metric)
                if series is None:
                    continue
                colour, marker, linestyle = styles[name]
                ax.plot(
                    lead_days_of(series["lead_time"].values), series.values,
                    marker=marker, markersize=3, color=colour, linestyle=linestyle, label=name,
                )
            ax.set_title(f"{spec}: {METRIC_LABELS.get(metric, metric)}")
            ax.set_xlabel("lead time [days]")
            ax.set_ylabel(_metric_axis_label(metric, _units(first, spec)))
            ax.grid(alpha=0.3)
            if metric == "acc":
                ax.axhline(0.6, color="grey", linestyle=":", linewidth=1)
            ax.legend(fontsize=7)
    fig.suptitle(f"Error growth ({first.attrs.get('n_init_times', '?')} init times)")
    return fig


def plot_spectra(
    spectra: xr.Dataset,
    path: str | os.PathLike,
    variables: Sequence[str],
    lead_days: Sequence[float],
) -> Path:
    """Writes :func:`spectra_figure` to the PNG ``path``."""
    return _save(spectra_figure(spectra, variables, lead_days), path)


def spectra_figure(spectra: xr.Dataset, variables: Sequence[str], lead_days: Sequence[float]) -> Figure:
    """Zonal power spectra and their ratio to the truth's, per headline variable.

    Rows = ``variables``; left: log-log power against zonal wavenumber (>= 1),
    one line per model and the truth at each lead (thicker and darker with
    lead); right: ``model / truth`` per wavenumber with the 1 and
    :data:`~zonda.evaluation.spectra.SPECTRAL_RATIO_LIMIT` lines.

    Args:
      spectra: from :func:`zonda.evaluation.spectra.forecast_spectra`.
      variables: headline specs (``name/level`` or surface ``name``) present in ``spectra``.
      lead_days: leads to draw, each a lead of ``spectra``.
    """
    models = [str(m) for m in spectra[SPECTRA_MODEL_DIM].values]
    if TRUTH not in models:
        raise KeyError(f"spectra have no {TRUTH!r} (models {models})")
    names = [spectrum_name(spec) for spec in variables]
    absent = [n for n in names if n not in spectra.data_vars]
    if absent:
        raise KeyError(f"spectra lack {absent} (variables {list(spectra.data_vars)})")
    leads = spectra["lead_time"].values
    positions = [find_lead(leads, d) for d in lead_days]
    styles = line_styles(models)
    k = spectra[WAVENUMBER].values
    keep = k >= 1
    shades = np.linspace(0.45, 1.0, len(lead_days))  # longer lead: darker and thicker
    widths = np.linspace(0.9, 2.2, len(lead_days))
    fig = _figure(11.0, 3.6 * len(variables))
    axes = fig.subplots(len(variables), 2, squeeze=False)
    for r, (spec, name) in enumerate(zip(variables, names)):
        da = spectra[name]
        power_ax, ratio_ax = axes[r]
        for i, (j, days) in enumerate(zip(positions, lead_days)):
            alpha, width = shades[i], widths[i]
            truth = da.sel({SPECTRA_MODEL_DIM: TRUTH}).isel(lead_time=j).values[keep]
            for model in models:
                colour, _, linestyle = styles[model]
                values = da.sel({SPECTRA_MODEL_DIM: model}).isel(lead_time=j).values[keep]
                power_ax.plot(k[keep], values, color=colour, linestyle=linestyle, alpha=alpha, linewidth=width, label=f"{model} {lead_label(days)}")
                if model != TRUTH:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratio = values / truth
                    ratio_ax.plot(k[keep], ratio, color=colour, linestyle=linestyle, alpha=alpha, linewidth=width, label=f"{model} {lead_label(days)}")
        power_ax.set_xscale("log")
        power_ax.set_yscale("log")
        power_ax.set_title(f"{spec}: zonal power spectrum")
        power_ax.set_xlabel("zonal wavenumber")
        power_ax.set_ylabel(f"power [{da.attrs.get('units', '')}]")
        power_ax.grid(alpha=0.3, which="both")
        power_ax.legend(fontsize=6, ncol=2)
        ratio_ax.axhline(1.0, color="grey", linewidth=1)
        ratio_ax.axhline(SPECTRAL_RATIO_LIMIT, color="red", linestyle="--", linewidth=1, label=f"{SPECTRAL_RATIO_LIMIT:g}x truth")
        ratio_ax.set_xscale("log")
        ratio_ax.set_yscale("log")
        ratio_ax.set_title(f"{spec}: forecast / truth power")
        ratio_ax.set_xlabel("zonal wavenumber")
        ratio_ax.set_ylabel("ratio")
        ratio_ax.grid(alpha=0.3, which="both")
        ratio_ax.legend(fontsize=6, ncol=2)
    fig.suptitle(
        f"Zonal spectra ({spectra.attrs.get('n_init_times', '?')} init times, |lat| <= {spectra.attrs.get('max_abs_latitude', float('nan')):g} deg)"
    )
    return fig


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
