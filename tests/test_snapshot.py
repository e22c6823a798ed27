"""Snapshot stage: validated zarr v3, content hash as ID, idempotent reruns, clean failures."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support.grib import write_grib
from tests.support.synthetic import synthetic_dataset
from zonda.data.sources import SourceError
from zonda.data.validation import SnapshotValidationError
from zonda.snapshot import DATA_DIRNAME, build_snapshot, open_snapshot


def test_snapshot_is_zarr_v3_with_the_selected_data(synthetic_params, tmp_path: Path) -> None:
    source = synthetic_dataset()
    params = synthetic_params(source=_write(source, tmp_path / "src.zarr"))
    result = build_snapshot(params, tmp_path / "snap", progress=False)
    assert not result.reused
    meta = json.loads((tmp_path / "snap" / DATA_DIRNAME / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    snap = open_snapshot(tmp_path / "snap").load()
    expected = source.sel(level=[500, 850], time=slice("2000-01-01", "2000-01-14T18"))
    np.testing.assert_array_equal(snap["temperature"].values, expected["temperature"].values)
    np.testing.assert_array_equal(snap["surface_pressure"].values, expected["surface_pressure"].values)
    assert snap["temperature"].dims == ("time", "level", "latitude", "longitude")
    assert snap["temperature"].attrs["units"] == "K" and snap["latitude"].attrs["units"] == "degrees_north"
    assert list(snap["level"].values) == [500, 850]
    assert np.all(np.diff(snap["latitude"].values) > 0)
    assert snap["day_progress_sin"].dims == ("time", "longitude")
    assert snap["year_progress_cos"].dims == ("time",)
    assert snap["geopotential_at_surface"].dims == ("latitude", "longitude")
    assert snap["temperature"].encoding["chunks"][0] == params.data.chunk_time
    manifest = result.manifest
    assert manifest["snapshot_id"] == f"sha256:{manifest['content_hash']}"
    assert manifest["time_range"] == {"start": "2000-01-01T00:00:00", "end": "2000-01-14T18:00:00", "steps": 56}
    assert manifest["shapes"]["temperature"] == [56, 2, 32, 64]
    assert (tmp_path / "snap" / "params.resolved.yaml").is_file()


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def test_rerun_with_same_inputs_is_a_no_op(synthetic_params, tmp_path: Path) -> None:
    params = synthetic_params()
    first = build_snapshot(params, tmp_path / "snap", progress=False)
    stamp = (tmp_path / "snap" / "manifest.json").stat().st_mtime_ns
    again = build_snapshot(params, tmp_path / "snap", progress=False)
    assert again.reused and again.snapshot_id == first.snapshot_id
    assert (tmp_path / "snap" / "manifest.json").stat().st_mtime_ns == stamp


def test_content_hash_ignores_chunking_but_sees_the_data(synthetic_params, tmp_path: Path) -> None:
    src = _write(synthetic_dataset(), tmp_path / "a.zarr")
    a = build_snapshot(synthetic_params("data.chunk_time=4", source=src), tmp_path / "s1", progress=False)
    b = build_snapshot(synthetic_params("data.chunk_time=7", source=src), tmp_path / "s2", progress=False)
    assert a.snapshot_id == b.snapshot_id
    changed = synthetic_dataset()
    changed["temperature"][3, 1, 5, 5] += 0.5  # level 500 hPa, selected by the ci preset
    c = build_snapshot(synthetic_params(source=_write(changed, tmp_path / "b.zarr")), tmp_path / "s3", progress=False)
    assert c.snapshot_id != a.snapshot_id


def test_descending_latitude_and_negative_longitude_are_normalised(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset().isel(latitude=slice(None, None, -1))
    ds = ds.assign_coords(longitude=((ds.longitude + 180) % 360) - 180).sortby("longitude")
    result = build_snapshot(synthetic_params(source=_write(ds, tmp_path / "src.zarr")), tmp_path / "snap", progress=False)
    snap = open_snapshot(result.path)
    assert np.all(np.diff(snap.latitude.values) > 0)
    assert snap.longitude.values.min() == 0.0 and np.all(np.diff(snap.longitude.values) > 0)


def test_coarsening_block_means(synthetic_params, tmp_path: Path) -> None:
    source = synthetic_dataset()
    result = build_snapshot(
        synthetic_params("data.coarsen.factor=2", source=_write(source, tmp_path / "src.zarr")), tmp_path / "snap", progress=False
    )
    snap = open_snapshot(result.path).load()
    assert snap.sizes["latitude"] == 16 and snap.sizes["longitude"] == 32
    block = source["surface_pressure"].isel(time=0, latitude=slice(0, 2), longitude=slice(0, 2)).values.astype("f8")
    assert snap["surface_pressure"].isel(time=0, latitude=0, longitude=0).item() == pytest.approx(block.mean(), rel=1e-6)


def _corrupt(kind: str) -> xr.Dataset:
    ds = synthetic_dataset()
    if kind == "nan":
        ds["temperature"][9, 1, 3, 3] = np.nan
    elif kind == "inf":
        ds["surface_pressure"][20, 0, 0] = np.inf
    elif kind == "range":
        ds["geopotential"] = ds["geopotential"] / 9.80665 * 1e3  # a unit mix-up: far too large
        ds["geopotential"].attrs["units"] = "m**2 s**-2"
    elif kind == "units":
        ds["temperature"].attrs["units"] = "degC"
    elif kind == "missing_variable":
        ds = ds.drop_vars("v_component_of_wind")
    elif kind == "missing_level":
        ds = ds.sel(level=[250, 850])
    elif kind == "missing_time":
        ds = ds.drop_isel(time=[10])
    elif kind == "duplicated_time":
        t = ds.time.values.copy()
        t[11] = t[10]
        ds = ds.assign_coords(time=t)
    elif kind == "non_monotonic_lat":
        lat = ds.latitude.values.copy()
        lat[[4, 5]] = lat[[5, 4]]
        ds = ds.assign_coords(latitude=lat)
    elif kind == "latitude_range":
        ds = ds.assign_coords(latitude=np.linspace(-95, 95, ds.sizes["latitude"]))
    return ds


@pytest.mark.parametrize(
    "kind, words",
    [
        ("nan", ["'temperature'", "NaN/inf", "time=2000-01-03T06:00:00"]),
        ("inf", ["'surface_pressure'", "NaN/inf", "time=2000-01-06T00:00:00"]),
        ("range", ["'geopotential'", "plausible range", "time=2000-01-01T00:00:00", "wrong units"]),
        ("units", ["'temperature'", "units 'degC'", "expected 'K'"]),
        ("missing_variable", ["'v_component_of_wind' is missing"]),
        ("missing_level", ["levels [500] hPa missing"]),
        ("missing_time", ["1 6-hourly step(s)", "2000-01-03T12:00:00"]),
        ("duplicated_time", ["'time' has duplicated values", "2000-01-03T12:00:00"]),
        ("non_monotonic_lat", ["'latitude' is not monotonic"]),
        ("latitude_range", ["'latitude' outside [-90, 90]"]),
    ],
)
def test_validation_failures_name_variable_and_time_and_leave_nothing(
    kind: str, words: list[str], synthetic_params, tmp_path: Path
) -> None:
    params = synthetic_params(source=_write(_corrupt(kind), tmp_path / "bad.zarr"))
    out = tmp_path / "snap"
    with pytest.raises(SnapshotValidationError) as info:
        build_snapshot(params, out, progress=False)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".snap")] == []


def test_failed_rebuild_keeps_the_previous_snapshot(synthetic_params, tmp_path: Path) -> None:
    good = build_snapshot(synthetic_params(), tmp_path / "snap", progress=False)
    bad = synthetic_params(source=_write(_corrupt("nan"), tmp_path / "bad.zarr"))
    with pytest.raises(SnapshotValidationError):
        build_snapshot(bad, tmp_path / "snap", progress=False)
    assert json.loads((tmp_path / "snap" / "manifest.json").read_text())["snapshot_id"] == good.snapshot_id


def test_unreachable_sources_fail_fast_with_the_field_named(synthetic_params, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="data.source.path .*no such zarr store"):
        build_snapshot(synthetic_params(source=tmp_path / "nowhere.zarr"), tmp_path / "snap", progress=False)
    params = synthetic_params(source=tmp_path / "x.zarr")
    params.data.source.path = "gs://weatherbench2/datasets/era5/x.zarr"
    with pytest.raises(SourceError, match="gcsfs"):
        build_snapshot(params, tmp_path / "snap", progress=False)
    assert not (tmp_path / "snap").exists()


def test_netcdf_source(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset()
    ds.to_netcdf(tmp_path / "src.nc", engine="h5netcdf")
    params = synthetic_params("data.source.kind=netcdf", f"data.source.path={tmp_path / 'src.nc'}")
    zarr_params = synthetic_params(source=_write(ds, tmp_path / "src.zarr"))
    a = build_snapshot(params, tmp_path / "from-nc", progress=False)
    b = build_snapshot(zarr_params, tmp_path / "from-zarr", progress=False)
    assert a.snapshot_id == b.snapshot_id  # same content whatever the container


def test_renamed_source_dims_are_mapped(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset().rename({"latitude": "lat", "longitude": "lon", "temperature": "t"})
    src = _write(ds, tmp_path / "src.zarr")
    params = synthetic_params("data.source.rename={t: temperature}", source=src)
    result = build_snapshot(params, tmp_path / "snap", progress=False)
    assert "temperature" in open_snapshot(result.path)


def test_grib_source_maps_ecmwf_short_names_and_keeps_the_values(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset()
    src = write_grib(ds, tmp_path / "era5-like.grib2")
    params = synthetic_params("data.source.kind=grib", f"data.source.path={src}", "data.static=[]")
    result = build_snapshot(params, tmp_path / "snap", progress=False)
    snap = open_snapshot(result.path)
    assert snap["latitude"].values[0] < snap["latitude"].values[-1]  # flipped back to ascending
    for name in params.data.variables:
        expected = ds[name].sel(level=params.data.levels) if "level" in ds[name].dims else ds[name]
        np.testing.assert_array_equal(snap[name].transpose(*expected.dims).values, expected.values, err_msg=name)
    assert list(snap["time"].values) == list(ds["time"].values)
    assert not list(tmp_path.glob("*.idx"))  # no cfgrib index written beside a (maybe read-only) source


def test_grib_source_that_is_not_grib_fails_naming_the_file(synthetic_params, tmp_path: Path) -> None:
    pytest.importorskip("cfgrib")
    bad = tmp_path / "not-grib.grib2"
    bad.write_text("these are not GRIB messages")
    params = synthetic_params("data.source.kind=grib", f"data.source.path={bad}")
    with pytest.raises(SourceError, match="not-grib.grib2"):
        build_snapshot(params, tmp_path / "snap", progress=False)
    assert not (tmp_path / "snap").exists()


def test_the_snapshot_opens_with_plain_xarray_without_a_warning_and_carries_cf_attributes(synthetic_params, tmp_path: Path) -> None:
    build_snapshot(synthetic_params(), tmp_path / "snap", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. xarray's "Failed to open Zarr store with consolidated metadata"
        ds = xr.open_zarr(tmp_path / "snap" / "data.zarr")
    assert ds.attrs["Conventions"].startswith("CF-")
    assert ds["temperature"].attrs["units"] == "K" and ds["latitude"].attrs["units"] == "degrees_north"
