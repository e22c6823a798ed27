"""Test scores as MLflow metric series over lead time, read from the evaluation's ``results.nc``.

One naming scheme for every metric zonda logs: ``/``-separated, general to
specific, as Lightning's ``val/rmse/<variable>/<level>/<lead>``. Here
``<forecast>/<metric>/<variable>[/<level>]`` with the step = lead time in
hours, so MLflow draws one error-growth curve per series: ``<forecast>`` is
``test`` for the model and the baseline's name (``persistence``,
``climatology``) otherwise. A ``region`` dimension, when the results have one,
adds ``/<region>`` after ``<forecast>`` for every region but ``global``.
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import numpy as np
import xarray as xr

from zonda.evaluation.regions import GLOBAL, REGION_DIM
from zonda.evaluation.results import read_results

MODEL_PREFIX = "test"


def _name(*parts: object) -> str:
    return "/".join(str(p) for p in parts if p is not None)


def lead_series(results: xr.Dataset) -> Iterator[tuple[str, int, float]]:
    """``(metric name, lead hours, value)`` for every finite score in a stacked results Dataset.

    ``results`` has dims ``(model, metric, lead_time[, level][, region])`` per variable
    (:func:`zonda.evaluation.results.stack_models`).
    """
    hours = (results["lead_time"].values // np.timedelta64(1, "h")).astype(int)  # (lead,)
    regions = [str(r) for r in results[REGION_DIM].values] if REGION_DIM in results.dims else [None]
    for forecast in results["model"].values:
        prefix = MODEL_PREFIX if str(forecast) == "model" else str(forecast)
        for region in regions:
            where = {"model": forecast} | ({REGION_DIM: region} if region is not None else {})
            scope = None if region in (None, GLOBAL) else region  # global scores keep the unscoped names
            for variable, da in results.data_vars.items():
                da = da.sel(where)
                levels = [int(x) for x in da["level"].values] if "level" in da.dims else [None]
                for metric in da["metric"].values:
                    for level in levels:
                        series = da.sel(metric=metric, **({"level": level} if level is not None else {}))
                        for hour, value in zip(hours, series.transpose("lead_time").values):
                            if np.isfinite(value):
                                yield _name(prefix, scope, metric, variable, level), int(hour), float(value)


def log_lead_metrics(results_path: str | os.PathLike[str], run_id: str) -> int:
    """Logs :func:`lead_series` of ``results_path`` into MLflow run ``run_id``; returns how many points."""
    import mlflow  # MLflow boundary: evaluation's science imports without it
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(name, value, now, step) for name, step, value in lead_series(read_results(results_path))]
    client = mlflow.MlflowClient()
    for start in range(0, len(points), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=points[start:start + 1000])
    return len(points)
