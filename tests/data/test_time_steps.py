"""data.time_step: an hourly source is thinned to the 6-hourly grid before validation, which judges only those steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.support.synthetic import UNITS, synthetic_dataset, write_zarr
from zonda.data.time_steps import selected_times, source_step_ns, time_step_problems
from zonda.data.validation import SnapshotValidationError
from zonda.params import ParamsError
from zonda.snapshot import build_snapshot, open_snapshot


def _hourly(six_hourly: xr.Dataset) -> xr.Dataset:
    """An hourly source whose steps on the 6-hourly grid are ``six_hourly``'s and whose others are different values."""
    n = six_hourly.sizes["time"] * 6
    filler = synthetic_dataset(n_time=n, seed=1).assign_coords(
        time=pd.date_range(str(six_hourly["time"].values[0]), periods=n, freq="h")
    )
    hourly = six_hourly.combine_first(filler)
    for name, units in UNITS.items():
        hourly[name].attrs["units"] = units
    return hourly


def test_an_hourly_source_gives_the_snapshot_of_its_six_hourly_steps(synthetic_params, tmp_path: Path) -> None:
    six = synthetic_dataset()
    hourly = _hourly(six)
    assert hourly.sizes["time"] == 6 * six.sizes["time"]
    reference = build_snapshot(synthetic_params(source=write_zarr(six, tmp_path / "6h.zarr")), tmp_path / "a", progress=False)
    thinned = build_snapshot(synthetic_params(source=write_zarr(hourly, tmp_path / "1h.zarr")), tmp_path / "b", progress=False)
    # the content hash covers every array's bytes and the coordinates: the same snapshot, bit for bit
    assert thinned.snapshot_id == reference.snapshot_id
    snap = open_snapshot(tmp_path / "b")
    assert snap.sizes["time"] == 56
    assert set(np.diff(snap["time"].values).astype("timedelta64[h]").astype(int)) == {6}
    assert thinned.manifest["selection"]["time_step"] == "6h"


def test_a_gap_or_bad_value_between_the_selected_steps_passes(synthetic_params, tmp_path: Path) -> None:
    hourly = _hourly(synthetic_dataset())
    hourly = hourly.drop_sel(time=[np.datetime64("2000-01-01T01:00")])  # a gap at 01:00
    hourly["temperature"].loc[{"time": "2000-01-02T03:00"}] = np.nan  # and a NaN at 03:00
    result = build_snapshot(synthetic_params(source=write_zarr(hourly, tmp_path / "1h.zarr")), tmp_path / "s", progress=False)
    assert result.manifest["time_range"]["steps"] == 56


def test_a_missing_selected_step_fails_naming_it(synthetic_params, tmp_path: Path) -> None:
    hourly = _hourly(synthetic_dataset()).drop_sel(time=[np.datetime64("2000-01-01T06:00")])
    with pytest.raises(SnapshotValidationError) as info:
        build_snapshot(synthetic_params(source=write_zarr(hourly, tmp_path / "1h.zarr")), tmp_path / "s", progress=False)
    assert "1 6-hourly step(s)" in str(info.value) and "first: 2000-01-01T06:00:00" in str(info.value)
    assert not (tmp_path / "s").exists()


def test_a_bad_value_at_a_selected_step_fails_naming_it(synthetic_params, tmp_path: Path) -> None:
    hourly = _hourly(synthetic_dataset())
    hourly["temperature"].loc[{"time": "2000-01-02T06:00"}] = np.nan
    with pytest.raises(SnapshotValidationError, match=r"'temperature'.*NaN/inf.*time=2000-01-02T06:00:00"):
        build_snapshot(synthetic_params(source=write_zarr(hourly, tmp_path / "1h.zarr")), tmp_path / "s", progress=False)


def test_a_source_step_that_does_not_divide_the_time_step_is_refused(synthetic_params, tmp_path: Path) -> None:
    four = synthetic_dataset(n_time=90).assign_coords(time=pd.date_range("2000-01-01", periods=90, freq="4h"))
    with pytest.raises(SnapshotValidationError, match=r"the source's step is 4 h .*does not divide data.time_step 6h"):
        build_snapshot(synthetic_params(source=write_zarr(four, tmp_path / "4h.zarr")), tmp_path / "s", progress=False)


def test_steps_off_the_grid_are_reported_with_a_hint() -> None:
    times = pd.date_range("2000-01-01T00:30", periods=8, freq="6h").values
    problems = time_step_problems(times, np.datetime64("2000-01-01"), np.datetime64("2000-01-02T18"), 6)
    assert len(problems) == 1
    assert "8 6-hourly step(s)" in problems[0] and "first: 2000-01-01T00:00:00" in problems[0]
    assert "off that grid (first: 2000-01-01T00:30:00)" in problems[0]


def test_selected_times_and_source_step_by_hand() -> None:
    got = selected_times(np.datetime64("2000-01-01T00"), np.datetime64("2000-01-02T00"), 6)
    assert [str(t)[:13] for t in got] == ["2000-01-01T00", "2000-01-01T06", "2000-01-01T12", "2000-01-01T18", "2000-01-02T00"]
    hours = np.datetime64("2000-01-01T00", "ns") + np.array([0, 1, 3, 9], dtype="timedelta64[h]")
    assert source_step_ns(hours) == 3600 * 10**9  # gcd(1, 2, 6) h
    assert source_step_ns(hours[:1]) is None


def test_time_step_param(synthetic_params) -> None:
    assert synthetic_params().data.time_step == "6h"
    assert synthetic_params("data.time_step=360min").data.time_step == "6h"
    with pytest.raises(ParamsError, match=r"data.time_step.*12 h.*models step 6 h"):
        synthetic_params("data.time_step=12h")
    with pytest.raises(ParamsError, match=r"data.time_step.*not a duration"):
        synthetic_params("data.time_step=six hours")
