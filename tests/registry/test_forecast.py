"""``zonda forecast``: lead parsing and the forecast file's WeatherBench2 schema."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from tests.support import registry_builders as rf
from zonda.channels import ChannelLayout
from zonda.registry.errors import LeadError, RegistryError
from zonda.registry.forecast import forecast
from zonda.registry.inputs import format_lead, parse_lead
from zonda.variables import variable


@pytest.mark.parametrize(
    "lead, steps",
    [("10d", 40), ("36h", 6), ("6h", 1), (" 2D ", 8), (np.timedelta64(12, "h"), 2)],
)
def test_leads_are_counted_in_6_hour_steps(lead, steps):
    assert parse_lead(lead) == steps
    assert parse_lead(format_lead(steps)) == steps


@pytest.mark.parametrize("lead", ["5h", "0d", "-6h", "10", "1.5d", "ten days", np.timedelta64(90, "m")])
def test_bad_leads_are_rejected(lead):
    with pytest.raises(LeadError):
        parse_lead(lead)


@pytest.fixture(scope="module")
def champion_uri() -> str:
    p, result = rf.registered()
    with rf.preserved_tracking_uri():
        rf.use_store(p)  # the CLI configures tracking from --params before calling forecast()
        yield f"models:/{result['name']}@champion"


def test_forecast_writes_the_wb2_forecast_layout(champion_uri, tmp_path):
    p, result = rf.registered()
    init = rf.initial_state(12, 3)
    init_path = rf.write_zarr(init, tmp_path / "init.zarr")
    out = forecast(champion_uri, init_path, "12h", tmp_path / "forecast.zarr")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain xr.open_zarr, as a user opens it: consolidated, no warning
        ds = xr.open_zarr(out)
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds["time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["prediction_timedelta"].attrs["standard_name"] == "forecast_period"
    assert ds["latitude"].attrs["units"] == "degrees_north" and ds["level"].attrs["units"] == "hPa"
    for name in p.data.variables:
        leading = ("time", "prediction_timedelta")
        expected = leading + (("level",) if variable(name).has_levels else ()) + ("latitude", "longitude")
        assert ds[name].dims == expected
        assert ds[name].attrs["units"] == variable(name).units
    assert (ds["time"].values == init["time"].values[-1:]).all() and ds.sizes["time"] == 1
    assert (ds["prediction_timedelta"].values == np.array([6, 12], "timedelta64[h]")).all()
    assert ds["level"].values.tolist() == list(p.data.levels)
    np.testing.assert_allclose(ds["latitude"], init["latitude"])
    np.testing.assert_allclose(ds["longitude"], init["longitude"])
    assert ds.attrs["model_version"] == result["version"] and ds.attrs["model_uri"] == champion_uri
    layout = ChannelLayout.of(p.data.variables, p.data.levels)
    np.testing.assert_allclose(layout.stack(ds.isel(time=0).load()), rf.reference_rollout(12, 2), **rf.CLOSE)

    # A second run replaces the store whole; no temporary directory is left behind.
    forecast(champion_uri, init_path, "6h", out)
    assert xr.open_zarr(out, consolidated=False).sizes["prediction_timedelta"] == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["forecast.zarr", "init.zarr"]


def test_forecast_from_and_to_netcdf(champion_uri, tmp_path):
    init_path = tmp_path / "init.nc"
    rf.initial_state(12, 2).to_netcdf(init_path, engine="h5netcdf")
    out = forecast(champion_uri, init_path, "1d", tmp_path / "forecast.nc")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.sizes["prediction_timedelta"] == 4 and ds.sizes["time"] == 1


def test_forecast_fails_clearly_before_writing_anything(champion_uri, tmp_path):
    init_path = tmp_path / "init.nc"
    rf.initial_state(12, 2).to_netcdf(init_path, engine="h5netcdf")
    with pytest.raises(LeadError, match="5h"):
        forecast("models:/no-such-model@champion", init_path, "5h", tmp_path / "a.zarr")
    with pytest.raises(RegistryError, match="no-such-model"):
        forecast("models:/no-such-model@champion", init_path, "1d", tmp_path / "a.zarr")
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        forecast(champion_uri, tmp_path / "missing.zarr", "1d", tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
