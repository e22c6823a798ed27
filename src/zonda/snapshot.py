"""Stage 1, dataset snapshot: source -> validated, content-hashed, immutable zarr v3.

Layout of a snapshot directory::

    <out>/data.zarr            zarr v3, xarray Dataset (WB2 names, dims and units)
    <out>/manifest.json        source, selection, content hash (= snapshot ID), shapes, time range, code version,
                               sha256 of store_digests.json
    <out>/store_digests.json   sha256 and size of every file (chunk) of data.zarr, taken when it was written
    <out>/params.resolved.yaml the fully resolved params that made it
    <out>/truth_states.nc      Held-Suarez sources only: the truth's spectral states over the
                               test split, for the physics baseline (:mod:`zonda.data.truth_states`)

``data.zarr`` holds the prognostic variables (``temperature`` as ``(time, level,
latitude, longitude)``, ``surface_pressure`` as ``(time, latitude, longitude)``),
static fields ``(latitude, longitude)`` and the derived forcings
(``year_progress_*`` ``(time,)``, ``day_progress_*`` ``(time, longitude)``,
``toa_incident_solar_radiation`` ``(time, latitude, longitude)``). Latitude is
ascending, longitude in [0, 360), ``level`` in hPa, time 6-hourly; chunks are
``data.chunk_time`` steps in time and whole fields in space, the shape of a
training read.

The content hash is a sha256 over every array's name, dims, dtype, shape and
bytes (each variable hashed in time order, so it does not depend on how the
data were chunked) and over the coordinates. A rerun with the same inputs finds
the existing snapshot's ``input_key`` in its manifest and does nothing.

Every later stage opens the snapshot through :func:`open_snapshot` (or calls
:func:`verify_snapshot`), which checks each file of ``data.zarr`` against
``store_digests.json`` (sizes, then sha256) and that listing against the
manifest, so a chunk edited, swapped or truncated after writing is refused,
naming the file, its variable and time steps, and both hashes, instead of
being read under the original snapshot ID.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from zonda.data import dvc_source
from zonda.data.fingerprint import source_fingerprint
from zonda.data.forcings import forcing_dataset
from zonda.data.reading import load_block
from zonda.data.sources import SourceError, normalise_grid, open_source
from zonda.data.time_steps import selected_times
from zonda.data.truth_states import MANIFEST_KEY as TRUTH_STATES_KEY
from zonda.data.truth_states import split_states, write_truth_states
from zonda.data.validation import check_structure, check_values
from zonda.files import read_json_file, write_json_atomic
from zonda.integrity import IntegrityError, file_entry, tree_entries, verify_file, verify_tree
from zonda.outputs import write_output
from zonda.params import Params
from zonda.provenance import canonical_json_hash, code_version, read_manifest
from zonda.variables import TIME_STEP, variable
from zonda.zarr_files import consolidate_zarr

log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA_VERSION = 2  # 2: store_digests.json (per-file sha256 of data.zarr)
DATA_DIRNAME = "data.zarr"
DIGESTS_FILENAME = "store_digests.json"
_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SnapshotResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]


def open_snapshot(directory: str | os.PathLike[str]) -> xr.Dataset:
    """Opens a snapshot's data lazily (dask-backed), after :func:`verify_snapshot`."""
    path = Path(directory) / DATA_DIRNAME
    if not path.exists():
        raise FileNotFoundError(f"{directory}: not a zonda snapshot (no {DATA_DIRNAME})")
    verify_snapshot(directory)
    return xr.open_zarr(path, chunks={}, consolidated=False)


def verify_snapshot(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Checks every file of ``data.zarr`` against the digests recorded at write time; returns the manifest.

    Raises FileNotFoundError (no manifest) or IntegrityError naming the file
    (for a chunk: its variable, chunk index and time steps) and both hashes.
    Files unchanged since their last check in this process are not hashed again.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: not a zonda snapshot (no manifest.json)")
    recorded = manifest.get("store_digests")
    manifest_path = directory / "manifest.json"
    if not isinstance(recorded, dict):
        raise IntegrityError(
            f"{manifest_path}: no store_digests (snapshot schema {manifest.get('schema_version')}, written by an older "
            f"zonda): its chunks cannot be verified; rebuild it with `zonda snapshot` (schema {SNAPSHOT_SCHEMA_VERSION})"
        )
    listing_path = directory / DIGESTS_FILENAME
    verify_file(listing_path, recorded, recorded_in=manifest_path)
    listing = read_json_file(listing_path, "the snapshot's digest listing")
    verify_tree(
        directory / DATA_DIRNAME, listing["files"], recorded_in=listing_path, describe=_store_file_describer(manifest)
    )
    return manifest


def _store_file_describer(manifest: dict[str, Any]):
    """``relative path -> "variable 'temperature', chunk (3, 0, 0, 0), time steps 12..15 (2000-01-04T00..)"``."""
    dims = manifest.get("dims", {})
    chunk_time = int(manifest.get("chunk_time") or 1)
    start = np.datetime64(manifest["time_range"]["start"]) if "time_range" in manifest else None
    steps = int(manifest.get("time_range", {}).get("steps", 0))

    def describe(name: str) -> str:
        parts = name.split("/")
        if len(parts) < 2 or parts[0] not in dims:
            return f"array {parts[0]!r}" if len(parts) > 1 else ""
        text = f"variable {parts[0]!r}"
        if parts[1] != "c" or not all(p.isdigit() for p in parts[2:]):
            return text + " metadata"
        index = tuple(int(p) for p in parts[2:])
        text += f", chunk {index}"
        if dims[parts[0]][:1] == ["time"] and index and start is not None:
            a, b = index[0] * chunk_time, min(steps, (index[0] + 1) * chunk_time) - 1
            first, last = (pd.Timestamp(start + i * TIME_STEP).isoformat() for i in (a, b))
            text += f", time steps {a}..{b} ({first} .. {last})"
        return text

    return describe


def input_key(params: Params, fingerprint: dict[str, Any]) -> str:
    """What the snapshot depends on: data params, the source's fingerprint (:mod:`zonda.data.fingerprint`) and
    the code's schema."""
    payload = {
        "data": params.data.model_dump(mode="json"),
        "source": fingerprint["digest"],
        "snapshot_schema": SNAPSHOT_SCHEMA_VERSION,
    }
    return canonical_json_hash(payload)


def select(ds: xr.Dataset, params: Params) -> xr.Dataset:
    """Variables, levels and the ``data.time_step`` steps of ``data.time`` (checked present by
    :func:`check_structure`), coarsened if asked. Lazy."""
    data = params.data
    names = list(data.variables) + list(data.static)
    out = ds[names]
    for name in data.static:
        if "time" in out[name].dims:
            out[name] = out[name].isel(time=0, drop=True)
    if "level" in out.dims:
        out = out.sel(level=np.asarray(data.levels, dtype=ds["level"].dtype))
        out = out.assign_coords(level=np.asarray(data.levels, dtype=np.int32))
        out["level"].attrs.update({"units": "hPa", "long_name": "pressure level", "standard_name": "air_pressure"})
    out = out.sel(time=selected_times(np.datetime64(data.time.start), np.datetime64(data.time.end), data.time_step_hours))
    factor = data.coarsen.factor
    if factor > 1:
        for dim in ("latitude", "longitude"):
            if out.sizes[dim] % factor:
                raise ValueError(f"data.coarsen.factor {factor} does not divide the {out.sizes[dim]} points of {dim}")
        out = out.coarsen(latitude=factor, longitude=factor).mean(keep_attrs=True)
    for name in names:
        out[name] = out[name].astype(np.float32)
        out[name].attrs = _cf_attrs(name, out[name].attrs)
    for var in out.variables.values():
        var.encoding = {}  # the source's chunks and codecs are not the snapshot's
    return out


def _cf_attrs(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    meta = variable(name)
    cf = {"units": meta.units, "long_name": meta.long_name}
    if meta.standard_name:
        cf["standard_name"] = meta.standard_name
    keep = {k: v for k, v in attrs.items() if k not in ("units", "long_name", "standard_name")}
    return {**keep, **cf}


def _coordinate_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds["latitude"].attrs.update({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"})
    ds["longitude"].attrs.update({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"})
    ds["time"].attrs.update({"standard_name": "time", "long_name": "valid time"})
    return ds


def _block_steps(ds: xr.Dataset, chunk_time: int) -> int:
    per_step = sum(
        int(np.prod([ds.sizes[d] for d in da.dims if d != "time"])) * da.dtype.itemsize
        for da in ds.data_vars.values()
        if "time" in da.dims
    )
    chunks = max(1, _BLOCK_BYTES // max(1, per_step * chunk_time))
    return chunk_time * chunks


class _ContentHasher:
    """sha256 per variable in time order, combined with the coordinates: chunking-independent."""

    def __init__(self) -> None:
        self._per_var: dict[str, hashlib._Hash] = {}
        self._meta: dict[str, tuple] = {}

    def update(self, name: str, da: xr.DataArray) -> None:
        h = self._per_var.setdefault(name, hashlib.sha256())
        h.update(np.ascontiguousarray(np.asarray(da.values)).astype("<f4", copy=False).tobytes())

    def set_meta(self, name: str, da: xr.DataArray, shape: tuple[int, ...]) -> None:
        self._meta[name] = (tuple(da.dims), str(da.dtype), shape)

    def digest(self, ds: xr.Dataset) -> str:
        final = hashlib.sha256()
        for coord in sorted(ds.coords):
            values = np.asarray(ds[coord].values)
            if values.dtype.kind == "M":
                values = values.astype("datetime64[ns]").astype("<i8")
            final.update(f"coord:{coord}:{values.dtype.str}:{values.shape}".encode())
            final.update(np.ascontiguousarray(values).tobytes())
        for name in sorted(self._per_var):
            dims, dtype, shape = self._meta[name]
            final.update(f"var:{name}:{dims}:{dtype}:{shape}:".encode())
            final.update(self._per_var[name].digest())
        return final.hexdigest()


def _encoding(ds: xr.Dataset, chunk_time: int) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, da in ds.data_vars.items():
        enc[name] = {"chunks": tuple(min(chunk_time, da.sizes[d]) if d == "time" else da.sizes[d] for d in da.dims)}
    enc["time"] = {"units": "hours since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}
    return enc


def build_snapshot(
    params: Params, out_dir: str | os.PathLike[str], *, progress: bool = True, fingerprint: dict[str, Any] | None = None
) -> SnapshotResult:
    """Writes the snapshot of ``params.data`` to ``out_dir`` (atomically); no-op if it is already there.

    ``fingerprint`` is the source's (:func:`zonda.data.fingerprint.source_fingerprint`, taken here when not
    given); it goes into the input key and the manifest (``source.fingerprint``).

    Raises SnapshotValidationError (bad source data), SourceError (unreachable
    or unreadable source) or ValueError (selection impossible), leaving nothing
    at ``out_dir``.
    """
    out_dir = Path(out_dir)
    params = dvc_source.pin(params)  # a dvc source's rev -> commit, unless the run pinned it already
    fingerprint = fingerprint or source_fingerprint(params.data)
    key = input_key(params, fingerprint)
    existing = read_manifest(out_dir)
    if existing and existing.get("input_key") == key and (out_dir / DATA_DIRNAME).exists():
        log.info("snapshot %s already at %s: nothing to do", existing["snapshot_id"], out_dir)
        return SnapshotResult(out_dir, existing, reused=True)

    data = params.data
    cache_dir = Path(params.runtime.output_root) / "cache"
    source, truth_states = split_states(normalise_grid(open_source(data, cache_dir, progress=progress)))
    dvc_lineage = dvc_source.materialise(data.source, cache_dir).revision.record() if data.source.kind == "dvc" else None
    start, end = np.datetime64(data.time.start, "ns"), np.datetime64(data.time.end, "ns")
    check_structure(source, data.variables, data.static, data.levels, start, end, step_hours=data.time_step_hours)
    selected = _coordinate_attrs(select(source, params))
    times = selected["time"].values
    forcings = forcing_dataset(data.forcings, times, selected["latitude"].values, selected["longitude"].values)
    snapshot = xr.merge([selected, forcings], compat="override", join="exact")
    snapshot.attrs = {
        "title": f"zonda snapshot ({params.name})",
        "Conventions": "CF-1.8",
        "source_kind": data.source.kind,
        "source_path": data.source.path or "",
        "zonda_version": code_version()["zonda"] or "",
    }

    source_label = f"data.source.path {data.source.path!r}" if data.source.path else f"{data.source.kind} source"
    source_offset = int(np.searchsorted(source["time"].values, times[0]))

    def write(tmp: Path) -> dict[str, Any]:
        content_hash = _write_zarr(
            snapshot, tmp / DATA_DIRNAME, data.chunk_time, data.variables, progress,
            source_label=source_label, source_offset=source_offset,
        )
        listing = write_json_atomic(
            tmp / DIGESTS_FILENAME, {"root": DATA_DIRNAME, "algorithm": "sha256", "files": tree_entries(tmp / DATA_DIRNAME)}
        )
        manifest = _manifest(params, snapshot, key, content_hash)
        manifest["source"]["fingerprint"] = fingerprint
        if truth_states is not None:
            manifest[TRUTH_STATES_KEY] = write_truth_states(truth_states, tmp)
        manifest["store_digests"] = {"file": DIGESTS_FILENAME, **file_entry(listing)}
        if dvc_lineage:
            manifest["source"]["dvc"] = dvc_lineage  # repo, rev, commit, path, md5 of what was read
        return manifest

    manifest = write_output(params, out_dir, write)
    log.info("snapshot %s written to %s", manifest["snapshot_id"], out_dir)
    return SnapshotResult(out_dir, manifest, reused=False)


def _write_zarr(
    ds: xr.Dataset, path: Path, chunk_time: int, checked: list[str], progress: bool, *, source_label: str, source_offset: int
) -> str:
    """Streams ``ds`` into a new zarr v3 store block by block; validates and hashes on the way.

    A block the source cannot give (corrupt chunk) raises ChunkReadError naming
    ``source_label``, the variable and the time steps (counted from the source's
    first step: ``ds`` starts at the source's step ``source_offset``).
    """
    timed = [n for n, da in ds.data_vars.items() if "time" in da.dims]
    static = [n for n in ds.data_vars if n not in timed]
    hasher = _ContentHasher()
    for name in ds.data_vars:
        hasher.set_meta(name, ds[name], tuple(ds[name].shape))
    static_block = load_block(ds[static], store=source_label) if static else None
    if static_block is not None:
        check_values(static_block, static)
        for name in static:
            hasher.update(name, static_block[name])
    skeleton = ds.chunk({d: (chunk_time if d == "time" else -1) for d in ds.dims})
    if static_block is not None:
        for name in static:
            skeleton[name] = static_block[name]
    skeleton.to_zarr(path, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=_encoding(ds, chunk_time))
    n_time = ds.sizes["time"]
    step = _block_steps(ds, chunk_time)
    bar = tqdm(total=n_time, desc="snapshot", unit="step", disable=not progress)
    for a in range(0, n_time, step):
        b = min(n_time, a + step)
        block = load_block(ds[timed].isel(time=slice(a, b)), store=source_label, offset=source_offset + a)
        check_values(block, [n for n in timed if n in checked])
        for name in timed:
            hasher.update(name, block[name])
        block.drop_vars([c for c in block.coords if c != "time" and "time" not in block[c].dims]).to_zarr(
            path, region={"time": slice(a, b)}, zarr_format=3, consolidated=False
        )
        bar.update(b - a)
    bar.close()
    consolidate_zarr(path)  # plain xr.open_zarr(path) opens it without a warning
    return hasher.digest(ds)


def _manifest(params: Params, ds: xr.Dataset, key: str, content_hash: str) -> dict[str, Any]:
    times = pd.DatetimeIndex(ds["time"].values)
    return {
        "kind": "zonda.snapshot",
        "schema_version": SNAPSHOT_SCHEMA_VERSION,
        "snapshot_id": f"sha256:{content_hash}",
        "content_hash": content_hash,
        "input_key": key,
        "source": {
            "kind": params.data.source.kind,
            "path": params.data.source.path,
            "heldsuarez": params.data.heldsuarez.model_dump(mode="json") if params.data.source.kind == "heldsuarez" else None,
        },
        "selection": {
            "variables": list(params.data.variables),
            "levels": list(params.data.levels),
            "time": params.data.time.as_str(),
            "time_step": params.data.time_step,
            "coarsen": params.data.coarsen.factor,
            "static": list(params.data.static),
            "forcings": list(params.data.forcings),
        },
        "splits": {k: getattr(params.data.splits, k).as_str() for k in ("train", "validation", "test")},
        "shapes": {name: list(ds[name].shape) for name in ds.data_vars},
        "dims": {name: list(ds[name].dims) for name in ds.data_vars},
        "time_range": {"start": times[0].isoformat(), "end": times[-1].isoformat(), "steps": len(times)},
        "grid": {
            "n_latitude": int(ds.sizes["latitude"]),
            "n_longitude": int(ds.sizes["longitude"]),
            "latitude_range": [float(ds["latitude"][0]), float(ds["latitude"][-1])],
        },
        "chunk_time": params.data.chunk_time,
        "zarr_format": 3,
        "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


__all__ = ["SnapshotResult", "build_snapshot", "open_snapshot", "input_key", "SourceError"]
