"""Tests of the Held-Suarez generator (zonda.data.heldsuarez).

The model is compiled once per module (the jitted functions are cached per
process) and three 2-day runs from the shipped restart are shared by the
tests.  Physical checks use independent references: the Held & Suarez (1994)
climate, the hypsometric equation and geostrophic balance with textbook
constants, not values produced by this code earlier.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.support.repo import REPO
from zonda.data import heldsuarez, hs_dycore
from zonda.data.heldsuarez import builtin_restart_path, generate, main_heldsuarez, spin_up, write_dataset
from zonda.data.hs_restart import RestartError, read_restart
from zonda.data.validation import check_values
from zonda.params import HeldSuarezParams, load_params
from zonda.variables import variable

LEVELS = [250, 500, 850, 1000]
DAYS = 2.0
START = datetime(2000, 1, 1)

# Independent physical constants (not dinosaur's).
R_DRY = 287.04  # J kg-1 K-1
OMEGA = 7.292e-5  # s-1
EARTH_RADIUS = 6.371e6  # m


def _params(**changes) -> HeldSuarezParams:
    return HeldSuarezParams(**{"days": DAYS, "start": START, **changes})


@pytest.fixture(scope="module")
def runs() -> dict[str, xr.Dataset]:
    """Seed 0 twice and seed 1 once, 2 days each from the builtin T21 L12 restart."""
    return {
        "a": generate(_params(seed=0), LEVELS, progress=False),
        "a_again": generate(_params(seed=0), LEVELS, progress=False),
        "b": generate(_params(seed=1), LEVELS, progress=False),
    }


@pytest.fixture(scope="module")
def ds(runs) -> xr.Dataset:
    return runs["a"]


def _area_mean(da: xr.DataArray) -> xr.DataArray:
    weights = np.cos(np.deg2rad(da.latitude))
    return da.weighted(weights).mean(["latitude", "longitude"])


# ------------------------------------------------------------------ layout


def test_grid_is_the_exact_wb2_5p625_grid_with_latitude_ascending(ds):
    expected_lat = -87.1875 + 5.625 * np.arange(32)
    expected_lon = 5.625 * np.arange(64)
    assert ds.latitude.dtype == np.float64 and ds.longitude.dtype == np.float64
    np.testing.assert_array_equal(ds.latitude.values, expected_lat)
    np.testing.assert_array_equal(ds.longitude.values, expected_lon)
    assert ds.latitude.attrs["units"] == "degrees_north"
    assert ds.longitude.attrs["units"] == "degrees_east"
    assert ds.latitude.attrs["standard_name"] == "latitude"


def test_levels_are_int_hpa_ascending(ds):
    assert ds.level.dtype.kind == "i"
    assert ds.level.values.tolist() == LEVELS
    assert ds.level.attrs["units"] == "hPa"


def test_levels_come_out_sorted_whatever_the_input_order():
    ds = generate(_params(days=0.25), [850, 250], progress=False)
    assert ds.level.values.tolist() == [250, 850]


def test_time_axis_is_6_hourly_from_start(ds):
    expected = pd.date_range(START, periods=int(DAYS * 4), freq="6h").values
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(ds.time.values, expected)


def test_variables_dims_dtype_and_attrs_follow_the_catalogue(ds):
    dims = {
        "temperature": ("time", "level", "latitude", "longitude"),
        "geopotential": ("time", "level", "latitude", "longitude"),
        "u_component_of_wind": ("time", "level", "latitude", "longitude"),
        "v_component_of_wind": ("time", "level", "latitude", "longitude"),
        "surface_pressure": ("time", "latitude", "longitude"),
        "geopotential_at_surface": ("latitude", "longitude"),
    }
    assert set(ds.data_vars) == set(dims)
    for name, expected_dims in dims.items():
        da, entry = ds[name], variable(name)
        assert da.dims == expected_dims, name
        assert da.dtype == np.float32, name
        assert da.attrs["units"] == entry.units, name
        assert da.attrs["long_name"] == entry.long_name, name
        assert da.attrs.get("standard_name") == entry.standard_name, name
    assert float(np.abs(ds.geopotential_at_surface).max()) == 0.0  # flat Held-Suarez planet


def test_global_attrs_record_provenance(ds):
    import dinosaur

    assert ds.attrs["Conventions"] == "CF-1.8"
    source = ds.attrs["source"]
    for piece in (f"dinosaur {dinosaur.__version__}", "T21", "12 equidistant sigma levels", "dt 30 min", "seed 0"):
        assert piece in source
    assert "heldsuarez_restart_T21_L12.npz" in ds.attrs["restart"]


# ------------------------------------------------------------ physics


def test_values_finite_and_in_catalogue_valid_ranges(ds):
    for name, da in ds.data_vars.items():
        values = da.values
        assert np.all(np.isfinite(values)), name
        lo, hi = variable(name).valid_range
        assert lo <= values.min() and values.max() <= hi, (name, values.min(), values.max())
    check_values(ds, list(ds.data_vars))  # what a snapshot checks: per-level geopotential ranges, no constant field


def test_westerly_jets_in_both_hemispheres_like_held_suarez_1994(ds):
    # HS94: time- and zonal-mean zonal wind has westerly jets of about 30 m/s
    # near 250 hPa in the midlatitudes of each hemisphere, weak winds at the poles.
    u = ds.u_component_of_wind.sel(level=250).mean(["time", "longitude"])
    lat = ds.latitude
    for hemisphere in (lat > 0, lat < 0):
        band = u.where(hemisphere & (abs(lat) >= 25) & (abs(lat) <= 60), drop=True)
        assert 20.0 <= float(band.max()) <= 40.0, band.values
        assert float(band.max()) > float(u.where(hemisphere & (abs(lat) > 75), drop=True).max()) + 15.0


def test_temperature_structure_like_held_suarez_1994(ds):
    # HS94: near-surface equatorial air near 300 K (equilibrium 315 K relaxed by
    # the circulation); T850 between ~230 K (poles) and ~300 K (tropics).
    t = ds.temperature
    equatorial_surface = float(t.sel(level=1000).where(abs(ds.latitude) < 10).mean())
    assert 295.0 <= equatorial_surface <= 310.0
    t850 = t.sel(level=850)
    assert 230.0 <= float(t850.min()) and float(t850.max()) <= 305.0
    polar = float(t850.where(abs(ds.latitude) > 70).mean())
    assert equatorial_surface - polar > 30.0  # HS94 equator-pole contrast (dT_y = 60 K in equilibrium)


def test_geopotential_500_is_plausible(ds):
    z500 = _area_mean(ds.geopotential.sel(level=500)).values
    assert np.all((5.2e4 <= z500) & (z500 <= 5.8e4)), z500  # ~5.3-5.7 km geopotential height


def test_surface_pressure_global_mean_conserved_near_1e5_pa(ds):
    mean_ps = _area_mean(ds.surface_pressure).values
    np.testing.assert_allclose(mean_ps, 1.0e5, rtol=5e-3)
    assert np.ptp(mean_ps) / 1.0e5 < 1e-3  # dry mass does not drift during the run


def test_geopotential_increases_upward_everywhere(ds):
    # level is ascending in pressure, so geopotential must strictly decrease along it.
    assert bool((ds.geopotential.diff("level") < 0).all())


@pytest.mark.parametrize("lower, upper", [(850, 500), (500, 250)])
def test_thickness_obeys_the_hypsometric_equation(ds, lower, upper):
    z, t = ds.geopotential, ds.temperature
    thickness = z.sel(level=upper) - z.sel(level=lower)
    mean_t = 0.5 * (t.sel(level=upper) + t.sel(level=lower))
    expected = R_DRY * mean_t * np.log(lower / upper)
    relative = np.abs(thickness / expected - 1.0).values
    assert np.median(relative) < 0.015 and relative.max() < 0.04, (np.median(relative), relative.max())


def test_midlatitude_wind_is_geostrophic(ds):
    # v_g = (1/f) dPhi/dx at 500 hPa; checks units of geopotential and wind,
    # the latitude orientation (sign of f) and the longitude direction.
    lat = np.deg2rad(ds.latitude.values)[None, :, None]
    dlon = np.deg2rad(5.625)
    z = ds.geopotential.sel(level=500).values
    dz_dx = (np.roll(z, -1, axis=-1) - np.roll(z, 1, axis=-1)) / (2 * dlon * EARTH_RADIUS * np.cos(lat))
    v_geostrophic = dz_dx / (2 * OMEGA * np.sin(lat))
    band = (np.abs(ds.latitude.values) > 30) & (np.abs(ds.latitude.values) < 65)
    x = v_geostrophic[:, band, :].ravel()
    y = ds.v_component_of_wind.sel(level=500).values[:, band, :].ravel()
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert 0.8 < np.polyfit(x, y, 1)[0] < 1.25


# ------------------------------------------------------- reproducibility


def test_same_seed_gives_bit_identical_output(runs):
    xr.testing.assert_identical(runs["a"], runs["a_again"])


def test_different_seed_gives_different_weather_same_climate(runs):
    a, b = runs["a"], runs["b"]
    for name in ("temperature", "u_component_of_wind", "surface_pressure"):
        assert not np.array_equal(a[name].values, b[name].values), name
    t_a = float(_area_mean(a.temperature.sel(level=850)).mean())
    t_b = float(_area_mean(b.temperature.sel(level=850)).mean())
    assert abs(t_a - t_b) < 0.1


def test_repeated_generate_compiles_once(runs):
    # Three generate calls of the fixture (and any test above) reuse one compiled integrator.
    dycore = hs_dycore.get_dycore(21, 12, 30.0)
    assert dycore.advance._cache_size() == 1
    assert hs_dycore.get_diagnostics(dycore, tuple(LEVELS))._cache_size() == 1


def test_progress_bar_counts_simulated_days(capsys):
    generate(_params(days=0.5), [500], progress=True)
    err = capsys.readouterr().err
    assert "0.50/0.50 simulated days" in err


# ---------------------------------------------------------------- restarts


def test_builtin_restart_loads_without_pickle_and_describes_itself():
    path = builtin_restart_path(21, 12)
    assert path.stat().st_size < 500_000
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["metadata"]))
        assert npz["vorticity"].dtype == np.float32
        assert npz["vorticity"].shape == (12, 43, 23)
    assert (meta["truncation"], meta["layers"], meta["dt_minutes"], meta["spinup_days"]) == (21, 12, 30.0, 300.0)
    assert {"dinosaur_version", "seed"} <= set(meta)


def test_builtin_restart_was_statistically_steady():
    _, meta = read_restart(builtin_restart_path(21, 12), 21, 12)
    steady = meta["steadiness"]  # last 50 days of spin-up vs the 50 before
    for key in ("kinetic_energy", "jet_sh", "jet_nh"):
        assert abs(steady[f"{key}_relative_change"]) < 0.15, (key, steady)


def test_restart_resolution_mismatch_names_the_file():
    path = builtin_restart_path(21, 12)
    with pytest.raises(RestartError, match=r"T21 L12.*heldsuarez\.layers=20") as info:
        generate(_params(layers=20, restart=str(path)), LEVELS, progress=False)
    assert str(path) in str(info.value)


def test_restart_with_pickled_objects_is_refused(tmp_path):
    bad = tmp_path / "pickled.npz"
    np.savez(bad, vorticity=np.array([object()], dtype=object), metadata=np.array("{}"))
    with pytest.raises(RestartError, match="pickled.npz"):
        read_restart(bad, 21, 12)


def test_missing_builtin_restart_says_how_to_write_it():
    with pytest.raises(FileNotFoundError, match=r"--write-restart .*heldsuarez_restart_T42_L12\.npz"):
        builtin_restart_path(42, 12)


def test_spin_up_writes_a_restart_that_generate_starts_from(tmp_path, ds):
    path = spin_up(_params(seed=3), 0.5, tmp_path / "r.npz", progress=False)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["metadata"]))
    assert (meta["truncation"], meta["layers"], meta["spinup_days"], meta["seed"]) == (21, 12, 0.5, 3)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    fresh = generate(_params(days=0.25, restart=str(path)), [250], progress=False)
    # Half a day after rest there are no jets yet, unlike the spun-up builtin state.
    assert float(np.abs(fresh.u_component_of_wind).max()) < 10.0
    assert float(np.abs(ds.u_component_of_wind.sel(level=250)).max()) > 30.0


# --------------------------------------------------------------- CLI / files


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_write_dataset_round_trips(tmp_path, ds, suffix):
    out = write_dataset(ds, tmp_path / f"hs{suffix}", chunk_time=4)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    back = xr.open_dataset(out, engine="h5netcdf" if suffix == ".nc" else "zarr").load()
    xr.testing.assert_equal(back, ds)
    assert back.temperature.attrs["units"] == "K" and back.temperature.dtype == np.float32
    if suffix == ".zarr":
        assert back.temperature.encoding["chunks"][0] == 4


def test_main_heldsuarez_checks_arguments_before_running():
    params = load_params(REPO / "params" / "ci.yaml")
    with pytest.raises(ValueError, match="--write-restart"):
        main_heldsuarez(params, None, None, None)
    with pytest.raises(ValueError, match=r"\.csv"):
        main_heldsuarez(params, Path("out.csv"), None, None)


def test_main_heldsuarez_writes_restart(tmp_path):
    params = load_params(REPO / "params" / "ci.yaml")
    target = tmp_path / "restart.npz"
    main_heldsuarez(params, None, 0.25, target, progress=False)
    _, meta = read_restart(target, 21, 12)
    assert meta["spinup_days"] == 0.25
    assert heldsuarez.DEFAULT_RESTART_SPINUP_DAYS == 300.0


# -------------------------------------------------------------------- slow


@pytest.mark.slow
def test_month_long_climate_has_held_suarez_circulation():
    # 30 days from the builtin restart: a time-mean closer to HS94's climatology.
    ds = generate(_params(days=30), [250, 1000], progress=False)
    u = ds.u_component_of_wind.mean(["time", "longitude"])
    lat = np.abs(ds.latitude)
    for hemisphere in (ds.latitude > 0, ds.latitude < 0):
        jet = float(u.sel(level=250).where(hemisphere & (lat >= 25) & (lat <= 60)).max())
        assert 24.0 <= jet <= 36.0, jet
        # Surface trade easterlies in the subtropics, surface westerlies poleward of them.
        surface = u.sel(level=1000)
        assert float(surface.where(hemisphere & (lat > 5) & (lat < 25)).mean()) < -2.0
        assert float(surface.where(hemisphere & (lat > 30) & (lat < 50)).max()) > 1.0
    mean_ps = _area_mean(ds.surface_pressure).values
    assert np.ptp(mean_ps) / 1.0e5 < 1e-3
