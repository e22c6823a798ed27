"""Artifact files: atomic writes, sha256 digests and JSON reads with errors that name the file.

Every stage writes through :func:`atomic_path` / :func:`atomic_dir`: the output
is built under a temporary sibling name and renamed into place only when it is
complete. A reader (the next pipeline step, DVC, the KFP UI) therefore sees the
old artifact or the complete new one, never a half-written one, and a failed
write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

PathLike = str | os.PathLike[str]

_READ_BLOCK = 1 << 20


def _temporary_sibling(target: Path) -> Path:
    """A unique hidden name beside ``target`` that keeps its suffix (writers infer formats from it)."""
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}{target.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move_into_place(tmp: Path, target: Path) -> None:
    """Renames ``tmp`` onto ``target``; an existing directory is swapped aside first, then deleted."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (nothing exists there yet); moves it onto ``path`` on success.

    The writer may create a file or a directory (a zarr store) at the yielded
    path. The parent directory is created if needed. On an exception the
    temporary is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        yield tmp
        _move_into_place(tmp, target)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, but yields an empty directory already created."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp


def write_bytes_atomic(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Writes ``data`` to ``path`` atomically (``fsync`` first for files that must survive a crash)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, payload: Any, *, indent: int = 2) -> Path:
    """Writes ``payload`` as JSON (non-JSON values via ``str``) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=indent, default=str) + "\n")


def default_file_mode() -> int:
    """The mode a new file gets from ``open`` under this process's umask (``0o666 & ~umask``).

    For writers that create files ``0600`` (safetensors, ``tempfile``) whose
    output a later stage, maybe running as another user, must read. The umask
    is read from /proc without changing it (``os.umask`` would, briefly, for
    every thread).
    """
    umask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except OSError:
        pass
    return 0o666 & ~umask


def file_sha256(path: PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_READ_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def read_json_file(path: PathLike, what: str, error: type[Exception] = ValueError) -> Any:
    """The parsed JSON at ``path``; ``error`` names the file when it is missing or not JSON.

    ``what`` says what the file should have been, e.g. ``"not a graph directory"``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: not found ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None
