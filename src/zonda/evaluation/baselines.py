"""Reference forecasts on the same initial conditions as the model.

* persistence: the truth at the init time, held for every lead;
* climatology: the climatology at each valid time.

Both are returned in the WB2 forecast layout
``(time, prediction_timedelta, [level], latitude, longitude)`` so they go
through :func:`zonda.evaluation.results.evaluate` exactly like a model.
"""

from __future__ import annotations

from typing import Sequence

import xarray as xr

from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, as_datetimes, as_timedeltas, time_positions, valid_times
from zonda.evaluation.climatology import climatology_at


def _time_variables(ds: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    names = list(variables) if variables is not None else [n for n in ds.data_vars if INIT_DIM in ds[n].dims]
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise KeyError(f"variables {missing} are not in the dataset (it has {list(ds.data_vars)})")
    return names


def persistence_forecast(
    truth: xr.Dataset, init_times, lead_times, *, variables: Sequence[str] | None = None
) -> xr.Dataset:
    """Persistence: ``forecast(init, lead) = truth(init)`` for every lead.

    Args:
      truth: ``(time, [level], latitude, longitude)`` with the init times in ``time``.
      init_times: ``(n_init,)`` datetime64; lead_times: ``(n_lead,)`` timedelta64.
      variables: default all variables of ``truth`` with a ``time`` dim.

    Returns:
      ``(time, prediction_timedelta, ...)`` forecast; the lead dim is a
      broadcast (read-only) view, so no copy per lead is made.
    """
    init = as_datetimes(init_times)
    lead = as_timedeltas(lead_times)
    names = _time_variables(truth, variables)
    at_init = truth[names].isel({INIT_DIM: time_positions(truth[INIT_DIM].values, init, "persistence init times")})
    at_init = at_init.assign_coords({INIT_DIM: init})
    out = at_init.expand_dims({LEAD_DIM: lead}, axis=1)
    return out.transpose(INIT_DIM, LEAD_DIM, ...)


def climatology_forecast(
    climatology: xr.Dataset, init_times, lead_times, *, variables: Sequence[str] | None = None
) -> xr.Dataset:
    """Climatology forecast: ``forecast(init, lead) = climatology(init + lead)``.

    Args:
      climatology: from :func:`zonda.evaluation.climatology.compute_climatology`.
      init_times: ``(n_init,)`` datetime64; lead_times: ``(n_lead,)`` timedelta64.
      variables: default all climatology variables.

    Returns:
      ``(time, prediction_timedelta, ...)`` forecast in the climatology's dtype.
    """
    names = list(variables) if variables is not None else list(climatology.data_vars)
    missing = [n for n in names if n not in climatology.data_vars]
    if missing:
        raise KeyError(f"variables {missing} are not in the climatology (it has {list(climatology.data_vars)})")
    out = climatology_at(climatology[names], valid_times(init_times, lead_times))
    return out.transpose(INIT_DIM, LEAD_DIM, ...)
