"""Training data: forecast windows read lazily from a snapshot's zarr store.

A sample anchored at time index ``i`` (valid time ``t``) holds, with
``T_in = model.input_steps`` and ``R`` rollout steps::

    states    (T_in, G, C)       at t - 6h (T_in - 1), ..., t
    forcings  (T_in + R, G, F)   at t - 6h (T_in - 1), ..., t + 6h R
    targets   (R, G, C)          at t + 6h, ..., t + 6h R
    time      ()                 t, int64 nanoseconds since 1970

in physical units (the :class:`~zonda.models.Forecaster` normalises), with
``G = n_lat * n_lon`` row-major and channels in
:class:`~zonda.channels.ChannelLayout` order. The static fields ``(G, S)`` are
the same for every sample and are served once (:attr:`SnapshotDataModule.static`).
A sample's whole window (first input to last target) lies inside its split
and is contiguous in 6-hourly time.

Each sample is one contiguous time slice per zarr array, read when the sample
is asked for; the store and its arrays are opened once per process (DataLoader
worker), and the decoded time chunks a sample touches stay in a bounded LRU
cache (:data:`DEFAULT_CACHE_BYTES` per process), so each chunk is decoded once
rather than once per sample (a chunk of 8 steps serves ~8 samples). Nothing is
loaded ahead of use. Forcings are broadcast to the grid: ``(time,)`` fields to
every point, ``(time, longitude)`` fields along latitude.

Data order: :class:`ShardedEpochSampler` draws one permutation per epoch from
``(training.seed, epoch)``; global batch ``j`` is ``perm[j*B_g:(j+1)*B_g]``
(``B_g = batch_size * world_size``) and rank ``r`` takes the ``r``-th
``batch_size`` slice of it, so a DDP run sees the same global batches as a
single process with ``batch_size * world_size``. :class:`ResumableDataLoader`
tells Lightning how many batches of the epoch were consumed, so a run resumed
from a mid-epoch checkpoint continues with the next batch.

The rollout length follows the curriculum (``training.rollout``): ``start``
steps for the first ``hold_epochs + increase_every_epochs`` epochs, then one
more step every ``increase_every_epochs`` epochs up to ``end``. The DataModule builds the
training set for ``R(epoch)`` and asks Lightning to rebuild it whenever the
curriculum can move.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from zonda.channels import ChannelLayout, stack_forcings, stack_static
from zonda.params import Params, RolloutParams, TimeWindow
from zonda.provenance import read_manifest
from zonda.snapshot import DATA_DIRNAME, open_snapshot
from zonda.training.errors import TrainingInputError
from zonda.variables import TIME_STEP, TIME_STEP_HOURS, variable

log = logging.getLogger(__name__)


#: Rollout steps of the validation set: 6 h and 24 h leads are scored.
VALIDATION_STEPS = 4


def rollout_for_epoch(rollout: RolloutParams, epoch: int) -> int:
    """Curriculum: ``min(end, start + max(0, epoch - hold_epochs) // increase_every_epochs)`` rollout
    steps in ``epoch`` (0-based)."""
    grown = max(0, epoch - rollout.hold_epochs) // rollout.increase_every_epochs
    return min(rollout.end, rollout.start + grown)


def window_anchors(times: np.ndarray, window: TimeWindow, input_steps: int, rollout: int) -> np.ndarray:
    """Indices ``i`` of ``times`` whose sample window ``[i - T_in + 1, i + R]`` lies inside ``window``.

    The window must also be contiguous (every step 6 h after the previous).
    ``times`` is a sorted ``datetime64`` array. Returns ``int64 (N,)``.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    n = times.size
    first = np.arange(n) - (input_steps - 1)
    last = np.arange(n) + rollout
    ok = (first >= 0) & (last < n)
    idx = np.flatnonzero(ok)
    start, end = np.datetime64(window.start, "ns"), np.datetime64(window.end, "ns")
    span = (input_steps - 1 + rollout) * TIME_STEP
    t0, t1 = times[first[idx]], times[last[idx]]
    keep = (t0 >= start) & (t1 <= end) & (t1 - t0 == span)
    return idx[keep].astype(np.int64)


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
            raise TrainingInputError(f"{self.path}: snapshot has levels {snapshot_levels}, data.levels asks for {missing} too")
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
            import zarr

            try:
                self._group = zarr.open_group(str(self.path), mode="r")
            except Exception as exc:  # noqa: BLE001 - any store error: name the store
                raise TrainingInputError(f"{self.path}: cannot open the snapshot's zarr store: {exc}") from exc
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
                raise TrainingInputError(f"{self.path}: no variable {name!r} in the snapshot") from None
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
                raise TrainingInputError(f"{self.path}: variable {name!r} has dims {dims}, expected one of {allowed}")

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


class ForecastWindows(Dataset):
    """Samples of one split for a fixed rollout length (see the module docstring for the layout).

    Args:
      reader: the snapshot reader.
      anchors: ``(N,)`` time index ``i`` of each sample's last input state.
      times: the snapshot's time coordinate (``datetime64[ns]``).
      input_steps: ``T_in``.
      rollout: ``R``.
    """

    def __init__(self, reader: SnapshotReader, anchors: np.ndarray, times: np.ndarray, input_steps: int, rollout: int) -> None:
        self.reader = reader
        self.anchors = np.asarray(anchors, dtype=np.int64)
        self.times = np.asarray(times, dtype="datetime64[ns]")
        self.input_steps = int(input_steps)
        self.rollout = int(rollout)

    def __len__(self) -> int:
        return int(self.anchors.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(self.anchors[index])
        start, stop = i - self.input_steps + 1, i + self.rollout + 1
        block, forcings = self.reader.window(start, stop)
        return {
            "states": torch.from_numpy(block[: self.input_steps]),
            "targets": torch.from_numpy(block[self.input_steps :]),
            "forcings": torch.from_numpy(forcings),
            "time": torch.tensor(self.times[i].astype("int64")),
        }


class ShardedEpochSampler(Sampler[int]):
    """This rank's sample indices for one epoch, in global-batch order (see the module docstring).

    Args:
      num_samples: size of the dataset.
      batch_size: per-rank batch size ``b``.
      world_size, rank: data-parallel layout.
      shuffle: permute per epoch with ``torch.Generator().manual_seed(seed + epoch)``.
      seed: base seed.
      drop_last: drop the incomplete last global batch (training), else keep it
        (validation; ranks may then get unequal shares).
      epoch: the epoch the first iteration serves.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        epoch: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = int(epoch)
        self.skip_batches = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def num_global_batches(self) -> int:
        if self.drop_last:
            return self.num_samples // self.global_batch
        return math.ceil(self.num_samples / self.global_batch)

    def order(self, epoch: int) -> np.ndarray:
        """The global sample order of ``epoch`` (same on every rank)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=gen).numpy()

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch``, each an index array of at most ``batch_size``."""
        perm = self.order(epoch)
        out = []
        for j in range(self.num_global_batches):
            block = perm[j * self.global_batch : (j + 1) * self.global_batch]
            mine = block[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if mine.size:
                out.append(mine)
        return out

    def batch_sizes(self) -> list[int]:
        """Sizes of this rank's batches in a full epoch (the same for every epoch)."""
        sizes = []
        for j in range(self.num_global_batches):
            block = min(self.global_batch, self.num_samples - j * self.global_batch)
            mine = min(max(block - self.rank * self.batch_size, 0), self.batch_size)
            if mine:
                sizes.append(mine)
        return sizes

    def __len__(self) -> int:
        return int(sum(self.batch_sizes()))

    def num_batches(self) -> int:
        """Batches of this rank per full epoch."""
        return len(self.batch_sizes())

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a new epoch starts from its first batch."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.skip_batches = 0

    def __iter__(self) -> Iterator[int]:
        # Runs when the first index is drawn; a resumed epoch's skip is used once.
        skip, self.skip_batches = self.skip_batches, 0
        for b in self.batches(self.epoch)[skip:]:
            yield from (int(i) for i in b)


def epoch_batches(num_batches: int, limit: int | float | None) -> int:
    """Batches Lightning runs per epoch under ``limit_train_batches`` (its ``_parse_num_batches`` rule)."""
    if limit is None:
        return num_batches
    if isinstance(limit, int) or (isinstance(limit, float) and limit > 1.0 and limit.is_integer()):
        return min(num_batches, int(limit))
    return int(num_batches * float(limit))


def batches_to_run(epoch_batches: int, *, max_steps: int, global_step: int, accumulate: int) -> int:
    """Batches of this epoch that will run: ``epoch_batches``, cut short where ``max_steps`` (-1: none) ends training.

    ``global_step`` counts optimizer steps taken so far, each of ``accumulate`` batches.
    """
    if max_steps is None or max_steps < 0:
        return epoch_batches
    return max(0, min(epoch_batches, (max_steps - global_step) * accumulate))


try:  # zarr 3: run many chunk reads concurrently on its event loop
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - zarr 2
    _zarr_sync = None


def worker_start_method() -> str | None:
    """How DataLoader workers start: ``forkserver`` once JAX is loaded in this process (the
    Held-Suarez generator ran here earlier, e.g. in a notebook: JAX's threads make ``fork``
    deadlock-prone), else the platform default (``fork`` on Linux)."""
    return "forkserver" if "jax" in sys.modules else None


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ShardedEpochSampler` that Lightning checkpoints mid-epoch.

    Lightning calls :meth:`state_dict` when it saves a checkpoint and
    :meth:`load_state_dict` before iterating on resume (``_Stateful``
    protocol). The state is the epoch and the number of batches served; a
    resumed epoch skips those, a completed one (``epoch_limit`` batches
    served) moves on to the next epoch.

    Args:
      dataset: the map-style dataset.
      sampler: the sampler (its ``batch_size`` is the loader's).
      epoch_limit: batches per epoch that Lightning runs (``limit_train_batches``).
      **kwargs: DataLoader options (num_workers, pin_memory, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: ShardedEpochSampler,
        *,
        epoch_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=False, **kwargs)
        self.epoch_limit = epoch_limit
        self._served = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        self._served = sampler.skip_batches  # the sampler skips these when it starts
        for batch in super().__iter__():
            self._served += 1  # counted when handed over (workers may have read ahead)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        s: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        return {
            "epoch": s.epoch,
            "batches": int(self._served),
            "num_samples": s.num_samples,
            "global_batch": s.global_batch,
            "seed": s.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        same = (
            state.get("num_samples") == s.num_samples
            and state.get("global_batch") == s.global_batch
            and state.get("seed") == s.seed
        )
        epoch, served = int(state.get("epoch", 0)), int(state.get("batches", 0))
        limit = self.epoch_limit if self.epoch_limit is not None else s.num_batches()
        if served >= limit:
            s.epoch, s.skip_batches = epoch + 1, 0
        elif same:
            s.epoch, s.skip_batches = epoch, served
        else:
            warnings.warn(
                "the checkpoint's data layout (samples, global batch, seed) differs from this run's; "
                f"epoch {epoch} restarts from its first batch instead of batch {served}",
                stacklevel=2,
            )
            s.epoch, s.skip_batches = epoch, 0
        self._served = s.skip_batches


class FirstBatchForever:
    """Serves the first batch of ``loader`` from memory, ``len(loader)`` times per epoch.

    ``training.fake_dataloading``: a run whose step time does not change with
    this on is not input-bound. The same tensors are returned every time.
    """

    def __init__(self, loader: ResumableDataLoader) -> None:
        self.loader = loader
        self.batch: Any = None
        self._served = 0
        self._skip = 0

    def __len__(self) -> int:
        return len(self.loader)

    def _first(self) -> Any:
        if self.batch is None:
            iterator = iter(self.loader)
            self.batch = next(iterator)
            iterator.close()  # type: ignore[attr-defined]
        return self.batch

    def __iter__(self) -> Iterator[Any]:
        batch = self._first()
        self._served, self._skip = self._skip, 0
        while self._served < len(self):
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        served = int(state.get("batches", 0))
        self._skip = served if served < len(self) else 0


def read_grid(snapshot_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Times, latitudes, longitudes, levels and snapshot ID of a snapshot (metadata only)."""
    snapshot_dir = Path(snapshot_dir)
    manifest = read_manifest(snapshot_dir)
    if manifest is None or "snapshot_id" not in manifest:
        raise TrainingInputError(f"{snapshot_dir / 'manifest.json'}: missing or without snapshot_id (not a zonda snapshot)")
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
        raise TrainingInputError(f"{snapshot_dir / DATA_DIRNAME}: time coordinate is not strictly increasing")
    return info


class SnapshotDataModule(L.LightningDataModule):
    """Lightning DataModule of the train and validation splits of a snapshot.

    Args:
      params: the resolved params (``data`` and ``training`` sections are used,
        and ``model.input_steps``).
      snapshot_dir: a snapshot directory (``data.zarr`` + ``manifest.json``).

    Attributes (available right after construction, before ``setup``):
      layout, forcing_names, static_names, latitudes, longitudes, times, snapshot_id,
      static (``(G, S)`` float32 tensor).

    Batches are dicts of ``states (B, T_in, G, C)``, ``forcings (B, T_in+R, G, F)``,
    ``targets (B, R, G, C)`` and ``time (B,)``; ``training.batch_size`` is the
    batch of one process (the global batch is ``batch_size * world_size``).
    """

    def __init__(self, params: Params, snapshot_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.params = params
        self.snapshot_dir = Path(snapshot_dir)
        info = read_grid(self.snapshot_dir)
        self.times: np.ndarray = info["times"]
        self.latitudes: np.ndarray = info["latitudes"]
        self.longitudes: np.ndarray = info["longitudes"]
        self.snapshot_id: str = info["snapshot_id"]
        data = params.data
        self.layout = ChannelLayout.of(data.variables, data.levels)
        self.forcing_names = list(data.forcings)
        self.static_names = list(data.static)
        missing = [n for n in [*self.layout.variables, *self.forcing_names, *self.static_names] if n not in info["variables"]]
        if missing:
            raise TrainingInputError(f"{self.snapshot_dir / DATA_DIRNAME}: missing variables {missing} asked for by data params")
        self.reader = SnapshotReader(
            self.snapshot_dir / DATA_DIRNAME, self.layout, self.forcing_names, self.static_names,
            info["levels"], (self.latitudes.size, self.longitudes.size),
        )
        self.static = torch.from_numpy(self.reader.static())
        self.input_steps = params.model.input_steps
        # Fail now, not after the model is built, if a split is too short.
        for split, steps in (("train", params.training.rollout.end), ("validation", VALIDATION_STEPS)):
            self.anchors(split, steps)

    # ------------------------------------------------------------------ samples

    def anchors(self, split: str, rollout: int) -> np.ndarray:
        """Anchor indices of ``split`` (``train`` | ``validation``) for ``rollout`` steps."""
        window = getattr(self.params.data.splits, split)
        anchors = window_anchors(self.times, window, self.input_steps, rollout)
        if anchors.size == 0:
            need_h = (self.input_steps + rollout - 1) * TIME_STEP_HOURS
            raise TrainingInputError(
                f"data.splits.{split} ({window.as_str()}) holds no complete window of {self.input_steps} input "
                f"and {rollout} target steps ({need_h} h) in the snapshot {self.snapshot_dir}"
            )
        return anchors

    def dataset(self, split: str, rollout: int) -> ForecastWindows:
        return ForecastWindows(self.reader, self.anchors(split, rollout), self.times, self.input_steps, rollout)

    @property
    def reload_every_n_epochs(self) -> int:
        """``reload_dataloaders_every_n_epochs`` for the Trainer: rebuild when the curriculum moves."""
        r = self.params.training.rollout
        if r.end == r.start:
            return 0
        # the curriculum moves at epochs hold + k * every: every gcd(hold, every) epochs hits each of them
        return math.gcd(r.hold_epochs, r.increase_every_epochs) if r.hold_epochs else r.increase_every_epochs

    def rollout_for_epoch(self, epoch: int) -> int:
        return rollout_for_epoch(self.params.training.rollout, epoch)

    # -------------------------------------------------------------- data loaders

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader_options(self) -> dict[str, Any]:
        """DataLoader options from ``training``: workers, prefetch, persistent workers, pinned memory."""
        t = self.params.training
        pin = t.pin_memory
        if pin == "auto":
            pin = torch.cuda.is_available() and t.accelerator != "cpu"
        options: dict[str, Any] = {
            "num_workers": t.num_workers,
            "pin_memory": bool(pin),
            "generator": torch.Generator().manual_seed(t.seed),  # keeps worker seeding off the global RNG
        }
        if t.num_workers > 0:
            options.update(prefetch_factor=t.prefetch_factor, persistent_workers=t.persistent_workers,
                           multiprocessing_context=worker_start_method())
        return options

    def _epoch(self) -> int:
        return int(self.trainer.current_epoch) if self.trainer is not None else 0

    def train_dataloader(self) -> ResumableDataLoader | FirstBatchForever:
        t = self.params.training
        epoch = self._epoch()
        rollout = self.rollout_for_epoch(epoch)
        world, rank = self._ranks()
        dataset = self.dataset("train", rollout)
        sampler = ShardedEpochSampler(
            len(dataset), t.batch_size, world_size=world, rank=rank, shuffle=True, seed=t.seed, drop_last=True,
            epoch=epoch,
        )
        if sampler.num_batches() == 0:
            raise TrainingInputError(
                f"data.splits.train has {len(dataset)} samples for rollout {rollout}, fewer than one global batch "
                f"(training.batch_size {t.batch_size} x {world} processes)"
            )
        limit = self.trainer.limit_train_batches if self.trainer is not None else None
        loader = ResumableDataLoader(
            dataset, sampler, epoch_limit=epoch_batches(sampler.num_batches(), limit), **self._loader_options()
        )
        runs = len(loader)
        if self.trainer is not None:
            runs = batches_to_run(
                len(loader), max_steps=t.max_steps, global_step=self.trainer.global_step,
                accumulate=self.trainer.accumulate_grad_batches,
            )
        log.info(
            "epoch %d: %d training samples, rollout %d, %d batches per rank%s", epoch, len(dataset), rollout, runs,
            f" (of {len(loader)}; training.max_steps={t.max_steps} ends it)" if runs < len(loader) else "",
        )
        return FirstBatchForever(loader) if t.fake_dataloading else loader

    def val_dataloader(self) -> DataLoader:
        t = self.params.training
        world, rank = self._ranks()
        dataset = self.dataset("validation", VALIDATION_STEPS)
        sampler = ShardedEpochSampler(
            len(dataset), t.batch_size, world_size=world, rank=rank, shuffle=False, seed=t.seed, drop_last=False,
        )
        return DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, **self._loader_options())

    def planned_optimizer_steps(self, trainer: L.Trainer) -> int:
        """Optimisation steps of the whole run, following the curriculum (for LR schedules).

        ``sum over epochs of ceil(batches(epoch) / accumulate_grad_batches)``,
        capped by ``max_steps``; batches per epoch shrink slightly as the
        rollout (and so the sample window) grows.
        """
        t = self.params.training
        world = int(trainer.world_size)
        total = 0
        for epoch in range(t.max_epochs):
            n = len(self.anchors("train", self.rollout_for_epoch(epoch))) // (t.batch_size * world)
            n = epoch_batches(n, trainer.limit_train_batches)
            total += math.ceil(n / t.accumulate_grad_batches)
            if t.max_steps > 0 and total >= t.max_steps:
                return int(t.max_steps)
        return max(1, int(total))  # a run without training steps still builds its scheduler
