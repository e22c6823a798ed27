"""Headline scores per initial time: what the promotion gate's paired test compares.

``headline.json`` holds scores averaged over the init times; a paired
significance test needs them per init. :func:`per_init_scores` computes, for
each headline key (``rmse.geopotential.500.5d``, ``acc.temperature.850.1d``,
see :mod:`zonda.evaluation.headline`) and each init time ``i``:

* ``rmse``: ``sqrt(<(f_i - o_i)^2>)``, the area-weighted RMSE of that one
  forecast (the headline RMSE is ``sqrt(mean_i rmse_i^2)``);
* ``acc``: ``<f_i' o_i'> / sqrt(<f_i'^2> <o_i'^2>)`` (the headline ACC is its mean).

with the same kernels (:mod:`zonda.evaluation.metrics`), the same truth
alignment and the same climatology as the evaluation. The evaluation writes
them to ``per_init.nc`` beside ``results.nc``; the promotion gate computes the
champion's with the same function on the challenger's init times.

File layout: one data variable ``score`` with dims ``(key, time)`` (``key``:
headline key, text; ``time``: init time), float64, attrs ``snapshot_id`` (the
snapshot the truth came from) and the metric definitions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

import zonda.evaluation.metrics as metrics
from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, forecast_axes, truth_for_lead
from zonda.evaluation.headline import find_lead, headline_key, parse_headline
from zonda.evaluation.results import _climatology_for_lead
from zonda.files import write_netcdf_atomic
from zonda.variables import VARIABLES

PER_INIT_FILE = "per_init.nc"
PER_INIT_METRICS = ("rmse", "acc")
KEY_DIM = "key"
SCORE = "score"
DEFINITIONS = {
    "rmse_definition": "per init time: sqrt(area-weighted mean of (f - o)^2)",
    "acc_definition": "per init time: <f' o'> / sqrt(<f'^2> <o'^2>), anomalies against the evaluation climatology",
}


def parse_key(key: str) -> tuple[str, str, float]:
    """``rmse.geopotential.500.5d`` -> ``("rmse", "geopotential/500", 5.0)`` (inverse of ``headline_key``).

    Raises ValueError naming the key if it is not a headline key of a known
    variable with a per-init metric (:data:`PER_INIT_METRICS`).
    """
    metric, _, rest = key.partition(".")
    name, _, rest = rest.partition(".")
    if metric not in PER_INIT_METRICS:
        raise ValueError(f"score key {key!r}: per-init scores exist for metrics {list(PER_INIT_METRICS)}, not {metric!r}")
    if name not in VARIABLES:
        raise ValueError(f"score key {key!r}: {name!r} is not a known variable")
    if VARIABLES[name].has_levels:
        level, _, rest = rest.partition(".")
        spec = f"{name}/{level}"
    else:
        spec = name
    try:
        days = float(rest.removesuffix("d")) if rest.endswith("d") else float("nan")
        parse_headline(spec)
    except ValueError:
        days = float("nan")
    if not np.isfinite(days) or headline_key(metric, spec, days) != key:
        raise ValueError(f"score key {key!r} is not '<metric>.<variable>[.<level>].<lead days>d'")
    return metric, spec, days


def per_init_scores(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset | None,
    keys: Sequence[str],
) -> xr.DataArray:
    """``(key, time)`` float64 per-init scores of a WB2-layout forecast (see the module docstring).

    Args:
      forecast: ``(time, prediction_timedelta, [level], latitude, longitude)``, ``time`` = init times.
      truth: ``(time, [level], latitude, longitude)`` covering every valid time needed.
      climatology: as for the evaluation's ACC; may be None when no key is an ``acc`` key.
      keys: headline keys (:func:`parse_key`).
    """
    init, leads = forecast_axes(forecast)
    rows = []
    for key in keys:
        metric, spec, days = parse_key(key)
        name, level = parse_headline(spec)
        if name not in forecast.data_vars:
            raise KeyError(f"score key {key!r}: the forecast has no variable {name!r} (it has {sorted(forecast.data_vars)})")
        j = find_lead(leads, days)
        f = forecast[name].isel({LEAD_DIM: j}, drop=True)
        o = truth_for_lead(truth[name], init, leads[j], name)
        if level is not None:
            for what, da in (("forecast", f), ("truth", o)):
                if "level" not in da.dims or level not in da["level"].values:
                    raise KeyError(f"score key {key!r}: the {what} has no level {level} of {name!r}")
            f, o = f.sel(level=level, drop=True), o.sel(level=level, drop=True)
        f = f.transpose(INIT_DIM, "latitude", "longitude").load()  # (time, lat, lon)
        o = o.transpose(INIT_DIM, "latitude", "longitude").load()
        if metric == "rmse":
            rows.append(np.sqrt(metrics.mse(f, o, time_dim=None)).values)
        else:
            if climatology is None:
                raise ValueError(f"score key {key!r} is an anomaly correlation: it needs the climatology")
            c = _climatology_for_lead(climatology, name, init, leads[j])
            c = c.sel(level=level, drop=True) if level is not None else c
            rows.append(metrics.acc(f, o, c, time_dim=None).values)
    values = np.asarray(rows, dtype=np.float64).reshape(len(keys), len(init))  # (key, time)
    return xr.DataArray(
        values,
        dims=[KEY_DIM, INIT_DIM],
        coords={KEY_DIM: np.array(list(keys), dtype=str), INIT_DIM: init},
        name=SCORE,
        attrs=dict(DEFINITIONS),
    )


def write_per_init(scores: xr.DataArray, path: str | os.PathLike[str], *, snapshot_id: str | None) -> Path:
    """Writes per-init scores (from :func:`per_init_scores`) to netCDF atomically, with the snapshot ID."""
    ds = scores.to_dataset(name=SCORE)
    ds.attrs.update(DEFINITIONS, snapshot_id=str(snapshot_id))
    return write_netcdf_atomic(ds, path)


def read_per_init(path: str | os.PathLike[str]) -> xr.DataArray:
    """The ``(key, time)`` scores of a ``per_init.nc``; its file attrs (``snapshot_id``) on the DataArray.

    Raises FileNotFoundError or ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-init scores (an evaluation from before they were written? re-run it)")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a per-init scores file ({exc})") from None
    if SCORE not in ds.data_vars or ds[SCORE].dims != (KEY_DIM, INIT_DIM):
        raise ValueError(f"{path}: expected a {SCORE!r} variable with dims ({KEY_DIM}, {INIT_DIM}); has {dict(ds.sizes)}")
    scores = ds[SCORE].assign_coords({KEY_DIM: ds[KEY_DIM].values.astype(str)})
    return scores.assign_attrs({**ds[SCORE].attrs, **ds.attrs})
