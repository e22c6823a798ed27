"""Time bookkeeping of WB2 forecasts: init times, lead times, valid times.

A forecast dataset has dims ``(time, prediction_timedelta, ...)``: ``time`` is
the initialisation time, ``prediction_timedelta`` the lead; the valid time is
their sum. A truth dataset has a single ``time`` dim of valid times.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

INIT_DIM = "time"
LEAD_DIM = "prediction_timedelta"


def as_datetimes(times: Sequence | np.ndarray | pd.DatetimeIndex | xr.DataArray) -> np.ndarray:
    """``(n,)`` datetime64[ns] array."""
    return np.asarray(times, dtype="datetime64[ns]").reshape(-1)


def as_timedeltas(leads: Sequence | np.ndarray | pd.TimedeltaIndex | xr.DataArray) -> np.ndarray:
    """``(n,)`` timedelta64[ns] array."""
    return np.asarray(pd.to_timedelta(np.asarray(leads).reshape(-1)), dtype="timedelta64[ns]")


def forecast_axes(forecast: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(init_times, lead_times)`` of a WB2-layout forecast, as datetime64/timedelta64[ns]."""
    missing = [d for d in (INIT_DIM, LEAD_DIM) if d not in forecast.dims]
    if missing:
        raise ValueError(f"forecast lacks dims {missing} (WB2 layout: time = init time, prediction_timedelta = lead); dims {dict(forecast.sizes)}")
    return as_datetimes(forecast[INIT_DIM].values), as_timedeltas(forecast[LEAD_DIM].values)


def valid_times(init_times, lead_times) -> xr.DataArray:
    """``(time, prediction_timedelta)`` DataArray of valid times ``init + lead``."""
    init = as_datetimes(init_times)
    lead = as_timedeltas(lead_times)
    return xr.DataArray(
        init[:, None] + lead[None, :],
        dims=[INIT_DIM, LEAD_DIM],
        coords={INIT_DIM: init, LEAD_DIM: lead},
        name="valid_time",
    )


def time_positions(available: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Positions of ``wanted`` times in ``available``; KeyError naming the absent ones."""
    index = pd.DatetimeIndex(as_datetimes(available))
    wanted = as_datetimes(wanted)
    pos = index.get_indexer(wanted)
    if (pos < 0).any():
        absent = pd.DatetimeIndex(wanted[pos < 0])
        raise KeyError(
            f"{what}: {len(absent)} times are not in the truth dataset "
            f"({index.min()} .. {index.max()}), e.g. {[str(t) for t in absent[:3]]}"
        )
    return pos


def truth_for_lead(truth: xr.DataArray | xr.Dataset, init_times, lead: np.timedelta64, what: str = "truth"):
    """Truth valid at ``init + lead`` for each init time, with ``time`` relabelled to the init times.

    Args:
      truth: ``(time, ...)`` with ``time`` = valid times.
      init_times: ``(n_init,)`` datetime64.
      lead: one lead time.
      what: name used in the error message (e.g. the variable).

    Returns:
      ``(time, ...)`` with ``time`` = the init times, so it aligns with ``forecast.sel(prediction_timedelta=lead)``.
    """
    init = as_datetimes(init_times)
    lead = as_timedeltas([lead])[0]
    pos = time_positions(truth[INIT_DIM].values, init + lead, f"{what} at lead {pd.Timedelta(lead)}")
    return truth.isel({INIT_DIM: pos}).assign_coords({INIT_DIM: init})
