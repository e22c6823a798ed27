"""What a source holds, told cheaply: the snapshot's cache key and ``manifest.source.fingerprint``.

A URL alone does not say what a store holds (ERA5T grows every day, and its
recent days are later overwritten by final ERA5), so the snapshot is keyed by
the source's own metadata and object versions, never by reading its data:

- zarr (local path or any fsspec URL): the sha256 of the store's metadata
  documents (root ``.zmetadata``/``.zgroup``/``.zattrs``/``zarr.json``, which
  hold the consolidated metadata when there is one, and the ``.zarray``/
  ``.zattrs``/``zarr.json`` of every array the snapshot reads: shapes, chunk
  grids, codecs, attributes), plus the listing of those arrays' objects
  (``fs.find(detail=True)``: each chunk's name, size and the version marker the
  filesystem gives: ETag/md5Hash/generation on object stores, mtime locally).
  A listing costs one request per 1000 objects on an object store; an array
  the snapshot does not read (after ``data.source.rename`` and the usual dim
  aliases) is neither listed nor read.
- netCDF/GRIB files (a path or glob, or one fsspec URL): each file's name, size
  and version marker, plus the sha256 of its bytes for local files up to
  :data:`HASH_LOCAL_FILES_UP_TO` bytes (64 MiB: a fraction of a second).
- Held-Suarez: generated from ``data.heldsuarez``, already in the key.
- dvc: ``data.source.commit`` pins the data (DVC verifies its md5 on download).
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Any

import fsspec

from zonda.data.locations import SourceError, check_fsspec_backend
from zonda.params import DataParams, resolve_env_references
from zonda.provenance import canonical_json_hash
from zonda.variables import DIM_ALIASES

HASH_LOCAL_FILES_UP_TO = 64 * 2**20

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
            return zarr_fingerprint(str(source.path), options, arrays=_read_names(data), rename=source.rename)
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
        if info.get(field) is not None:
            return [field, str(info[field])]
    return None


def zarr_fingerprint(
    path: str, storage_options: dict[str, Any], *, arrays: set[str], rename: dict[str, str] | None = None
) -> dict[str, Any]:
    """Fingerprint of a zarr store: its metadata documents' bytes and the object listing of the ``arrays`` read.

    ``arrays`` are WB2 names; a store's array is read when its name, after
    ``rename`` and the dim aliases, is one of them.
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
    objects = []
    for array in read:
        for name, info in sorted(fs.find(f"{root}/{array}", detail=True).items()):
            objects.append([_relative(name, root), info.get("size"), _version(info)])
    return {
        "method": "zarr metadata + object listing",
        "digest": canonical_json_hash({"metadata": metadata, "objects": objects}),
        "metadata_documents": len(metadata),
        "arrays": read,
        "objects": len(objects),
    }


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
