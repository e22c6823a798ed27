"""What a source holds, told cheaply: the snapshot's cache key and ``manifest.source.fingerprint``.

A URL alone does not say what a store holds (ERA5T grows every day, and its
recent days are later overwritten by final ERA5), so the snapshot is keyed by
the source's own metadata and object versions, never by reading its data:

- zarr (local path or any fsspec URL): the sha256 of the store's metadata
  documents (root ``.zmetadata``/``.zgroup``/``.zattrs``/``zarr.json``, which
  hold the consolidated metadata when there is one, and the ``.zarray``/
  ``.zattrs``/``zarr.json`` of every array the snapshot reads: shapes, chunk
  grids, codecs, attributes), plus the listing of those arrays' objects
  (each chunk's name, size and the version marker the filesystem gives:
  ETag/md5Hash/generation on object stores, mtime locally). Of a variable
  with a time dimension only the chunks holding the selected steps
  (``data.time``, ``data.time_step``) are taken: asked for one by one
  (``fs.info``, :data:`HEAD_CONCURRENCY` at a time) when that takes fewer
  round trips than listing the array (1000 objects per request on an object
  store), else the array's listing filtered to them; either way the same
  entries, a chunk not written recorded as absent. A chunk rewritten inside
  the selection changes its entry; a grown store changes its arrays'
  metadata (their shape). Static fields and coordinates are listed whole; an
  array the snapshot does not read (after ``data.source.rename`` and the
  usual dim aliases) is neither listed nor read.
- netCDF/GRIB files (a path or glob, or one fsspec URL): each file's name, size
  and version marker, plus the sha256 of its bytes for local files up to
  :data:`HASH_LOCAL_FILES_UP_TO` bytes (64 MiB: a fraction of a second).
- Held-Suarez: generated from ``data.heldsuarez``, already in the key.
- dvc: ``data.source.commit`` pins the data (DVC verifies its md5 on download).
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from zonda.data.locations import SourceError, check_fsspec_backend
from zonda.data.time_steps import selected_times
from zonda.params import DataParams, resolve_env_references
from zonda.provenance import canonical_json_hash
from zonda.variables import DIM_ALIASES

HASH_LOCAL_FILES_UP_TO = 64 * 2**20
#: Chunk HEAD requests in flight at once; an object store lists this many objects per request.
HEAD_CONCURRENCY = 16
LISTING_PAGE = 1000
#: Filesystems without requests: a chunk costs a stat whether asked for or listed, so the selected ones are asked for.
IN_PROCESS_PROTOCOLS = {"file", "local", "memory"}

# The fields of an fsspec info dict that change when an object is rewritten, most specific first.
_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "generation", "version_id", "mtime", "LastModified", "last_modified",
                   "updated", "created")
_ROOT_METADATA = (".zmetadata", ".zgroup", ".zattrs", "zarr.json")
_ARRAY_METADATA = (".zarray", ".zattrs", "zarr.json")
_COORDINATES = ("time", "latitude", "longitude", "level")


class FingerprintError(SourceError):
    """The source's metadata cannot be listed; the message names data.source.path."""


class SourceChangedError(FingerprintError):
    """The source's fingerprint differs from the one taken when the pipeline was submitted."""


def source_fingerprint(data: DataParams) -> dict[str, Any]:
    """``{"method": ..., "digest": sha256 hex, ...counts}`` of ``data.source`` (see the module docstring)."""
    source = data.source
    if source.kind == "heldsuarez":
        return {"method": "params (data.heldsuarez)", "digest": canonical_json_hash(data.heldsuarez.model_dump(mode="json"))}
    if source.kind == "dvc":
        pinned = {"repo": source.repo, "commit": source.commit, "path": source.path}  # DVC checks the md5 on download
        return {"method": "dvc repo, commit and path", "digest": canonical_json_hash(pinned)}
    check_fsspec_backend(str(source.path))
    options = resolve_env_references(source.storage_options, "data.source.storage_options")  # ${env:NAME} credentials
    try:
        if source.kind == "zarr":
            return zarr_fingerprint(
                str(source.path), options, arrays=_read_names(data), rename=source.rename,
                variables=set(data.variables),
                steps=selected_times(np.datetime64(data.time.start), np.datetime64(data.time.end), data.time_step_hours),
            )
        return files_fingerprint(str(source.path), options)
    except FingerprintError:
        raise
    except (OSError, ValueError) as exc:
        raise FingerprintError(
            f"data.source.path {source.path!r}: cannot list the source to fingerprint it: {type(exc).__name__}: {exc}"
        ) from None


def submitted_fingerprint(data: DataParams, submitted_digest: str) -> dict[str, Any]:
    """The source's fingerprint now, checked against ``submitted_digest`` (the digest the pipeline was given when
    it was submitted, so that KFP's cache key of the snapshot task holds it); recorded as ``submitted_digest``.

    Raises SourceChangedError naming the source when the two differ: the store changed between the submission
    and the snapshot task, and what the task would read is not what its cache key says.
    """
    fingerprint = source_fingerprint(data)
    if fingerprint["digest"] != submitted_digest:
        raise SourceChangedError(
            f"{_source_label(data)} changed between the pipeline's submission and its snapshot task: its fingerprint "
            f"was {submitted_digest[:16]} when submitted and is {fingerprint['digest'][:16]} now "
            f"({fingerprint['method']}); submit the pipeline again so that the snapshot's cache key is that of what it reads"
        )
    return {**fingerprint, "submitted_digest": submitted_digest}


def _source_label(data: DataParams) -> str:
    source = data.source
    if source.kind == "heldsuarez":
        return "the Held-Suarez source (data.heldsuarez)"
    if source.kind == "dvc":
        return f"data.source (dvc repo {source.repo!r}, path {source.path!r})"
    return f"data.source.path {source.path!r}"


def _read_names(data: DataParams) -> set[str]:
    """The WB2 names the snapshot reads: variables, static fields and coordinates."""
    return set(data.variables) | set(data.static) | set(_COORDINATES)


def _version(info: dict[str, Any]) -> list[str] | None:
    for field in _VERSION_FIELDS:
        value = info.get(field)
        if value is not None:
            # a time as a POSIX timestamp: a listing and an info call may give one as a float, the other as a datetime
            return [field, str(value.timestamp() if isinstance(value, datetime) else value)]
    return None


def zarr_fingerprint(
    path: str,
    storage_options: dict[str, Any],
    *,
    arrays: set[str],
    rename: dict[str, str] | None = None,
    variables: set[str] | None = None,
    steps: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fingerprint of a zarr store: its metadata documents' bytes and the objects of the ``arrays`` read.

    ``arrays`` are WB2 names; a store's array is read when its name, after
    ``rename`` and the dim aliases, is one of them. With ``steps`` (the
    selected times, datetime64 (step,)), of each of ``variables`` (WB2 names)
    that has a time dimension only the chunks holding those steps are taken.
    """
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    root = root.rstrip("/")
    fs.invalidate_cache(root)  # an object store's filesystem caches listings for the life of the process
    if not fs.isdir(root):
        raise FingerprintError(f"data.source.path {path!r}: no such zarr store")
    rename = rename or {}
    children = [info["name"].rstrip("/").rsplit("/", 1)[-1] for info in fs.ls(root, detail=True) if info["type"] == "directory"]
    read = sorted(c for c in children if DIM_ALIASES.get(rename.get(c, c), rename.get(c, c)) in arrays)
    wanted = [f"{root}/{name}" for name in _ROOT_METADATA]
    wanted += [f"{root}/{array}/{name}" for array in read for name in _ARRAY_METADATA]
    documents = fs.cat(wanted, on_error="omit")  # {path: bytes} of those that exist
    metadata = {_relative(p, root): hashlib.sha256(documents[p]).hexdigest() for p in sorted(documents)}
    if not metadata:
        raise FingerprintError(f"data.source.path {path!r}: no zarr metadata ({', '.join(_ROOT_METADATA)}) found")
    name_of = {c: DIM_ALIASES.get(rename.get(c, c), rename.get(c, c)) for c in read}
    time_array = next((c for c in read if name_of[c] == "time"), None)
    time_index = None
    if steps is not None and time_array is not None and variables:
        root_v3 = json.loads(documents.get(f"{root}/zarr.json", b"{}"))
        consolidated = f"{root}/.zmetadata" in documents or bool(root_v3.get("consolidated_metadata"))
        time_index = _selected_indices(fs, root, time_array, steps, consolidated=consolidated)
    objects = []
    listed = asked = 0
    for array in read:
        grid = _chunk_grid(documents, root, array) if time_index is not None and name_of[array] in variables else None
        if grid is None or "time" not in grid.dims:
            for name, info in sorted(fs.find(f"{root}/{array}", detail=True).items()):
                objects.append([_relative(name, root), info.get("size"), _version(info)])
            listed += 1
            continue
        keys = grid.keys({grid.dims.index("time"): sorted({int(i) // grid.chunks[grid.dims.index("time")] for i in time_index})})
        entries = _entries(fs, root, array, keys, total=grid.count)
        objects += entries
        asked += len(entries)
    return {
        "method": "zarr metadata + objects of the selected steps",
        "digest": canonical_json_hash({"metadata": metadata, "objects": objects}),
        "metadata_documents": len(metadata),
        "arrays": read,
        "objects": len(objects),
        "arrays_listed_whole": listed,
        "selected_chunks": asked,
    }


class _ChunkGrid:
    """An array's chunk grid and chunk-key encoding, from its zarr v2 or v3 metadata."""

    def __init__(self, *, shape: list[int], chunks: list[int], dims: list[str], prefix: str, separator: str) -> None:
        self.shape, self.chunks, self.dims, self.prefix, self.separator = shape, chunks, dims, prefix, separator

    @property
    def count(self) -> int:
        return math.prod(-(-n // c) for n, c in zip(self.shape, self.chunks))

    def keys(self, chosen: dict[int, list[int]]) -> list[str]:
        """The chunk keys (relative to the array) of every chunk whose index along axis ``a`` is in ``chosen[a]``."""
        ranges = [chosen.get(a, range(-(-n // c))) for a, (n, c) in enumerate(zip(self.shape, self.chunks))]
        return [self.prefix + self.separator.join(str(i) for i in index) for index in itertools.product(*ranges)]


def _chunk_grid(documents: dict[str, bytes], root: str, array: str) -> _ChunkGrid | None:
    """The chunk grid of ``array`` from its metadata (None when it has none this module understands)."""
    v3 = documents.get(f"{root}/{array}/zarr.json")
    if v3 is not None:
        meta = json.loads(v3)
        grid, encoding = meta.get("chunk_grid", {}), meta.get("chunk_key_encoding", {"name": "default"})
        if grid.get("name") != "regular" or not meta.get("dimension_names"):
            return None
        default = encoding.get("name") == "default"
        separator = encoding.get("configuration", {}).get("separator", "/" if default else ".")
        return _ChunkGrid(shape=meta["shape"], chunks=grid["configuration"]["chunk_shape"], dims=meta["dimension_names"],
                          prefix=f"c{separator}" if default else "", separator=separator)
    v2 = documents.get(f"{root}/{array}/.zarray")
    attrs = documents.get(f"{root}/{array}/.zattrs")
    if v2 is None or attrs is None:
        return None
    meta, dims = json.loads(v2), json.loads(attrs).get("_ARRAY_DIMENSIONS")
    if not dims:
        return None
    return _ChunkGrid(shape=meta["shape"], chunks=meta["chunks"], dims=dims, prefix="",
                      separator=meta.get("dimension_separator") or ".")


def _selected_indices(fs: Any, root: str, time_array: str, steps: np.ndarray, *, consolidated: bool) -> np.ndarray:
    """Indices (step,) into the store's time axis of the selected ``steps`` that it holds (decoded by xarray)."""
    import xarray as xr  # the time coordinate only, decoded as the snapshot decodes it

    ds = xr.open_zarr(fs.get_mapper(root), consolidated=consolidated, chunks=None)
    times = ds[time_array].values.astype("datetime64[ns]")  # (time,)
    index = np.searchsorted(times, steps)  # (step,)
    inside = index < times.size
    index, wanted = index[inside], steps[inside]
    return index[times[index] == wanted]  # a step the store lacks reads nothing (validation names it)


def _entries(fs: Any, root: str, array: str, keys: list[str], *, total: int) -> list[list[Any]]:
    """``[name, size, version]`` of each chunk key of ``array`` (size and version None when not written): asked
    for one by one on a local or in-memory filesystem (a stat each, where a listing stats every object) and on
    a remote store when that takes fewer round trips than listing the array's ``total`` chunks, else listed."""
    names = [f"{root}/{array}/{key}" for key in keys]
    in_process = bool(IN_PROCESS_PROTOCOLS & set(np.atleast_1d(fs.protocol)))
    if in_process or -(-len(names) // HEAD_CONCURRENCY) < -(-total // LISTING_PAGE):
        with ThreadPoolExecutor(HEAD_CONCURRENCY) as pool:
            infos = dict(zip(names, pool.map(lambda name: _info_or_none(fs, name), names)))
    else:
        listing = fs.find(f"{root}/{array}", detail=True)
        infos = {name: listing.get(name) for name in names}
    return [
        [_relative(name, root), info.get("size") if info else None, _version(info) if info else None]
        for name, info in sorted(infos.items())
    ]


def _info_or_none(fs: Any, name: str) -> dict[str, Any] | None:
    try:
        return fs.info(name)
    except FileNotFoundError:
        return None


def _relative(name: str, root: str) -> str:
    return name[len(root):].lstrip("/") if name.startswith(root) else name


def files_fingerprint(path: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """Fingerprint of netCDF/GRIB files (a local path or glob, or one fsspec URL): name, size, version, local sha256."""
    if "://" not in path:
        files = sorted(glob.glob(path))
        if not files:
            raise FingerprintError(f"data.source.path {path!r}: no file matches")
        entries = [_local_file_entry(Path(f)) for f in files]
    else:
        fs, name = fsspec.core.url_to_fs(path, **(storage_options or {}))
        fs.invalidate_cache(name)
        info = fs.info(name)
        entries = [[path, info.get("size"), _version(info), None]]
    hashed = sum(1 for e in entries if e[3])
    return {
        "method": f"file size + version, sha256 of local files up to {HASH_LOCAL_FILES_UP_TO // 2**20} MiB",
        "digest": canonical_json_hash({"files": entries}),
        "files": len(entries),
        "sha256_files": hashed,
    }


def _local_file_entry(path: Path) -> list[Any]:
    stat = path.stat()
    digest = None
    if stat.st_size <= HASH_LOCAL_FILES_UP_TO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        digest = h.hexdigest()
    # with the bytes hashed, the mtime would only make a touched file look changed
    version = None if digest else ["mtime_ns", str(stat.st_mtime_ns)]
    return [str(path), stat.st_size, version, digest]
