"""Evaluation science: WeatherBench2 metrics, climatology, baselines, results, plots and summary.

Typical use (the KFP evaluate step)::

    clim = compute_climatology(train, mode=params.climatology)
    results = evaluate_with_baselines(forecast, truth, clim, progress=True)
    write_results(stack_models(results), "results.nc")
    scores = headline_scores(results["model"], params.headline_variables, params.headline_lead_days)
    plot_scorecard(results, "scorecard.png", params.headline_variables, params.headline_lead_days)
    plot_error_growth(results, "error_growth.png", params.headline_variables)
    plot_maps(forecast, truth, "maps/", params.headline_variables, params.map_lead_days)
    write_summary(markdown_summary(results, params.headline_variables, params.headline_lead_days), "summary.md")
"""

from zonda.evaluation.baselines import climatology_forecast, persistence_forecast
from zonda.evaluation.climatology import climatology_at, compute_climatology, resolve_mode
from zonda.evaluation.headline import headline_key, headline_scores, lead_label, parse_headline
from zonda.evaluation.metrics import acc, bias, latitude_weights, mse, rmse, scores, spatial_mean
from zonda.evaluation.plots import plot_error_growth, plot_maps, plot_scorecard
from zonda.evaluation.results import (
    METRICS,
    evaluate,
    evaluate_with_baselines,
    read_results,
    stack_models,
    unstack_models,
    write_results,
)
from zonda.evaluation.summary import markdown_summary, write_summary

__all__ = [
    "METRICS",
    "acc",
    "bias",
    "climatology_at",
    "climatology_forecast",
    "compute_climatology",
    "evaluate",
    "evaluate_with_baselines",
    "headline_key",
    "headline_scores",
    "latitude_weights",
    "lead_label",
    "markdown_summary",
    "mse",
    "parse_headline",
    "persistence_forecast",
    "plot_error_growth",
    "plot_maps",
    "plot_scorecard",
    "read_results",
    "resolve_mode",
    "rmse",
    "scores",
    "spatial_mean",
    "stack_models",
    "unstack_models",
    "write_results",
    "write_summary",
]
