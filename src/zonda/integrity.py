"""Verifying an artifact's files against the digests recorded when it was written.

A stage records, in its manifest, the sha256 and size of what it wrote: the
whole file for small artifacts (``statistics.nc``), every file of the store for
a zarr snapshot (a digest listing beside the manifest, whose own sha256 is in
the manifest). A later stage calls :func:`verify_file` / :func:`verify_tree`
before it trusts the artifact, so an edited, swapped or truncated file is
refused before any compute, with an error naming the file and both hashes,
instead of being used under the lineage hash of the original.

Checking a tree compares the file list and sizes first (a ``stat`` per file),
then the sha256 of every file, hashed on a few threads (hashlib releases the
GIL). A tree whose files have not changed since they were last verified in
this process (same size, mtime, ctime and inode each) is not hashed again.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from zonda.files import file_sha256

PathLike = str | os.PathLike[str]
Describe = Callable[[str], str]

_HASH_THREADS = 4
_verified: dict[str, tuple] = {}  # resolved tree root -> stat signature of its files when last verified
_verified_lock = threading.Lock()


class IntegrityError(ValueError):
    """An artifact's file differs from the digest recorded when it was written (edited, swapped or truncated)."""


def file_entry(path: PathLike) -> dict[str, int | str]:
    """``{"sha256": hex, "bytes": size}`` of a file, the form manifests record."""
    path = Path(path)
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def verify_file(path: PathLike, expected: dict, *, recorded_in: PathLike) -> None:
    """Raises IntegrityError unless the file at ``path`` has the recorded size and sha256.

    ``expected`` is a :func:`file_entry` dict read from ``recorded_in`` (named in the error).
    """
    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: not found, but {recorded_in} records it (sha256 {expected.get('sha256')})")
    actual = file_sha256(path)
    if actual != expected.get("sha256"):
        raise IntegrityError(
            f"{path}: sha256 {actual} is not the sha256 {expected.get('sha256')} recorded in {recorded_in} when it "
            f"was written ({path.stat().st_size} bytes now, {expected.get('bytes')} then): the file was changed "
            f"afterwards; rebuild it with the stage that wrote it"
        )


def tree_entries(root: PathLike) -> dict[str, dict[str, int | str]]:
    """``{relative posix path: file_entry}`` for every file under ``root``, sorted by path."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        entries = list(pool.map(file_entry, files))
    return {p.relative_to(root).as_posix(): e for p, e in zip(files, entries)}


def _signature(root: Path, names: list[str]) -> tuple:
    sig = []
    for name in names:
        st = (root / name).stat()
        sig.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(sig)


def verify_tree(
    root: PathLike,
    expected: dict[str, dict[str, int | str]],
    *,
    recorded_in: PathLike,
    describe: Describe | None = None,
) -> None:
    """Raises IntegrityError unless the files under ``root`` are exactly those of ``expected``, byte for byte.

    ``expected`` maps relative paths to :func:`file_entry` dicts, as recorded in
    ``recorded_in``. ``describe(relative_path)`` may add what a file holds (for a
    zarr chunk: variable, chunk index, time steps) to the error.
    """
    root = Path(root)
    what = describe or (lambda name: "")

    def label(name: str) -> str:
        extra = what(name)
        return f"{root / name}" + (f" ({extra})" if extra else "")

    if not root.is_dir():
        raise IntegrityError(f"{root}: not found, but {recorded_in} records {len(expected)} file(s) in it")
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    missing = sorted(set(expected) - set(present))
    if missing:
        raise IntegrityError(
            f"{label(missing[0])}: missing ({len(missing)} file(s) recorded in {recorded_in} are gone); rebuild it"
        )
    extra = sorted(set(present) - set(expected))
    if extra:
        raise IntegrityError(f"{label(extra[0])}: not written by the stage ({len(extra)} unrecorded file(s)); rebuild it")
    for name in present:
        size = (root / name).stat().st_size
        if size != expected[name].get("bytes"):
            raise IntegrityError(
                f"{label(name)}: {size} bytes with sha256 {file_sha256(root / name)}, but {recorded_in} records "
                f"{expected[name].get('bytes')} bytes with sha256 {expected[name].get('sha256')}: truncated or replaced "
                f"after it was written; rebuild it"
            )
    key = str(root.resolve())
    signature = _signature(root, present)
    with _verified_lock:
        if _verified.get(key) == signature:
            return
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        actual = list(pool.map(lambda name: file_sha256(root / name), present))
    for name, digest in zip(present, actual):
        if digest != expected[name].get("sha256"):
            raise IntegrityError(
                f"{label(name)}: sha256 {digest} is not the sha256 {expected[name].get('sha256')} recorded in "
                f"{recorded_in} when it was written: the file was changed afterwards; rebuild it"
            )
    with _verified_lock:
        _verified[key] = signature
