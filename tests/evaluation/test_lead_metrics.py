"""Test scores as MLflow series over lead time (step = lead hours), one naming scheme."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from zonda.evaluation.headline import headline_metric_name
from zonda.evaluation.lead_metrics import lead_series


def _results(regions: list[str] | None = None) -> xr.Dataset:
    """Stacked results as the evaluation writes them: value = 1000*model + 100*metric + 10*lead + level index."""
    models, metrics_, leads, levels = ["model", "persistence"], ["rmse", "acc"], pd.to_timedelta([6, 12, 24], "h"), [500, 850]
    m, k, t, l = np.meshgrid(range(2), range(2), range(3), range(2), indexing="ij")
    upper = 1000.0 * m + 100 * k + 10 * t + l  # (model, metric, lead, level)
    surface = upper[..., 0]
    coords = {"model": models, "metric": metrics_, "lead_time": leads, "level": levels}
    ds = xr.Dataset(
        {"geopotential": (("model", "metric", "lead_time", "level"), upper),
         "surface_pressure": (("model", "metric", "lead_time"), surface)},
        coords=coords,
    )
    if regions:
        ds = xr.concat([ds + i * 0.5 for i in range(len(regions))], dim=pd.Index(regions, name="region"))
    return ds


def test_every_score_is_a_series_over_lead_hours_named_forecast_metric_variable_level() -> None:
    points = {(name, step): value for name, step, value in lead_series(_results())}
    assert points[("test/rmse/geopotential/500", 6)] == 0.0
    assert points[("test/acc/geopotential/850", 24)] == 100 + 20 + 1
    assert points[("persistence/rmse/surface_pressure", 12)] == 1000 + 10
    names = {name for name, _ in points}
    assert len(names) == 2 * 2 * 3  # forecasts x metrics x (two levels + one surface variable)
    assert all(step in (6, 12, 24) for _, step in points)


def test_regions_other_than_global_get_their_own_series() -> None:
    points = {(name, step): value for name, step, value in lead_series(_results(["global", "tropics"]))}
    assert points[("test/rmse/geopotential/500", 6)] == 0.0
    assert points[("test/tropics/rmse/geopotential/500", 6)] == 0.5


def test_non_finite_scores_are_left_out() -> None:
    ds = _results()
    ds["geopotential"][0, 0, 0, 0] = np.nan
    names = [(n, s) for n, s, _ in lead_series(ds)]
    assert ("test/rmse/geopotential/500", 6) not in names and ("test/rmse/geopotential/500", 12) in names


def test_headline_scores_follow_the_same_scheme() -> None:
    assert headline_metric_name("rmse.geopotential.500.1d") == "test/rmse/geopotential/500/1d"
