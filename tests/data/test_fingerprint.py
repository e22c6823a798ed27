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
