"""The model's error growth as a small table per lead: ``error_growth.csv`` (DVC's plots file).

One row per lead (``lead_hours``), one column per headline variable holding
the model's global RMSE (``rmse_geopotential_500``: :func:`column` of the
headline spec; underscores, since Vega-Lite, which draws DVC's plots, reads a
dot in a field name as a nested field). ``dvc.yaml`` declares this file as the
pipeline's error-growth plot; ``dvc plots show`` draws it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from zonda.evaluation.headline import headline_series, parse_headline
from zonda.files import write_text_atomic

ERROR_GROWTH_FILE = "error_growth.csv"
LEAD_HOURS = "lead_hours"
METRIC = "rmse"


def column(spec: str) -> str:
    """CSV column of one headline variable: ``geopotential/500`` -> ``rmse_geopotential_500``."""
    name, level = parse_headline(spec)
    return "_".join([METRIC, name] + ([str(level)] if level is not None else []))


def error_growth_table(results: xr.Dataset, headline_variables: Sequence[str]) -> pd.DataFrame:
    """``lead_hours`` and the global RMSE of each headline variable, one row per lead.

    Args:
      results: one model's global results (no ``model`` or ``region`` dim).
      headline_variables: ``name/level`` or surface ``name`` specs.
    """
    leads = np.asarray(results["lead_time"].values, dtype="timedelta64[ns]")
    table = {LEAD_HOURS: (leads // np.timedelta64(1, "h")).astype(np.int64)}
    for spec in headline_variables:
        table[column(spec)] = headline_series(results, spec, METRIC).values.astype(np.float64)
    return pd.DataFrame(table)


def write_error_growth(results: xr.Dataset, headline_variables: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """Writes :func:`error_growth_table` as CSV atomically; returns the path."""
    return write_text_atomic(path, error_growth_table(results, headline_variables).to_csv(index=False))


__all__ = ["ERROR_GROWTH_FILE", "LEAD_HOURS", "column", "error_growth_table", "write_error_growth"]
