"""Markdown summary of an evaluation, for the KFP UI (markdown visualisation) and the run's artifacts.

Sections: the init times evaluated, a one-line verdict per headline variable
(does the model beat persistence, by RMSE, at every evaluated lead > 0?), and
RMSE and ACC tables of model, persistence and climatology at the headline
leads with the best value in bold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from zonda.evaluation.headline import HIGHER_IS_BETTER, headline_series, headline_value, lead_days_of, lead_label, parse_headline
from zonda.files import write_text_atomic

#: The summary's top-level heading (``# Evaluation summary``); reports that embed it replace it.
SUMMARY_TITLE = "Evaluation summary"


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.4g}"


def leads_not_beating(
    model: xr.Dataset, reference: xr.Dataset, spec: str, *, metric: str = "rmse"
) -> tuple[list[float], int]:
    """Leads (days > 0) where the model's ``metric`` is not strictly better than the reference's.

    Returns:
      ``(failing lead days, number of leads compared)``; NaN counts as failing.
    """
    m = headline_series(model, spec, metric)
    r = headline_series(reference, spec, metric).reindex(lead_time=m["lead_time"])
    days = lead_days_of(m["lead_time"].values)
    keep = days > 0
    mv, rv = m.values[keep], r.values[keep]
    better = mv > rv if metric in HIGHER_IS_BETTER else mv < rv
    return [float(d) for d in days[keep][~better]], int(keep.sum())


def verdict_line(model: xr.Dataset, persistence: xr.Dataset, spec: str) -> str:
    """``- geopotential/500: beats persistence at all 40 leads (0.25d..10d).`` or which leads it does not."""
    failing, n = leads_not_beating(model, persistence, spec)
    days = lead_days_of(model["lead_time"].values)
    days = days[days > 0]
    span = f"{lead_label(days.min())}..{lead_label(days.max())}" if n else "none"
    if not failing and n:
        return f"- **{spec}**: model beats persistence (RMSE) at all {n} leads ({span})."
    shown = ", ".join(lead_label(d) for d in failing[:8]) + (", ..." if len(failing) > 8 else "")
    return f"- **{spec}**: model does **not** beat persistence (RMSE) at {len(failing)} of {n} leads: {shown}."


def _table(results: Mapping[str, xr.Dataset], specs: Sequence[str], lead_days: Sequence[float], metric: str) -> list[str]:
    names = list(results)
    lines = [
        "| variable | lead | " + " | ".join(names) + " | best |",
        "|---|---|" + "---:|" * len(names) + "---|",
    ]
    first = next(iter(results.values()))
    for spec in specs:
        name, _ = parse_headline(spec)
        units = "" if metric == "acc" else str(first[name].attrs.get("units", ""))
        label = f"{spec} [{units}]" if units else spec
        for days in lead_days:
            values = np.array([headline_value(results[k], spec, metric, days) for k in names])
            score = values if metric in HIGHER_IS_BETTER else -values
            top = np.nanmax(score) if np.isfinite(score).any() else np.nan
            best = np.isfinite(score) & (score >= top - 1e-9 * abs(top))
            cells = [f"**{_fmt(v)}**" if b else _fmt(v) for v, b in zip(values, best)]
            winners = ", ".join(n for n, b in zip(names, best) if b) or "n/a"
            lines.append(f"| {label} | {lead_label(days)} | " + " | ".join(cells) + f" | {winners} |")
    return lines


def markdown_summary(
    results: Mapping[str, xr.Dataset],
    headline_variables: Sequence[str],
    lead_days: Sequence[float],
    *,
    model: str = "model",
    reference: str = "persistence",
) -> str:
    """The Markdown summary as a string.

    Args:
      results: ``{"model": ..., "persistence": ..., "climatology": ...}`` (any
        further entries become extra table columns).
      headline_variables: ``name/level`` or surface ``name``.
      lead_days: leads of the tables (days).
      model, reference: keys of the model and of the baseline in the verdict.
    """
    for key in (model, reference):
        if key not in results:
            raise KeyError(f"results for {key!r} are missing (have {list(results)})")
    res = results[model]
    all_days = lead_days_of(res["lead_time"].values)
    lines = [
        f"# {SUMMARY_TITLE}",
        "",
        f"- Initial conditions: **{res.attrs.get('n_init_times', '?')}** init times, "
        f"{res.attrs.get('first_init_time', '?')} to {res.attrs.get('last_init_time', '?')}",
        f"- Leads: {len(all_days)} from {lead_label(all_days.min())} to {lead_label(all_days.max())}",
        f"- Climatology (for ACC and the climatology baseline): {res.attrs.get('climatology_mode', 'unknown')}",
        "- RMSE = sqrt(time mean of the area-weighted MSE); ACC against the climatology, per init time then averaged "
        "(the climatology forecast has ACC 0 by convention).",
        "",
        "## Verdict",
        "",
        *[verdict_line(res, results[reference], spec) for spec in headline_variables],
        "",
        "## RMSE (lower is better, best in bold)",
        "",
        *_table(results, headline_variables, lead_days, "rmse"),
        "",
        "## ACC (higher is better, best in bold)",
        "",
        *_table(results, headline_variables, lead_days, "acc"),
        "",
    ]
    return "\n".join(lines)


def write_summary(text: str, path: str | os.PathLike) -> Path:
    """Writes the Markdown ``text`` to ``path`` atomically."""
    return write_text_atomic(path, text)
