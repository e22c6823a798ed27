"""Headline scores: a few (variable, level, lead) numbers picked from a results Dataset.

Key format (used by the model-registry promotion gate):
``<metric>.<variable>.<level>.<lead>`` for an atmospheric variable, e.g.
``rmse.geopotential.500.5d``, and ``<metric>.<variable>.<lead>`` for a surface
variable, e.g. ``rmse.surface_pressure.5d``. The lead is in days: integer days
as ``5d``, others as the shortest exact decimal, e.g. ``0.25d``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

DEFAULT_HEADLINE_VARIABLES = ("geopotential/500", "temperature/850", "u_component_of_wind/250")
DEFAULT_LEAD_DAYS = (1.0, 3.0, 5.0, 10.0)
_LEAD_TOLERANCE = np.timedelta64(1, "s")

# Metrics for which a larger value is better (all others: smaller is better).
HIGHER_IS_BETTER = ("acc",)
#: Forecasts whose ACC is 0 by convention, never a computed correlation (the
#: climatology's anomaly is identically zero): reports neither compare nor draw it.
ACC_BY_CONVENTION = ("climatology",)


def parse_headline(spec: str) -> tuple[str, int | None]:
    """``"geopotential/500"`` -> ``("geopotential", 500)``; ``"surface_pressure"`` -> ``(..., None)``."""
    name, sep, level = spec.partition("/")
    if not name or (sep and not level.strip().lstrip("-").isdigit()):
        raise ValueError(f"headline variable {spec!r} is not 'name' or 'name/level' with an integer level in hPa")
    return name, (int(level) if sep else None)


def lead_label(days: float) -> str:
    """``5.0`` -> ``"5d"``, ``0.25`` -> ``"0.25d"``."""
    days = float(days)
    if days.is_integer():
        return f"{int(days)}d"
    return f"{np.format_float_positional(days, trim='-')}d"


def headline_key(metric: str, spec: str, lead_days: float) -> str:
    """Registry key, e.g. ``rmse.geopotential.500.5d`` or ``rmse.surface_pressure.5d``."""
    name, level = parse_headline(spec)
    parts = [metric, name] + ([str(level)] if level is not None else []) + [lead_label(lead_days)]
    return ".".join(parts)


def headline_metric_name(key: str) -> str:
    """MLflow name of a headline score (evaluate run, registered model): ``rmse.geopotential.500.1d`` ->
    ``test/rmse/geopotential/500/1d``."""
    return "test/" + key.replace(".", "/")


def headline_series(results: xr.Dataset, spec: str, metric: str) -> xr.DataArray:
    """``(lead_time,)`` values of one metric for one headline variable (``name`` or ``name/level``)."""
    name, level = parse_headline(spec)
    if name not in results.data_vars:
        raise KeyError(f"headline variable {name!r} is not in the results (variables {list(results.data_vars)})")
    da = results[name]
    metrics = [str(m) for m in da["metric"].values]
    if metric not in metrics:
        raise KeyError(f"metric {metric!r} is not in the results (metrics {metrics})")
    da = da.sel(metric=metric, drop=True)
    if level is None and "level" in da.dims:
        raise ValueError(f"{name!r} has levels {da['level'].values.tolist()}; name one as '{name}/<level>'")
    if level is not None:
        if "level" not in da.dims:
            raise ValueError(f"{name!r} has no levels; write it as {name!r} without '/{level}'")
        if level not in da["level"].values:
            raise KeyError(f"level {level} of {name!r} is not in the results (levels {da['level'].values.tolist()})")
        da = da.sel(level=level, drop=True)
    return da


def acc_defined(name: str) -> bool:
    """Whether the ACC of the forecast named ``name`` is a computed correlation (not :data:`ACC_BY_CONVENTION`)."""
    return name not in ACC_BY_CONVENTION


def optional_series(results: xr.Dataset, spec: str, metric: str) -> xr.DataArray | None:
    """:func:`headline_series`, or None where ``results`` lack the variable, level or metric.

    For baselines scored on fewer variables than the model; a malformed
    ``spec`` (a level on a surface variable, none on a level variable) still raises.
    """
    try:
        return headline_series(results, spec, metric)
    except KeyError:
        return None


def find_lead(leads: np.ndarray, lead_days: float) -> int:
    """Index of ``lead_days`` days in an array of timedelta64 leads (to within 1 s)."""
    leads = np.asarray(leads, dtype="timedelta64[ns]")
    wanted = np.timedelta64(int(round(float(lead_days) * 86400e9)), "ns")
    hits = np.flatnonzero(np.abs(leads - wanted) <= _LEAD_TOLERANCE)
    if hits.size == 0:
        have = [lead_label(pd.Timedelta(x) / pd.Timedelta(days=1)) for x in leads]
        raise KeyError(f"lead {lead_label(lead_days)} is not among the lead times {have}")
    return int(hits[0])


def lead_position(results: xr.Dataset, lead_days: float) -> int:
    """Index in ``results.lead_time`` of ``lead_days`` days; KeyError listing the leads if absent."""
    return find_lead(results["lead_time"].values, lead_days)


def lead_days_of(leads: np.ndarray) -> np.ndarray:
    """timedelta64 leads -> float days."""
    return np.asarray(leads, dtype="timedelta64[ns]").astype(np.int64) / 86400e9


def headline_value(results: xr.Dataset, spec: str, metric: str, lead_days: float) -> float:
    """One headline number, e.g. the RMSE of ``geopotential/500`` at 5 days."""
    return float(headline_series(results, spec, metric).isel(lead_time=lead_position(results, lead_days)))


def optional_value(results: xr.Dataset, spec: str, metric: str, lead_days: float) -> float:
    """:func:`headline_value`, or NaN where ``results`` lack the variable, level, metric or lead (a partial baseline)."""
    series = optional_series(results, spec, metric)
    if series is None:
        return np.nan
    try:
        return float(series.isel(lead_time=find_lead(series["lead_time"].values, lead_days)))
    except KeyError:
        return np.nan


def headline_scores(
    results: xr.Dataset,
    headline_variables: Sequence[str] = DEFAULT_HEADLINE_VARIABLES,
    lead_days: Sequence[float] = DEFAULT_LEAD_DAYS,
    *,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """``{key: value}`` for every metric x headline variable x lead (keys as in the module docstring).

    Args:
      results: from :func:`zonda.evaluation.results.evaluate` (one model, no ``model`` dim).
      headline_variables: ``name/level`` or surface ``name``.
      lead_days: leads in days; each must be one of the results' lead times.
      metrics: default all metrics in the results (``rmse``, ``mse``, ``bias``, ``acc``).
    """
    if "model" in results.dims:
        raise ValueError("results have a 'model' dim; pick one model first (unstack_models)")
    names = list(metrics) if metrics is not None else [str(m) for m in results["metric"].values]
    return {
        headline_key(metric, spec, days): headline_value(results, spec, metric, days)
        for metric in names
        for spec in headline_variables
        for days in lead_days
    }
