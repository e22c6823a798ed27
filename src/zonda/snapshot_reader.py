"""Reading a snapshot: its grid and time coordinate, and stacked time slices of its ``data.zarr``.

:func:`read_grid` reads a snapshot's metadata (times, latitudes, longitudes,
levels, snapshot ID). :class:`SnapshotReader` reads states ``(T, G, C)`` and
forcings ``(T, G, F)`` of time indices ``start:stop`` and the static fields
``(G, S)``, in physical units, with ``G = n_lat * n_lon`` row-major and
channels in :class:`~zonda.channels.ChannelLayout` order. Forcings are
broadcast to the grid: ``(time,)`` fields to every point, ``(time, longitude)``
fields along latitude.

The store and its arrays are opened once per process (a DataLoader worker
reopens them), and the decoded time chunks a read touches stay in a bounded
LRU cache (:data:`DEFAULT_CACHE_BYTES` per process), so each chunk is decoded
once rather than once per sample (a chunk of 8 steps serves ~8 samples).
Nothing is loaded ahead of use. Training (its forecast windows) and evaluation
(its initial states and forcings) read snapshots through it.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from zonda.channels import ChannelLayout, stack_forcings, stack_static
from zonda.provenance import read_manifest
from zonda.snapshot import DATA_DIRNAME, open_snapshot
from zonda.variables import variable

try:  # zarr 3: run many chunk reads concurrently on its event loop
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - zarr 2
    _zarr_sync = None



class SnapshotReadError(ValueError):
    """A snapshot cannot be read as asked (not a zonda snapshot, a variable or level missing, wrong dims, time not
    increasing); the message names the store or file."""


class ChunkCache:
    """A byte-bounded LRU of decoded arrays (the reader's time chunks)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> np.ndarray:
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Any, value: np.ndarray) -> None:
        if key in self._items:
            self.nbytes -= self._items.pop(key).nbytes
        self._items[key] = value
        self.nbytes += value.nbytes
        while self.nbytes > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes


#: Decoded time chunks kept per process by :class:`SnapshotReader` (the whole
#: local preset's training split fits; larger snapshots stream through it).
DEFAULT_CACHE_BYTES = 512 * 2**20


class SnapshotReader:
    """Reads stacked time slices of a snapshot's ``data.zarr`` with zarr, opened lazily once per process.

    Args:
      zarr_path: the snapshot's ``data.zarr``.
      layout: channel order of the states.
      forcing_names: forcings, in the order of the ``F`` axis.
      static_names: static fields, in the order of the ``S`` axis.
      levels: the snapshot's ``level`` coordinate (hPa), to pick the layout's levels.
      grid: ``(n_lat, n_lon)``.
      cache_bytes: budget of the decoded-chunk cache of each process.
    """

    def __init__(
        self,
        zarr_path: str | os.PathLike[str],
        layout: ChannelLayout,
        forcing_names: Sequence[str],
        static_names: Sequence[str],
        levels: Sequence[int],
        grid: tuple[int, int],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.path = Path(zarr_path)
        self.layout = layout
        self.forcing_names = list(forcing_names)
        self.static_names = list(static_names)
        self.n_lat, self.n_lon = grid
        snapshot_levels = [int(lv) for lv in levels]
        missing = [lv for lv in layout.levels if lv not in snapshot_levels]
        if missing and any(variable(v).has_levels for v in layout.variables):
            raise SnapshotReadError(f"{self.path}: snapshot has levels {snapshot_levels}, data.levels asks for {missing} too")
        self.level_index = [snapshot_levels.index(lv) for lv in layout.levels if lv in snapshot_levels]
        self.cache_bytes = int(cache_bytes)
        self._cache = ChunkCache(self.cache_bytes)
        self._group: Any = None
        self._arrays: dict[str, Any] = {}
        self._dim_names: dict[str, tuple[str, ...]] = {}
        self._pid: int | None = None
        self._checked = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_group"], state["_pid"], state["_arrays"] = None, None, {}  # reopened in the worker process
        state["_cache"] = ChunkCache(self.cache_bytes)
        return state

    @property
    def group(self) -> Any:
        if self._group is None or self._pid != os.getpid():
            try:
                self._group = zarr.open_group(str(self.path), mode="r")
            except Exception as exc:  # noqa: BLE001 - any store error: name the store
                raise SnapshotReadError(f"{self.path}: cannot open the snapshot's zarr store: {exc}") from exc
            self._pid = os.getpid()
            self._arrays = {}
            self._cache = ChunkCache(self.cache_bytes)
            if not self._checked:
                self._check()
                self._checked = True
        return self._group

    def _array(self, name: str) -> Any:
        group = self.group
        if name not in self._arrays:  # opening an array reads its metadata: once per process
            try:
                self._arrays[name] = group[name]
            except KeyError:
                raise SnapshotReadError(f"{self.path}: no variable {name!r} in the snapshot") from None
        return self._arrays[name]

    def _dims(self, name: str) -> tuple[str, ...]:
        if name not in self._dim_names:
            arr = self._array(name)
            dims = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS")
            self._dim_names[name] = tuple(dims or ())
        return self._dim_names[name]

    def _check(self) -> None:
        expected = {}
        for name in self.layout.variables:
            lead = ("time", "level") if variable(name).has_levels else ("time",)
            expected[name] = [lead + ("latitude", "longitude")]
        for name in self.forcing_names:
            expected[name] = [("time",), ("time", "longitude"), ("time", "latitude", "longitude")]
        for name in self.static_names:
            expected[name] = [("latitude", "longitude")]
        for name, allowed in expected.items():
            dims = self._dims(name)
            if dims not in allowed:
                raise SnapshotReadError(f"{self.path}: variable {name!r} has dims {dims}, expected one of {allowed}")

    def _read(self, names: Sequence[str], start: int, stop: int) -> list[np.ndarray]:
        """Time slices ``start:stop`` of several arrays, through the decoded-chunk cache.

        zarr decodes whole chunks anyway; keeping the decoded time chunks
        (LRU, ``cache_bytes`` per process) means each chunk is decoded once
        instead of once per sample that touches it. Missing chunks of all
        arrays are fetched concurrently on zarr's event loop.
        """
        spans = []
        blocks: dict[tuple[str, int], np.ndarray] = {}
        missing: dict[tuple[str, int], slice] = {}
        for name in names:
            arr = self._array(name)
            step = int(arr.chunks[0])
            first, last = start // step, (stop - 1) // step
            spans.append((name, step, first, last))
            for k in range(first, last + 1):
                if (name, k) in self._cache:
                    blocks[(name, k)] = self._cache.get((name, k))
                else:
                    missing[(name, k)] = slice(k * step, min((k + 1) * step, arr.shape[0]))
        if missing:
            for key, block in zip(missing, self._fetch([(self._array(n), sl) for (n, _), sl in missing.items()])):
                blocks[key] = np.asarray(block, dtype=np.float32)
                self._cache.put(key, blocks[key])
        out = []
        for name, step, first, last in spans:
            parts = [blocks[(name, k)] for k in range(first, last + 1)]
            joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            out.append(joined[start - first * step : stop - first * step])
        return out

    @staticmethod
    def _fetch(requests: list[tuple[Any, slice]]) -> list[Any]:
        """``array[slice]`` for every request, concurrently when zarr has its async API."""
        if _zarr_sync is None or not all(hasattr(a, "_async_array") for a, _ in requests):
            return [a[sl] for a, sl in requests]

        async def gather() -> list[Any]:
            return await asyncio.gather(*(a._async_array.getitem(sl) for a, sl in requests))

        return _zarr_sync(gather())

    def window(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(states (T, G, C), forcings (T, G, F))`` of time indices ``start:stop`` (``T = stop - start``)."""
        names = list(self.layout.variables) + self.forcing_names
        blocks = self._read(names, start, stop)
        n = len(self.layout.variables)
        return self._stack_states(blocks[:n]), self._stack_forcings(blocks[n:], stop - start)

    def states(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, G, C)`` float32 states of time indices ``start:stop``, layout order."""
        return self._stack_states(self._read(list(self.layout.variables), start, stop))

    def forcings(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, G, F)`` float32 forcings broadcast to the grid."""
        return self._stack_forcings(self._read(self.forcing_names, start, stop), stop - start)

    def _stack_states(self, blocks: list[np.ndarray]) -> np.ndarray:
        parts = []
        for name, block in zip(self.layout.variables, blocks):
            if variable(name).has_levels:
                block = block[:, self.level_index]  # (T, L, lat, lon)
                t, lev = block.shape[:2]
                parts.append(block.reshape(t, lev, -1).transpose(0, 2, 1))
            else:
                parts.append(block.reshape(block.shape[0], -1, 1))
        return np.ascontiguousarray(np.concatenate(parts, axis=-1))

    def _stack_forcings(self, blocks: list[np.ndarray], t: int) -> np.ndarray:
        dims = [self._dims(name) for name in self.forcing_names]
        return stack_forcings(list(zip(dims, blocks)), t, self.n_lat, self.n_lon)

    def static(self) -> np.ndarray:
        """``(G, S)`` float32 static fields."""
        return stack_static([self._array(name)[...] for name in self.static_names], self.n_lat * self.n_lon)


def read_grid(snapshot_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Times, latitudes, longitudes, levels and snapshot ID of a snapshot (metadata only)."""
    snapshot_dir = Path(snapshot_dir)
    manifest = read_manifest(snapshot_dir)
    if manifest is None or "snapshot_id" not in manifest:
        raise SnapshotReadError(f"{snapshot_dir / 'manifest.json'}: missing or without snapshot_id (not a zonda snapshot)")
    ds = open_snapshot(snapshot_dir)
    try:
        info = {
            "times": np.asarray(ds["time"].values, dtype="datetime64[ns]"),
            "latitudes": np.asarray(ds["latitude"].values, dtype=np.float64),
            "longitudes": np.asarray(ds["longitude"].values, dtype=np.float64),
            "levels": [int(v) for v in ds["level"].values] if "level" in ds.coords else [],
            "snapshot_id": manifest["snapshot_id"],
            "variables": sorted(map(str, ds.data_vars)),
        }
    finally:
        ds.close()
    if info["times"].size > 1 and (np.diff(info["times"]) <= np.timedelta64(0, "ns")).any():
        raise SnapshotReadError(f"{snapshot_dir / DATA_DIRNAME}: time coordinate is not strictly increasing")
    return info
