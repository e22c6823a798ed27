"""Markdown summary and plain-text verdict of an evaluation.

The verdict compares the model with EVERY baseline in the results
(persistence, climatology and any external one), per headline variable,
by RMSE at every evaluated lead > 0, and by ACC where the baseline's ACC is
a computed correlation (not the climatology's 0 by convention). The model
loses at a lead where its RMSE is >= the baseline's (ACC <=), or where its own
score is NaN; leads the baseline was not scored at are not compared.

:func:`markdown_summary` (the KFP UI's markdown visualisation and the run's
``summary.md``): init times, the verdict, RMSE and ACC tables at the headline
leads with the best value in bold, and the spectral ratio table when spectra
are given. :func:`console_verdict` is the same verdict as one plain paragraph.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from zonda.evaluation.headline import (
    HIGHER_IS_BETTER,
    acc_defined,
    find_lead,
    headline_series,
    lead_days_of,
    lead_label,
    optional_series,
    optional_value,
    parse_headline,
)
from zonda.evaluation.spectra import SPECTRAL_RATIO_LIMIT, max_spectral_ratio, small_scale_ratio, spectrum_name
from zonda.files import write_text_atomic

#: The summary's top-level heading (``# Evaluation summary``); reports that embed it replace it.
SUMMARY_TITLE = "Evaluation summary"
VERDICT_METRICS = ("rmse", "acc")
_METRIC_LABELS = {"rmse": "RMSE", "acc": "ACC"}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The model against one baseline on one headline variable and metric.

    ``leads``: lead days > 0 compared (the baseline has a finite score there);
    ``losing``: those of them where the model is not strictly better.
    """

    spec: str
    baseline: str
    metric: str
    leads: tuple[float, ...]
    losing: tuple[float, ...]


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.4g}"


def _compare_series(model: xr.DataArray, reference: xr.DataArray, metric: str) -> tuple[list[float], list[float]]:
    """``(compared lead days, losing lead days)``; model NaN loses, reference NaN is not compared."""
    ref = reference.reindex(lead_time=model["lead_time"])  # (lead,), NaN where the reference has no such lead
    days = lead_days_of(model["lead_time"].values)
    keep = (days > 0) & np.isfinite(ref.values)
    mv, rv = model.values[keep], ref.values[keep]
    with np.errstate(invalid="ignore"):
        better = mv > rv if metric in HIGHER_IS_BETTER else mv < rv
    return [float(d) for d in days[keep]], [float(d) for d in days[keep][~better]]


def leads_not_beating(
    model: xr.Dataset, reference: xr.Dataset, spec: str, *, metric: str = "rmse"
) -> tuple[list[float], int]:
    """Leads (days > 0) where the model's ``metric`` is not strictly better than the reference's.

    Returns:
      ``(losing lead days, number of leads compared)``. The model's NaN counts
      as losing; a lead where the reference has no finite score is not compared.
    """
    compared, losing = _compare_series(headline_series(model, spec, metric), headline_series(reference, spec, metric), metric)
    return losing, len(compared)


def compare(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    *,
    model: str = "model",
    baselines: Sequence[str] | None = None,
) -> list[Comparison]:
    """The model against each baseline, per headline variable, by RMSE and (where defined) ACC.

    Args:
      results: ``{name: results Dataset}`` with ``model`` among them.
      baselines: default every other key of ``results``, in order.

    Returns:
      Comparisons in (variable, baseline, metric) order. ACC is skipped for
      :data:`~zonda.evaluation.headline.ACC_BY_CONVENTION` baselines and for
      results without an ACC; a baseline without scores for a variable gets a
      comparison with no leads.
    """
    if model not in results:
        raise KeyError(f"results for {model!r} are missing (have {list(results)})")
    names = [k for k in results if k != model] if baselines is None else list(baselines)
    missing = [k for k in names if k not in results]
    if missing:
        raise KeyError(f"results for {missing} are missing (have {list(results)})")
    if not names:
        raise ValueError(f"no baselines to compare {model!r} with (results {list(results)})")
    out = []
    for spec in headline_variables:
        for base in names:
            for metric in VERDICT_METRICS:
                if metric == "acc" and not acc_defined(base):
                    continue
                # the model must have an RMSE for every headline variable (KeyError otherwise); an ACC is optional
                mine = headline_series(results[model], spec, metric) if metric == "rmse" else optional_series(results[model], spec, metric)
                theirs = optional_series(results[base], spec, metric)
                if mine is None or (theirs is None and metric == "acc"):
                    continue
                compared, losing = ([], []) if theirs is None else _compare_series(mine, theirs, metric)
                out.append(Comparison(spec, base, metric, tuple(compared), tuple(losing)))
    return out


def _runs(leads: Sequence[float], losing: Sequence[float]) -> list[tuple[float, float]]:
    """Maximal runs of consecutive compared leads that all lose, as ``(first, last)`` days."""
    lost = set(losing)
    runs: list[tuple[float, float]] = []
    start = prev = None
    for d in leads:
        if d in lost:
            start = d if start is None else start
            prev = d
        elif start is not None:
            runs.append((start, prev))
            start = None
    if start is not None:
        runs.append((start, prev))
    return runs


def _span(first: float, last: float) -> str:
    return lead_label(first) if first == last else f"{lead_label(first)}-{lead_label(last)}"


def _clause(c: Comparison, strong: Callable[[str], str]) -> str:
    """``beats persistence at all 40 leads`` / ``beats climatology up to 2.75d, loses from 3d to 10d`` / ..."""
    n, k, base = len(c.leads), len(c.losing), c.baseline
    if n == 0:
        return f"no scores of {base} to compare with"
    if k == 0:
        return f"beats {base} at all {n} leads"
    if k == n:
        return f"{strong('loses')} to {base} at all {n} leads"
    runs = _runs(c.leads, c.losing)
    if len(runs) == 1 and runs[0][1] == c.leads[-1]:
        good = c.leads[c.leads.index(runs[0][0]) - 1]
        lost = f"at {lead_label(runs[0][0])}" if k == 1 else f"from {lead_label(runs[0][0])} to {lead_label(c.leads[-1])}"
        return f"beats {base} up to {lead_label(good)}, {strong('loses')} {lost}"
    if len(runs) == 1 and runs[0][0] == c.leads[0]:
        good = c.leads[c.leads.index(runs[0][1]) + 1]
        won = f"at {lead_label(good)}" if k == n - 1 else f"from {lead_label(good)} to {lead_label(c.leads[-1])}"
        return f"{strong('loses')} to {base} up to {lead_label(runs[0][1])}, beats it {won}"
    shown = ", ".join(_span(a, b) for a, b in runs[:6]) + (", ..." if len(runs) > 6 else "")
    return f"{strong('loses')} to {base} at {k} of {n} leads ({shown})"


def _baseline_text(rmse: Comparison, acc: Comparison | None, strong: Callable[[str], str]) -> str:
    if not rmse.leads and (acc is None or not acc.leads):
        return _clause(rmse, strong)
    if acc is None:
        return f"{_clause(rmse, strong)} (RMSE)"
    if (acc.leads, acc.losing) == (rmse.leads, rmse.losing):
        return f"{_clause(rmse, strong)} (RMSE and ACC)"
    return f"{_clause(rmse, strong)} (RMSE), {_clause(acc, strong)} (ACC)"


def _verdicts(comparisons: Sequence[Comparison], strong: Callable[[str], str]) -> dict[str, str]:
    """``{spec: "beats persistence ... ; beats climatology ..."}``."""
    texts: dict[str, list[str]] = {}
    by_key = {(c.spec, c.baseline, c.metric): c for c in comparisons}
    for c in comparisons:
        if c.metric == "rmse":
            acc = by_key.get((c.spec, c.baseline, "acc"))
            texts.setdefault(c.spec, []).append(_baseline_text(c, acc, strong))
    return {spec: "; ".join(parts) for spec, parts in texts.items()}


def _overall(comparisons: Sequence[Comparison], model: str) -> str:
    """One sentence: against which baselines, on how many variables, the model loses somewhere."""
    specs = list(dict.fromkeys(c.spec for c in comparisons))
    losers: dict[str, list[str]] = {}
    for c in comparisons:
        if c.losing and c.baseline not in losers.get(c.spec, []):
            losers.setdefault(c.spec, []).append(c.baseline)
    if not losers:
        return f"The {model} beats every baseline at every compared lead on all {len(specs)} headline variables."
    order = dict.fromkeys(c.baseline for c in comparisons)
    against = [b for b in order if any(b in bs for bs in losers.values())]
    return (
        f"The {model} loses to {_and(against)} at some leads on {len(losers)} of {len(specs)} headline variables "
        f"({', '.join(losers)})."
    )


def _and(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def verdict_line(model: xr.Dataset, persistence: xr.Dataset, spec: str) -> str:
    """The verdict line of one variable against persistence only (kept for callers with two datasets)."""
    comparisons = compare({"model": model, "persistence": persistence}, [spec])
    return f"- **{spec}**: {_verdicts(comparisons, lambda s: f'**{s}**')[spec]}."


def _table(results: Mapping[str, xr.Dataset], specs: Sequence[str], lead_days: Sequence[float], metric: str, model: str) -> list[str]:
    names = list(results)
    lines = [
        "| variable | lead | " + " | ".join(names) + " | best |",
        "|---|---|" + "---:|" * len(names) + "---|",
    ]
    for spec in specs:
        name, _ = parse_headline(spec)
        units = "" if metric == "acc" else str(results[model][name].attrs.get("units", ""))
        label = f"{spec} [{units}]" if units else spec
        for days in lead_days:
            values = np.array([optional_value(results[k], spec, metric, days) for k in names])
            score = values if metric in HIGHER_IS_BETTER else -values
            top = np.nanmax(score) if np.isfinite(score).any() else np.nan
            best = np.isfinite(score) & (score >= top - 1e-9 * abs(top))
            cells = [f"**{_fmt(v)}**" if b else _fmt(v) for v, b in zip(values, best)]
            winners = ", ".join(n for n, b in zip(names, best) if b) or "n/a"
            lines.append(f"| {label} | {lead_label(days)} | " + " | ".join(cells) + f" | {winners} |")
    return lines


def _spectral_table(spectra: xr.Dataset, specs: Sequence[str], lead_days: Sequence[float], model: str) -> list[str]:
    """Rows ``| spec | max / small-scale | ... |`` per lead; max above the limit (or NaN, inf) in bold."""
    peak = max_spectral_ratio(spectra, model=model)  # per variable (lead_time,)
    small = small_scale_ratio(spectra, model=model)
    leads = peak["lead_time"].values
    lines = ["| variable | " + " | ".join(lead_label(d) for d in lead_days) + " |", "|---|" + "---:|" * len(lead_days)]
    for spec in specs:
        name = spectrum_name(spec)
        cells = []
        for d in lead_days:
            j = find_lead(leads, d)
            top, low = float(peak[name].isel(lead_time=j)), float(small[name].isel(lead_time=j))
            cells.append((f"{top:.3g}" if top <= SPECTRAL_RATIO_LIMIT else f"**{top:.3g}**") + f" / {low:.3g}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return lines


def markdown_summary(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    model: str = "model",
    reference: str = "persistence",
    spectra: xr.Dataset | None = None,
    spectra_lead_days: Sequence[float] | None = None,
) -> str:
    """The Markdown summary as a string.

    Args:
      results: ``{"model": ..., "persistence": ..., "climatology": ..., <any other baseline>: ...}``;
        every entry is a table column and every entry but ``model`` is in the verdict.
      headline_variables: ``name/level`` or surface ``name``.
      lead_days: leads of the tables (days).
      model: key of the model.
      reference: a baseline that must be present (the verdict covers it and all others).
      spectra: from :func:`zonda.evaluation.spectra.forecast_spectra` (with ``model``
        and ``truth``); adds the max spectral ratio table at ``spectra_lead_days``
        (default: the spectra's leads).
    """
    for key in (model, reference):
        if key not in results:
            raise KeyError(f"results for {key!r} are missing (have {list(results)})")
    res = results[model]
    all_days = lead_days_of(res["lead_time"].values)
    comparisons = compare(results, headline_variables, model=model)
    verdicts = _verdicts(comparisons, lambda s: f"**{s}**")
    with_acc = {k: v for k, v in results.items() if acc_defined(k)}
    no_acc = [k for k in results if not acc_defined(k)]
    lines = [
        f"# {SUMMARY_TITLE}",
        "",
        f"- Initial conditions: **{res.attrs.get('n_init_times', '?')}** init times, "
        f"{res.attrs.get('first_init_time', '?')} to {res.attrs.get('last_init_time', '?')}",
        f"- Leads: {len(all_days)} from {lead_label(all_days.min())} to {lead_label(all_days.max())}",
        f"- Climatology (for ACC and the climatology baseline): {res.attrs.get('climatology_mode', 'unknown')}",
        "- RMSE = sqrt(time mean of the area-weighted MSE); ACC against the climatology, per init time then averaged.",
        "",
        "## Verdict",
        "",
        f"{_overall(comparisons, model)} The {model} loses at a lead where its RMSE is >= the baseline's "
        f"(ACC <=); ACC is compared only where the baseline's is computed"
        + (f" (not {', '.join(no_acc)}: 0 by convention)." if no_acc else "."),
        "",
        *[f"- **{spec}**: {verdicts[spec]}." for spec in headline_variables],
        "",
        "## RMSE (lower is better, best in bold)",
        "",
        *_table(results, headline_variables, lead_days, "rmse", model),
        "",
        "## ACC (higher is better, best in bold)",
        "",
        *([f"Not shown: {', '.join(no_acc)} (ACC 0 by convention, not computed).", ""] if no_acc else []),
        *_table(with_acc, headline_variables, lead_days, "acc", model),
        "",
    ]
    if spectra is not None:
        days = list(spectra_lead_days) if spectra_lead_days is not None else list(lead_days_of(spectra["lead_time"].values))
        lines += [
            f"## Zonal spectra: {model} / truth power",
            "",
            f"Cell: the max ratio over wavenumbers >= 1 (above {SPECTRAL_RATIO_LIMIT:g}, bold: grid-scale noise) / "
            "the geometric-mean ratio over the upper half of the wavenumbers (well below 1: blurring). "
            f"Spectra: {spectra.attrs.get('definition', '')}.",
            "",
            *_spectral_table(spectra, headline_variables, days, model),
            "",
        ]
    return "\n".join(lines)


def console_verdict(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    *,
    model: str = "model",
) -> str:
    """The verdict as one plain-text paragraph (no Markdown), for the pipeline's log.

    E.g. ``Verdict (4 init times; model vs persistence, climatology): The model loses to
    climatology at some leads on 1 of 2 headline variables (geopotential/500).
    geopotential/500: beats persistence at all 40 leads (RMSE and ACC); beats climatology
    up to 2.75d, loses from 3d to 10d (RMSE). ...``
    """
    comparisons = compare(results, headline_variables, model=model)
    verdicts = _verdicts(comparisons, lambda s: s)
    baselines = [k for k in results if k != model]
    n_init = results[model].attrs.get("n_init_times", "?")
    head = f"Verdict ({n_init} init times; {model} vs {_and(baselines)}): {_overall(comparisons, model)}"
    return " ".join([head, *[f"{spec}: {verdicts[spec]}." for spec in headline_variables]])


def write_summary(text: str, path: str | os.PathLike) -> Path:
    """Writes the Markdown ``text`` to ``path`` atomically."""
    return write_text_atomic(path, text)
