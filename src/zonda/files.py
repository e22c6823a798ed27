"""Artifact files: atomic writes, sha256 digests and JSON reads with errors that name the file.

Every stage writes through :func:`atomic_path` / :func:`atomic_dir`: the output
is built under a temporary sibling name and renamed into place only when it is
complete. A reader (the next pipeline step, DVC, the KFP UI) therefore sees the
old artifact or the complete new one, never a half-written one, and a failed
write leaves nothing behind: the temporary is removed only after zarr's
in-flight writes have ended (zarr writes chunks concurrently on its own event
loop and keeps writing, re-creating directories, after one write has failed),
and a full disk is reported as :class:`DiskFullError` naming the target.

A temporary's name carries its owner (``.<name>.tmp-<pid>-<start>@<host>-<random>``);
a writer killed outright (kill -9, OOM) leaves it behind, and the next write of
the same target from this host removes it once that process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import psutil

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_READ_BLOCK = 1 << 20
_SETTLE_TIMEOUT_S = 60.0
_REMOVE_ATTEMPTS = 3


class DiskFullError(OSError):
    """No space left on the device while writing an artifact; the message names the artifact's path."""


def _owner() -> str:
    """``<pid>-<process start, s>@<host>``: who writes a temporary, so a later run can tell if it is gone."""
    me = psutil.Process()
    return f"{me.pid}-{int(me.create_time())}@{socket.gethostname()}"


def _temporary_sibling(target: Path, kind: str = "tmp", suffix: str | None = None) -> Path:
    """A unique hidden owner-tagged name beside ``target`` that keeps its suffix (writers infer formats from it)."""
    suffix = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.name}.{kind}-{_owner()}-{uuid.uuid4().hex[:8]}{suffix}")


def _sibling_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(target.name)}\.(?:tmp-(?P<pid>\d+)-(?P<start>\d+)@(?P<host>.+)-[0-9a-f]{{8}}{re.escape(target.suffix)}"
        rf"|old-(?P<opid>\d+)-(?P<ostart>\d+)@(?P<ohost>.+)-[0-9a-f]{{8}})$"
    )


def _process_alive(pid: int, start: int) -> bool:
    """Whether process ``pid`` that started at ``start`` (s since the epoch) still runs (not a reuse of its pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - start) < 2.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. AccessDenied: it exists, so assume it is the owner
        return True


def remove_stale_temporaries(target: PathLike) -> list[Path]:
    """Removes the temporaries of ``target`` left by writers on this host that no longer run; returns them.

    Temporaries of live writers and of other hosts (a shared volume) are left
    alone; those without an owner tag (older zonda) are reported in the log.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern, host, removed = _sibling_pattern(target), socket.gethostname(), []
    legacy = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-[0-9a-f]{{8}}")
    for entry in parent.iterdir():
        if not entry.name.startswith(f".{target.name}."):
            continue
        match = pattern.match(entry.name)
        if match is None:
            if legacy.match(entry.name):
                log.warning("%s: a temporary of %s without an owner tag (older zonda); remove it by hand if no "
                            "write is running", entry, target)
            continue
        pid, start, owner_host = (match["pid"] or match["opid"]), (match["start"] or match["ostart"]), (
            match["host"] or match["ohost"])
        if owner_host != host or _process_alive(int(pid), int(start)):
            continue
        log.warning("%s: removing a temporary of %s left by process %s, which no longer runs", entry, target, pid)
        _remove(entry)
        removed.append(entry)
    return removed


def _wait_for_zarr_writes(timeout: float = _SETTLE_TIMEOUT_S) -> None:
    """Waits until zarr's IO event loop has no task left, i.e. chunk writes still in flight after one failed.

    zarr (3.x) runs every store operation on one background event loop
    (``zarr.core.sync``); when one write of a batch fails, the others keep
    going and re-create their directories. Does nothing if zarr is not loaded.
    """
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    with contextlib.suppress(RuntimeError):
        if asyncio.get_running_loop() is loop:  # pragma: no cover - called from zarr's own loop
            return

    async def drain() -> None:
        me = asyncio.current_task()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not pending:
                return
            await asyncio.wait(pending, timeout=deadline - loop.time())

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout + 5.0)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_after_writes(path: Path) -> None:
    """Removes a failed write's temporary once no writer can re-create it."""
    for _ in range(_REMOVE_ATTEMPTS):
        _wait_for_zarr_writes()
        _remove(path)
        if not (path.exists() or path.is_symlink()):
            return
    log.warning("%s: could not remove this temporary (writes kept re-creating it)", path)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Renames ``tmp`` onto ``target``; an existing directory is swapped aside first, then deleted."""
    if target.is_dir() and not target.is_symlink():
        old = _temporary_sibling(target, "old", suffix="")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _free_bytes(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.1f} MiB free"
    except OSError:
        return "free space unknown"


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (nothing exists there yet); moves it onto ``path`` on success.

    The writer may create a file or a directory (a zarr store) at the yielded
    path. The parent directory is created if needed, and temporaries of
    ``path`` left by dead writers on this host are removed first. On an
    exception the temporary is removed (after zarr's in-flight writes end)
    and ``path`` is left untouched; a full disk raises DiskFullError naming ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = _temporary_sibling(target)
    try:
        yield tmp
        _move_into_place(tmp, target)
    except BaseException as exc:
        _remove_after_writes(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # also a DiskFullError of a file inside
            raise DiskFullError(
                errno.ENOSPC,
                f"{target}: no space left on the device while writing it ({_free_bytes(target.parent)} after "
                f"removing the partial write); nothing was changed at {target}. Free space there or write elsewhere",
            ) from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, but yields an empty directory already created."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp


def link_or_copy(src: PathLike, dst: PathLike) -> None:
    """Hard-links ``src`` at ``dst``, or copies it where a link cannot be made (another file system)."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


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


def write_netcdf_atomic(ds: Any, path: PathLike) -> Path:
    """Writes an xarray Dataset to the netCDF file ``path`` atomically (h5netcdf)."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


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
