"""A source is fingerprinted by its own metadata and object versions, not its URL: an updated store is snapshotted again.

The "remote" store is an fsspec ``memory://`` URL (the same code path as gs:// or s3://, with no network).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr

from tests.support.synthetic import append_step, synthetic_dataset, write_zarr
from zonda import stage_cache
from zonda.data import fingerprint
from zonda.data.fingerprint import FingerprintError, files_fingerprint, source_fingerprint
from zonda.stages import snapshot_stage


@pytest.fixture
def memory_store():
    """A ``memory://`` URL for a store, removed afterwards."""
    url = f"memory://zonda-test-{uuid.uuid4().hex[:8]}/source.zarr"
    yield url
    fs = fsspec.filesystem("memory")
    folder = url.rsplit("/", 1)[0]
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


def _stage(params, out: Path, caplog) -> tuple[dict, bool]:
    """(manifest, reused?) of one snapshot stage call."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zonda"):
        manifest = snapshot_stage(params, out, track=False, progress=False)
    return manifest, any("snapshot: reused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "where, zarr_format, documents",
    [
        # v3: the root's zarr.json and that of the 10 arrays read (5 variables, a static field, 4 coordinates)
        ("local", 3, 11),
        ("memory", 3, 11),
        # v2, consolidated: .zmetadata, .zgroup, .zattrs and each array's .zarray and .zattrs
        ("local", 2, 23),
    ],
)
def test_an_unchanged_store_is_reused_and_a_grown_one_is_snapshotted_again(
    where: str, zarr_format: int, documents: int, synthetic_params, memory_store: str, tmp_path: Path, caplog
) -> None:
    ds = synthetic_dataset()
    store = str(tmp_path / "src.zarr") if where == "local" else memory_store
    ds.to_zarr(store, mode="w", zarr_format=zarr_format, consolidated=zarr_format == 2)
    params = synthetic_params(source=store)
    before = source_fingerprint(params.data)
    assert source_fingerprint(params.data) == before  # listing twice changes nothing
    assert before["metadata_documents"] == documents
    assert before["arrays"] == sorted(["geopotential_at_surface", "latitude", "level", "longitude", "time", *params.data.variables])

    first, reused = _stage(params, tmp_path / "snap", caplog)
    assert not reused
    assert first["source"]["fingerprint"] == before
    again, reused = _stage(params, tmp_path / "snap-again", caplog)
    assert reused and again[stage_cache.KEY_FIELD] == first[stage_cache.KEY_FIELD]

    append_step(store, zarr_format=zarr_format)
    after = source_fingerprint(params.data)
    assert after["digest"] != before["digest"]
    assert xr.open_zarr(store, consolidated=zarr_format == 2).sizes["time"] == ds.sizes["time"] + 1
    grown, reused = _stage(params, tmp_path / "snap-grown", caplog)
    assert not reused
    assert grown[stage_cache.KEY_FIELD] != first[stage_cache.KEY_FIELD]
    assert grown["source"]["fingerprint"]["digest"] == after["digest"]
    # the appended step is outside data.time: the same data, so the same snapshot ID
    assert grown["snapshot_id"] == first["snapshot_id"]


def test_a_chunk_rewritten_in_place_changes_the_fingerprint(synthetic_params, memory_store: str) -> None:
    """ERA5T's recent days are overwritten by final ERA5: same shapes, new chunk objects."""
    ds = synthetic_dataset()
    ds.to_zarr(memory_store, mode="w", zarr_format=3, consolidated=False)
    params = synthetic_params(source=memory_store)
    before = source_fingerprint(params.data)
    patch = ds[["temperature"]].isel(time=slice(0, 4)) + 0.5
    patch.drop_vars(["level", "latitude", "longitude"]).to_zarr(
        memory_store, region={"time": slice(0, 4)}, consolidated=False
    )
    after = source_fingerprint(params.data)
    assert after["digest"] != before["digest"] and after["objects"] == before["objects"]


def test_an_array_the_snapshot_does_not_read_is_not_fingerprinted(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset()
    store = write_zarr(ds.assign(unused=ds["temperature"]), tmp_path / "src.zarr")
    params = synthetic_params(source=store)
    before = source_fingerprint(params.data)
    assert "unused" not in before["arrays"]
    shutil.rmtree(store / "unused" / "c")
    assert source_fingerprint(params.data) == before


def test_netcdf_files_by_their_bytes(synthetic_params, tmp_path: Path) -> None:
    ds = synthetic_dataset(n_time=8)
    path = tmp_path / "src.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    first = files_fingerprint(str(path), {})
    assert first["sha256_files"] == 1
    path.touch()  # a new mtime, the same bytes
    assert files_fingerprint(str(path), {}) == first
    (ds + 0).assign(temperature=ds["temperature"] + 1).to_netcdf(path, engine="h5netcdf")
    assert files_fingerprint(str(path), {})["digest"] != first["digest"]


def test_a_missing_store_is_named(synthetic_params, tmp_path: Path) -> None:
    params = synthetic_params(source=tmp_path / "src.zarr")
    params.data.source.path = str(tmp_path / "nowhere.zarr")
    with pytest.raises(FingerprintError, match="data.source.path .*nowhere.zarr.*no such zarr store"):
        source_fingerprint(params.data)


def test_a_remote_netcdf_file_by_its_version(memory_store: str) -> None:
    fs = fsspec.filesystem("memory")
    url = memory_store.replace("source.zarr", "source.nc")
    fs.pipe(url, b"first version")
    first = files_fingerprint(url, {})
    assert first["files"] == 1 and first["sha256_files"] == 0
    assert files_fingerprint(url, {}) == first
    fs.pipe(url, b"other version")  # the same size, a new object
    assert files_fingerprint(url, {})["digest"] != first["digest"]


def _hourly_store(path, *, days: int, zarr_format: int = 3) -> xr.Dataset:
    """An hourly store, one step per chunk (as ARCO-ERA5), longer than the ci preset's period (2000-01-01/14)."""
    hourly = synthetic_dataset(n_time=days * 24, n_lat=8, n_lon=16).assign_coords(
        time=np.arange(np.datetime64("2000-01-01T00", "ns"), np.datetime64(f"2000-01-{1 + days:02d}T00", "ns"),
                       np.timedelta64(1, "h"))
    )
    hourly.chunk({"time": 1}).to_zarr(path, mode="w", zarr_format=zarr_format, consolidated=zarr_format == 2)
    return hourly


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_only_the_chunks_of_the_selected_steps_are_fingerprinted(synthetic_params, tmp_path: Path, zarr_format) -> None:
    """ci: 2000-01-01/2000-01-14 every 6 h = 56 steps of a 20-day hourly store; 5 variables -> 280 chunks, not 2400."""
    store = tmp_path / "hourly.zarr"
    ds = _hourly_store(store, days=20, zarr_format=zarr_format)
    params = synthetic_params("data.time_step=6h", source=store)
    before = source_fingerprint(params.data)
    steps = 14 * 4  # 2000-01-01T00 .. 2000-01-14T18 every 6 h (whole days)
    assert before["selected_chunks"] == steps * len(params.data.variables)
    assert before["arrays_listed_whole"] == 5  # the static field and the 4 coordinates
    everything = len(params.data.variables) * ds.sizes["time"]
    assert before["objects"] < everything

    # a chunk rewritten after the period (2000-01-15T03: never read): the same fingerprint
    outside = int(np.flatnonzero(ds["time"].values == np.datetime64("2000-01-15T03"))[0])
    patch = ds[["temperature"]].isel(time=slice(outside, outside + 1)) + 0.5
    patch.drop_vars(["level", "latitude", "longitude"]).to_zarr(store, region={"time": slice(outside, outside + 1)})
    assert source_fingerprint(params.data) == before
    # one rewritten inside the selection at a selected step (2000-01-03T06): a new fingerprint
    inside = int(np.flatnonzero(ds["time"].values == np.datetime64("2000-01-03T06"))[0])
    patch = ds[["temperature"]].isel(time=slice(inside, inside + 1)) + 0.5
    patch.drop_vars(["level", "latitude", "longitude"]).to_zarr(store, region={"time": slice(inside, inside + 1)})
    rewritten = source_fingerprint(params.data)
    assert rewritten["digest"] != before["digest"]
    # the store grown by one step (outside the period): its arrays' shapes change, so does the fingerprint
    append_step(store, zarr_format=zarr_format)
    assert source_fingerprint(params.data)["digest"] != rewritten["digest"]


def test_asking_chunk_by_chunk_and_listing_give_the_same_fingerprint(synthetic_params, memory_store: str, monkeypatch) -> None:
    _hourly_store(memory_store, days=15)
    params = synthetic_params("data.time_step=6h", source=memory_store)
    fs = fsspec.filesystem("memory")
    fs.rm(fs.find(memory_store.removeprefix("memory://") + "/temperature")[-1])  # a chunk never written: absent
    headed = source_fingerprint(params.data)  # 56 chunks per variable of 360: asked one by one
    # as if memory:// were an object store where listing took fewer round trips: the same entries, from the listing
    monkeypatch.setattr(fingerprint, "IN_PROCESS_PROTOCOLS", set())
    monkeypatch.setattr(fingerprint, "LISTING_PAGE", 10**6)  # one listing request holds every chunk
    monkeypatch.setattr(fingerprint.ThreadPoolExecutor, "map", None)  # a chunk asked for by name would fail
    assert source_fingerprint(params.data) == headed
