"""Snapshots pushed to a DVC remote by content, and fetched back by snapshot ID.

With ``runtime.dvc_remote`` set, the snapshot stage of every run (``dvc repro``,
the KFP local runner, a cluster) calls :func:`push_snapshot`: the snapshot
directory becomes a DVC directory object (DVC's own object code, ``dvc_data``)
and goes to the remote in DVC 3's layout, so the remote is an ordinary DVC
remote::

    <remote>/files/md5/ab/cdef...             one object per file (by md5)
    <remote>/files/md5/ab/cdef....dir         the directory's listing (its DVC hash)
    <remote>/zonda/snapshots/<sha256>.json    index: snapshot ID -> the directory's .dir md5

The index lives in the remote itself, so any clone (or none: only the remote
URL and its credentials are needed) can :func:`fetch_snapshot` a past
snapshot by its ID. Two DVC hashes are kept: ``manifest.json``'s ``dvc.md5``
is the ``.dir`` md5 of the snapshot's data and params (everything but the
manifest, which cannot hold its own hash), and the index's ``md5`` that of the
whole directory as pushed. A fetch checks the whole directory's md5 file by
file, the manifest's snapshot ID and its ``dvc.md5``, so what comes back is
byte-identical to what was pushed, or nothing comes back.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zonda.files import atomic_dir
from zonda.params import Params
from zonda.provenance import MANIFEST_FILENAME, read_manifest, write_manifest

INDEX_DIR = ("zonda", "snapshots")
_SNAPSHOT_ID = re.compile(r"^(sha256:)?([0-9a-f]{64})$")


class SnapshotStoreError(RuntimeError):
    """A snapshot cannot be pushed or fetched; the message names the remote and the snapshot."""


def _is_name(spec: str) -> bool:
    """A bare word (``local``, ``storage``) names a DVC remote; anything else is a URL or a path."""
    return re.fullmatch(r"[A-Za-z0-9_\-]+", spec) is not None


def resolve_remote(spec: str, project: str | os.PathLike[str] | None = None) -> str:
    """The URL of ``runtime.dvc_remote``: a URL as is, a local path made absolute, a remote name looked up
    in the DVC project at ``project`` (default: the one around the working directory)."""
    if "://" in spec:
        return spec
    if not _is_name(spec):
        return str(Path(spec).expanduser().resolve())
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(os.fspath(project) if project else None) as repo:
            remotes = repo.config["remote"]
    except NotDvcRepoError:
        raise SnapshotStoreError(
            f"runtime.dvc_remote {spec!r} names a DVC remote, but {Path(project or '.').resolve()} is in no DVC "
            "project; give the remote's URL instead (s3://..., gs://..., a directory)"
        ) from None
    if spec not in remotes:
        raise SnapshotStoreError(
            f"runtime.dvc_remote {spec!r}: the DVC project has no such remote (it has: {', '.join(remotes) or 'none'})"
        )
    url = remotes[spec]["url"]
    return url if "://" in url else str(Path(url).resolve())


def pin(params: Params) -> Params:
    """``params`` with ``runtime.dvc_remote`` resolved to its URL (done once at the start of a run)."""
    spec = params.runtime.dvc_remote
    if spec is None:
        return params
    url = resolve_remote(spec)
    if url == spec:
        return params
    raw = params.resolved_dict()
    raw["runtime"]["dvc_remote"] = url
    return Params.model_validate(raw)


class _Remote:
    """A DVC remote by URL: its object database (files/md5) and the filesystem under it."""

    def __init__(self, url: str) -> None:
        from dvc.fs import get_cloud_fs
        from dvc_data.hashfile.db import get_odb

        cls, config, root = get_cloud_fs({}, url=url)
        self.url = url
        self.fs = cls(**config)
        self.root = root
        self.odb = get_odb(self.fs, self.fs.join(root, "files", "md5"), hash_name="md5")

    def index_path(self, snapshot_hex: str) -> str:
        return self.fs.join(self.root, *INDEX_DIR, f"{snapshot_hex}.json")


def _snapshot_hex(snapshot_id: str) -> str:
    match = _SNAPSHOT_ID.match(snapshot_id.strip())
    if not match:
        raise SnapshotStoreError(f"{snapshot_id!r} is not a snapshot ID (sha256:<64 hex digits>)")
    return match.group(2)


def _without_manifest(tree: Any) -> Any:
    """The directory listing less ``manifest.json``, digested: the md5 the manifest records."""
    from dvc_data.hashfile.tree import Tree

    content = Tree()
    for key, meta, hash_info in tree:
        if key != (MANIFEST_FILENAME,):
            content.add(key, meta, hash_info)
    content.digest()
    return content


def push_snapshot(directory: str | os.PathLike[str], remote_url: str) -> dict[str, Any]:
    """Pushes the snapshot at ``directory`` to the DVC remote at ``remote_url`` and indexes it by its ID.

    Writes ``dvc.md5`` (the ``.dir`` md5 of everything but the manifest) into
    the snapshot's ``manifest.json`` first, so the pushed manifest holds it.
    Objects already on the remote are not sent again. Returns the manifest.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import add_update_tree
    from dvc_data.hashfile.hash import hash_file
    from dvc_data.hashfile.transfer import transfer
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.fs.local import LocalFileSystem

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None or "snapshot_id" not in manifest:
        raise SnapshotStoreError(f"{directory}: not a zonda snapshot (no manifest.json with a snapshot_id)")
    snapshot_hex = _snapshot_hex(manifest["snapshot_id"])
    try:
        remote = _Remote(remote_url)
        local = LocalFileSystem()
        staging, _, tree = build(remote.odb, str(directory), local, "md5")
        content = _without_manifest(tree)
        if (manifest.get("dvc") or {}).get("md5") != content.hash_info.value:
            manifest["dvc"] = {"md5": content.hash_info.value}
            write_manifest(directory, manifest)
            manifest_path = str(directory / MANIFEST_FILENAME)
            meta, manifest_hash = hash_file(manifest_path, local, "md5")
            staging.add(manifest_path, local, manifest_hash.value, hardlink=False)
            tree = Tree()
            for key, entry_meta, hash_info in content:
                tree.add(key, entry_meta, hash_info)
            tree.add((MANIFEST_FILENAME,), meta, manifest_hash)
            tree.digest()
            tree = add_update_tree(staging, tree)
        result = transfer(staging, remote.odb, {tree.hash_info}, hardlink=False, shallow=False)
        if result.failed:
            raise SnapshotStoreError(f"{len(result.failed)} object(s) failed to upload")
        index = {
            "snapshot_id": manifest["snapshot_id"],
            "md5": tree.hash_info.value,
            "content_md5": content.hash_info.value,
            "nfiles": len(tree),
            "pushed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        remote.fs.makedirs(remote.fs.parent(remote.index_path(snapshot_hex)), exist_ok=True)
        remote.fs.pipe_file(remote.index_path(snapshot_hex), json.dumps(index, indent=2).encode())
    except SnapshotStoreError as exc:
        raise SnapshotStoreError(f"pushing snapshot {manifest['snapshot_id']} to DVC remote {remote_url!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any remote's transfer errors, re-raised with the remote named
        raise SnapshotStoreError(
            f"pushing snapshot {manifest['snapshot_id']} to DVC remote {remote_url!r}: {type(exc).__name__}: {exc}"
        ) from None
    return {**manifest, "dvc": {**manifest["dvc"], "remote": remote_url, "dir_md5": tree.hash_info.value}}


def lookup(snapshot_id: str, remote_url: str) -> dict[str, Any]:
    """The remote's index entry of ``snapshot_id`` (``md5``: the pushed directory's ``.dir`` md5)."""
    snapshot_hex = _snapshot_hex(snapshot_id)
    remote = _Remote(remote_url)
    path = remote.index_path(snapshot_hex)
    try:
        return json.loads(remote.fs.cat_file(path))
    except FileNotFoundError:
        raise SnapshotStoreError(
            f"snapshot sha256:{snapshot_hex} is not on DVC remote {remote_url!r} (no {'/'.join(INDEX_DIR)}/"
            f"{snapshot_hex}.json there)"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise SnapshotStoreError(f"DVC remote {remote_url!r}: cannot read the snapshot index: {type(exc).__name__}: {exc}") from None


def fetch_snapshot(snapshot_id: str, out_dir: str | os.PathLike[str], remote_url: str) -> dict[str, Any]:
    """Restores snapshot ``snapshot_id`` from the DVC remote into ``out_dir`` (atomically); returns its manifest.

    Raises SnapshotStoreError when the snapshot is not on the remote, or when
    what arrives does not hash to what was pushed (nothing is left at ``out_dir``).
    """
    from dvc_data.hashfile.checkout import checkout
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.fs.local import LocalFileSystem

    from zonda.data.dvc_source import dvc_md5

    wanted = f"sha256:{_snapshot_hex(snapshot_id)}"
    entry = lookup(wanted, remote_url)
    remote = _Remote(remote_url)
    where = f"snapshot {wanted} from DVC remote {remote_url!r} (.dir md5 {entry['md5']})"
    with atomic_dir(out_dir) as tmp:
        try:
            tree = Tree.load(remote.odb, HashInfo("md5", entry["md5"]))
            checkout(str(tmp), LocalFileSystem(), tree, remote.odb)
        except Exception as exc:  # noqa: BLE001 - missing objects, transfer errors
            raise SnapshotStoreError(f"fetching {where}: {type(exc).__name__}: {exc}") from None
        got = dvc_md5(tmp)
        if got != entry["md5"]:
            raise SnapshotStoreError(f"fetching {where}: the files arrived with .dir md5 {got}")
        manifest = read_manifest(tmp) or {}
        if manifest.get("snapshot_id") != wanted:
            raise SnapshotStoreError(f"fetching {where}: its manifest says snapshot {manifest.get('snapshot_id')}")
        if (manifest.get("dvc") or {}).get("md5") != _without_manifest(tree).hash_info.value:
            raise SnapshotStoreError(f"fetching {where}: its manifest's dvc.md5 does not match its data")
    return manifest
