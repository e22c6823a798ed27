"""Evaluation science: WeatherBench2 metrics, climatology, baselines, results, plots and summary.

Typical use (the KFP evaluate step)::

    clim = compute_climatology(train, mode=params.climatology)
    regional = evaluate_with_baselines(forecast, truth, clim, regions=WB2_REGIONS, progress=True)
    write_results(stack_models(regional), "results.nc")
    results = {name: global_region(res) for name, res in regional.items()}
    scores = headline_scores(results["model"], params.headline_variables, params.headline_lead_days)
    plot_scorecard(results, "scorecard.png", params.headline_variables, params.headline_lead_days)
    plot_error_growth(results, "error_growth.png", params.headline_variables)
    spectra = forecast_spectra({"model": forecast}, truth, variables=params.headline_variables, lead_days=[1, 5, 10])
    write_spectra(spectra, "spectra.nc"); plot_spectra(spectra, "spectra.png", params.headline_variables, [1, 5, 10])
    plot_maps(forecast, truth, "maps/", params.headline_variables, params.map_lead_days)
    write_summary(markdown_summary(results, params.headline_variables, params.headline_lead_days, spectra=spectra), "summary.md")
    print(console_verdict(results, params.headline_variables))
"""

from zonda.evaluation.baselines import climatology_forecast, persistence_forecast
from zonda.evaluation.climatology import climatology_at, compute_climatology, resolve_mode
from zonda.evaluation.headline import headline_key, headline_scores, lead_label, parse_headline
from zonda.evaluation.metrics import acc, bias, latitude_weights, mse, rmse, scores, spatial_mean
from zonda.evaluation.plots import plot_error_growth, plot_maps, plot_scorecard, plot_spectra
from zonda.evaluation.regions import GLOBAL, REGION_DIM, WB2_REGIONS, Region
from zonda.evaluation.results import (
    METRICS,
    evaluate,
    evaluate_with_baselines,
    global_region,
    read_results,
    stack_models,
    unstack_models,
    write_results,
)
from zonda.evaluation.spectra import (
    forecast_spectra,
    max_spectral_ratio,
    read_spectra,
    small_scale_ratio,
    spectral_headline,
    spectral_ratio,
    write_spectra,
    zonal_spectrum,
)
from zonda.evaluation.summary import compare, console_verdict, markdown_summary, write_summary

__all__ = [
    "GLOBAL",
    "METRICS",
    "REGION_DIM",
    "Region",
    "WB2_REGIONS",
    "acc",
    "bias",
    "climatology_at",
    "climatology_forecast",
    "compare",
    "console_verdict",
    "compute_climatology",
    "evaluate",
    "evaluate_with_baselines",
    "forecast_spectra",
    "global_region",
    "headline_key",
    "headline_scores",
    "latitude_weights",
    "lead_label",
    "markdown_summary",
    "max_spectral_ratio",
    "mse",
    "parse_headline",
    "persistence_forecast",
    "plot_error_growth",
    "plot_maps",
    "plot_scorecard",
    "plot_spectra",
    "read_results",
    "read_spectra",
    "resolve_mode",
    "rmse",
    "scores",
    "small_scale_ratio",
    "spatial_mean",
    "spectral_headline",
    "spectral_ratio",
    "stack_models",
    "unstack_models",
    "write_results",
    "write_spectra",
    "write_summary",
    "zonal_spectrum",
]
