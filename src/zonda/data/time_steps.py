"""The snapshot's time steps: the source's steps on the ``data.time_step`` grid inside ``data.time``.

A source may be finer than the snapshot (the hourly ARCO-ERA5 stores): the
steps ``data.time.start, start + step, ..., <= data.time.end`` are selected and
the others never read, so a gap or a bad value at a step between them does not
matter. The source's own step (the greatest common divisor of its time
differences inside the window) must divide ``data.time_step``, and every
selected step must be in the source.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import pandas as pd


def _fmt(t: np.datetime64) -> str:
    return pd.Timestamp(t).isoformat()


def _hours(delta_ns: int) -> str:
    return f"{delta_ns / 3.6e12:g} h"


def selected_times(start: np.datetime64, end: np.datetime64, step_hours: int) -> np.ndarray:
    """``start, start + step, ...`` up to and including ``end``, as datetime64[ns] (time,)."""
    step = np.timedelta64(int(step_hours), "h").astype("timedelta64[ns]")
    start, end = np.datetime64(start, "ns"), np.datetime64(end, "ns")
    return np.arange(start, end + step, step)


def source_step_ns(times: np.ndarray) -> int | None:
    """The source's step in ns: the gcd of its (positive) consecutive differences; None with under two steps."""
    diffs = np.diff(np.asarray(times).astype("datetime64[ns]").astype(np.int64))
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        return None
    return int(np.gcd.reduce(diffs)) if diffs.size > 1 else int(diffs[0])


def time_step_problems(times: np.ndarray, start: np.datetime64, end: np.datetime64, step_hours: int) -> list[str]:
    """What keeps ``times`` (the source's time axis, sorted) from giving every selected step; [] when nothing.

    Names the source's step when it does not divide ``step_hours``, else the
    number of selected steps the source lacks and the first of them.
    """
    times = np.asarray(times).astype("datetime64[ns]")
    start, end = np.datetime64(start, "ns"), np.datetime64(end, "ns")
    wanted = selected_times(start, end, step_hours)
    inside = times[(times >= start) & (times <= end)]
    step_ns = int(np.timedelta64(int(step_hours), "h").astype("timedelta64[ns]").astype(np.int64))
    own = source_step_ns(inside)
    if own is not None and step_ns % own:
        return [
            f"time: the source's step is {_hours(own)} (the gcd of its time differences in {_fmt(start)}.."
            f"{_fmt(end)}), which does not divide data.time_step {step_hours}h: its steps cannot be thinned to a "
            f"{step_hours}-hourly axis"
        ]
    missing = np.setdiff1d(wanted, inside)
    if not missing.size:
        return []
    shown = ", ".join(_fmt(t) for t in missing[:5])
    problem = (
        f"time: {missing.size} {step_hours}-hourly step(s) of {_fmt(wanted[0])}..{_fmt(wanted[-1])} "
        f"(data.time every data.time_step {step_hours}h) missing from the source, first: {shown}"
    )
    off_grid = np.setdiff1d(inside, wanted)  # the window's steps that are not selected
    if off_grid.size and missing.size == wanted.size:
        problem += f"; the source's steps lie off that grid (first: {_fmt(off_grid[0])}): is data.time.start on it?"
    return [problem]
