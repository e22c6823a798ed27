"""A source tracked in a DVC repository: ``data.source.kind: dvc`` with ``repo``, ``path`` and ``rev``.

Read through DVC's own filesystem (:class:`dvc.api.DVCFileSystem`), so any DVC
remote the repository uses (local, S3, GCS, SSH, ...) works, with credentials
from the environment as DVC reads them. The life of a dvc source in a run:

1. :func:`pin` resolves ``rev`` (a tag, a branch, a commit) to its commit once,
   at the start of the run, and writes it into ``data.source.commit``; every
   later read uses that commit, so a branch that moves mid-run changes nothing.
2. :func:`preflight` checks, without downloading data, that the revision exists,
   that ``path`` is tracked by DVC there and that its data can be had (from the
   local DVC cache or the remote); each failure names the repo, rev and path.
3. :func:`materialise` downloads the tracked data into ``<cache>/dvc/`` (once
   per commit and path), checks its DVC md5 against the one the repository
   records, and returns the local copy with its :class:`DvcRevision`, the
   lineage that goes into the snapshot manifest, MLflow and the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from zonda.data.sources import SourceError
from zonda.files import atomic_path, write_text_atomic
from zonda.params import FORMAT_SUFFIXES, Params, SourceParams
from zonda.provenance import canonical_json_hash

CHECKOUT_RECORD = "dvc-source.json"


class DvcSourceError(SourceError):
    """A dvc source cannot be read; the message names the repo, rev and path."""


@dataclass(frozen=True)
class DvcRevision:
    """What a dvc source resolved to: the lineage recorded with the snapshot.

    ``md5`` is DVC's content hash of ``path`` at ``commit``: a file's md5, or a
    directory's ``<md5>.dir`` (DVC's hash of its file listing).
    """

    repo: str
    rev: str
    commit: str
    path: str
    md5: str
    format: str
    remote: str | None

    def record(self) -> dict[str, Any]:
        return asdict(self)


def describe(source: SourceParams) -> str:
    """``repo ..., rev ..., path ...``: how every error names a dvc source."""
    commit = f" (commit {source.commit})" if source.commit else ""
    return f"data.source repo {source.repo!r}, rev {source.rev!r}{commit}, path {source.path!r}"


def _local_repo(repo: str) -> Path | None:
    """The repository as an absolute local path, or None when ``repo`` is a URL."""
    if "://" in repo or (":" in repo and not Path(repo).exists()):  # https://..., git@host:org/repo.git
        return None
    return Path(repo).expanduser().resolve()


@contextlib.contextmanager
def filesystem(source: SourceParams) -> Iterator[Any]:
    """DVC's filesystem of ``source.repo`` at ``source.commit`` (or ``source.rev`` before pinning), closed after."""
    fs = _open_filesystem(source)
    try:
        yield fs
    finally:
        fs.close()  # a cloned repository's temporary clone goes with it


def _open_filesystem(source: SourceParams) -> Any:
    from dvc.api import DVCFileSystem
    from dvc.scm import RevError

    rev = source.commit or source.rev
    local = _local_repo(str(source.repo))
    if local is not None and not local.is_dir():
        raise DvcSourceError(f"{describe(source)}: the repository {str(local)!r} does not exist")
    try:
        fs = DVCFileSystem(str(local or source.repo), rev=rev, remote=source.remote)
        fs.repo  # noqa: B018 - opens (clones) the repository now, so a bad URL or rev fails here
    except RevError:
        raise DvcSourceError(f"{describe(source)}: the repository has no revision {rev!r}") from None
    except Exception as exc:  # noqa: BLE001 - git/DVC raise many kinds; re-raised with the source named
        raise DvcSourceError(f"{describe(source)}: cannot open the repository: {type(exc).__name__}: {exc}") from None
    return fs


def resolve(source: SourceParams, fs: Any | None = None) -> DvcRevision:
    """The commit and DVC md5 of ``source`` (metadata only: nothing is downloaded).

    Raises DvcSourceError when the revision does not exist or ``path`` is not
    tracked by DVC at that revision.
    """
    if fs is None:
        with filesystem(source) as opened:
            return resolve(source, opened)
    commit = fs.repo.scm.resolve_rev(source.commit or str(source.rev))  # get_rev() is a local repo's HEAD
    path = str(source.path).strip("/")
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise DvcSourceError(f"{describe(source)}: no such path at commit {commit}") from None
    if "dvc_info" not in info:
        raise DvcSourceError(
            f"{describe(source)}: tracked by git, not by DVC, at commit {commit} (dvc add it, or read it by path)"
        )
    md5 = info["dvc_info"].get("md5") or ""
    return DvcRevision(
        repo=str(_local_repo(str(source.repo)) or source.repo),
        rev=str(source.rev),
        commit=commit,
        path=path,
        md5=md5,
        format=str(source.file_format),
        remote=source.remote,
    )


def pin(params: Params) -> Params:
    """``params`` with a dvc source's ``rev`` resolved to ``data.source.commit`` (and a local repo made absolute).

    Done once at the start of a run; other sources, and an already pinned one, are returned unchanged.
    """
    source = params.data.source
    if source.kind != "dvc" or source.commit:
        return params
    revision = resolve(source)
    raw = params.resolved_dict()
    raw["data"]["source"].update({"repo": revision.repo, "commit": revision.commit})
    return Params.model_validate(raw)


def preflight(source: SourceParams) -> DvcRevision:
    """Resolves ``source`` and checks its data can be had (local DVC cache or remote) without downloading it."""
    with filesystem(source) as fs:
        revision = resolve(source, fs)
        if revision.md5:  # a tracked output, or a file inside one; a sub-directory is checked by its download
            _check_available(source, fs, revision)
    return revision


def _check_available(source: SourceParams, fs: Any, revision: DvcRevision) -> None:
    repo = fs.repo
    if repo.cache.local.exists(revision.md5):
        return
    try:
        odb = repo.cloud.get_remote_odb(source.remote, hash_name="md5")
        if not odb.fs.exists(odb.path):  # a local or mounted remote that is not there, a bucket without objects
            raise FileNotFoundError(f"{odb.fs.unstrip_protocol(odb.path)} does not exist")
        present = odb.exists(revision.md5)
    except Exception as exc:  # noqa: BLE001 - no remote configured, unreachable host, refused credentials ...
        raise DvcSourceError(
            f"{describe(source)}: the data (md5 {revision.md5}) is not in the DVC cache and the DVC remote "
            f"cannot be reached: {type(exc).__name__}: {exc}"
        ) from None
    if not present:
        raise DvcSourceError(
            f"{describe(source)}: the data (md5 {revision.md5}) is neither in the DVC cache nor on the DVC remote "
            f"{odb.fs.unstrip_protocol(odb.path)!r} (was it dvc push-ed?)"
        )


def dvc_md5(path: str | os.PathLike[str]) -> str:
    """DVC's md5 of a local file, or ``<md5>.dir`` of a local directory (what ``dvc add`` would record)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, os.fspath(path)), os.fspath(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


@dataclass(frozen=True)
class DvcCheckout:
    path: Path  # the local copy of the tracked file or directory
    revision: DvcRevision


def materialise(source: SourceParams, cache_dir: str | os.PathLike[str]) -> DvcCheckout:
    """The source's data as a verified local copy under ``cache_dir/dvc`` (downloaded once per commit and path).

    The copy's DVC md5 is computed after the download and must equal the one
    the repository records; the revision returned carries it.
    """
    if not source.commit:
        raise ValueError(f"{describe(source)}: not pinned to a commit (zonda.data.dvc_source.pin)")
    key = canonical_json_hash({"repo": source.repo, "commit": source.commit, "path": str(source.path).strip("/")})[:20]
    home = Path(cache_dir) / "dvc" / key
    record_file = home / CHECKOUT_RECORD
    local = home / (Path(str(source.path).rstrip("/")).name or "data")
    if record_file.is_file() and local.exists():
        cached = json.loads(record_file.read_text()) | {"rev": str(source.rev), "remote": source.remote}
        return DvcCheckout(local, DvcRevision(**cached))
    with filesystem(source) as fs:
        revision = resolve(source, fs)
        if revision.md5:
            _check_available(source, fs, revision)
        with atomic_path(local) as tmp:  # nothing is left in the cache unless the whole copy checks out
            try:
                fs.get(revision.path, str(tmp), recursive=True)
            except Exception as exc:  # noqa: BLE001 - transfer errors of any remote
                raise DvcSourceError(f"{describe(source)}: download failed: {type(exc).__name__}: {exc}") from None
            got = dvc_md5(tmp)
            if revision.md5 and got != revision.md5:
                raise DvcSourceError(
                    f"{describe(source)}: the downloaded data has DVC md5 {got}, the repository records {revision.md5}"
                )
    revision = DvcRevision(**{**revision.record(), "md5": got})
    write_text_atomic(record_file, json.dumps(revision.record(), indent=2))
    return DvcCheckout(local, revision)


def data_files(checkout: DvcCheckout) -> str:
    """What the format's opener reads: the copy itself, or for netCDF/GRIB in a directory a glob of its files."""
    if checkout.revision.format == "zarr" or not checkout.path.is_dir():
        return str(checkout.path)
    suffixes = [s for s, f in FORMAT_SUFFIXES.items() if f == checkout.revision.format]
    for suffix in suffixes:
        if any(checkout.path.glob(f"*{suffix}")):
            return str(checkout.path / f"*{suffix}")
    raise DvcSourceError(
        f"data.source repo {checkout.revision.repo!r}, rev {checkout.revision.rev!r}, path {checkout.revision.path!r}: "
        f"the directory holds no {checkout.revision.format} file ({', '.join(suffixes)})"
    )
