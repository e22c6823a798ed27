"""Stage 2, normalisation statistics: one streaming pass over a snapshot.

For every variable (and pressure level) over ``statistics.period`` (default:
the train split): mean, std, std of the 6-hour differences (``tendency_std``,
the GraphCast normaliser of the predicted tendency), min and max. Forcings
(``year_progress_*``, ``day_progress_*``, ...) get the same statistics, computed
here from the data rather than hard-coded. Static fields get spatial
statistics and a zero tendency std.

Moments are accumulated block by block with the weighted Welford/Chan merge
(Chan, Golub & LeVeque 1979), so memory stays under
``statistics.chunk_budget_mb`` whatever the length of the record; blocks can
be spread over a Dask cluster (``statistics.dask_address``). With
``statistics.area_weighted`` grid points are weighted by WeatherBench2 cell
areas (see :func:`zonda.grid.cell_area_weights`).

For every field on a regular latitude-longitude grid (longitudes equally spaced
around the whole circle) the same pass also records the mean zonal power
spectrum of its 6-hour differences per latitude circle,
``tendency_zonal_power__<name>``, dims ``([level], latitude, zonal_wavenumber)``:
``mean_t |F_k|^2`` with ``F = numpy.fft.rfft(diff, norm="forward")`` along
longitude (unweighted; power is per circle). It says which wavenumbers the data
resolve on each circle: a spectrally truncated source (a T21 model, ERA5's TL639)
holds nothing above its truncation, and on a regular grid the circles near the
poles hold fewer wavenumbers than the equator. The forecaster's zonal gain reads
it (:mod:`zonda.models.zonal_gain`).

Output directory::

    <out>/statistics.nc        one data variable per name, dims (statistic[, level]),
                               and tendency_zonal_power__<name>, dims ([level], latitude, zonal_wavenumber)
    <out>/manifest.json        period, snapshot ID, statistics hash, sha256 and size of statistics.nc
    <out>/params.resolved.yaml

The snapshot's chunks are checked against their recorded digests before the
pass (:func:`zonda.snapshot.verify_snapshot`), and a chunk that cannot be read
is reported naming store, variable, time steps and chunk. Every reader of the
artifact goes through :func:`load_statistics`, which checks ``statistics.nc``
against its manifest (the file's sha256, then the statistics hash of what it
holds), so a model never records the manifest's hash while using other numbers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from zonda.data.reading import read_values
from zonda.grid import cell_area_weights, is_full_circle
from zonda.integrity import IntegrityError, file_entry, verify_file
from zonda.outputs import write_output
from zonda.params import Params
from zonda.provenance import MANIFEST_FILENAME, code_version, read_manifest, sha256_id
from zonda.snapshot import DATA_DIRNAME, verify_snapshot

log = logging.getLogger(__name__)

STATISTICS = ("mean", "std", "tendency_std", "min", "max")
STATISTICS_FILENAME = "statistics.nc"
#: ``statistics.nc`` variable of a field's tendency zonal power spectrum: ``tendency_zonal_power__<name>``.
ZONAL_POWER_PREFIX = "tendency_zonal_power__"
ZONAL_WAVENUMBER = "zonal_wavenumber"
_FFT_STEPS = 16  # time steps per FFT batch of ZonalPower.of


def zonal_power_name(name: str) -> str:
    """``statistics.nc`` variable holding the tendency zonal power spectrum of ``name``."""
    return ZONAL_POWER_PREFIX + name


@dataclass
class ZonalPower:
    """Sum over time of the zonal power of a field's 6-hour differences, ``([level], latitude, K)``, and the count."""

    total: np.ndarray
    count: int

    @classmethod
    def of(cls, diffs: np.ndarray, dims: tuple[str, ...]) -> "ZonalPower":
        """``diffs`` with dims ``dims`` (``time`` first, ``longitude`` last after a transpose)."""
        order = [dims.index("time")] + [dims.index(d) for d in ("level", "latitude") if d in dims] + [dims.index("longitude")]
        x = np.transpose(diffs, order)  # (T, [level], latitude, longitude)
        total = np.zeros(x.shape[1:-1] + (x.shape[-1] // 2 + 1,))  # ([level], latitude, K)
        for start in range(0, x.shape[0], _FFT_STEPS):  # bounded float64 temporaries
            f_k = np.fft.rfft(x[start : start + _FFT_STEPS].astype(np.float64), axis=-1, norm="forward")  # (t, ..., K)
            total += (f_k.real**2 + f_k.imag**2).sum(axis=0)
        return cls(total, int(x.shape[0]))

    def merge(self, other: "ZonalPower") -> "ZonalPower":
        return ZonalPower(self.total + other.total, self.count + other.count)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count


@dataclass
class Moments:
    """Weighted running moments over every axis but ``level``; arrays of shape ``(n_level,)`` or ``()``.

    ``weight`` is the total weight, ``mean`` the weighted mean and ``m2`` the
    weighted sum of squared deviations from it (so ``std = sqrt(m2 / weight)``).
    """

    weight: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def of(
        cls,
        values: np.ndarray,
        level_axis: int | None = None,
        weight_axis: int | None = None,
        weights: np.ndarray | None = None,
    ) -> "Moments":
        """Moments of one block, reduced over every axis but ``level_axis``.

        ``weights`` (1-D) weight the entries along ``weight_axis`` (latitude);
        unweighted when None. Accumulates in float64 without copying the block
        more than once.
        """
        x = np.asarray(values)
        keep = [a for a in (level_axis, weight_axis) if a is not None]
        x = np.moveaxis(x, keep, list(range(len(keep))))  # (level?, weight?, rest...)
        rest = tuple(range(len(keep), x.ndim))
        n_rest = int(np.prod([x.shape[a] for a in rest])) if rest else 1
        w = np.ones(1) if weights is None else np.asarray(weights, dtype=np.float64)
        wb = w if weight_axis is not None else np.ones(1)
        # shapes: sums over `rest` are (level?, weight?)
        s1 = x.sum(axis=rest, dtype=np.float64) if rest else x.astype(np.float64)
        reduce_w = (lambda a: a @ wb) if weight_axis is not None else (lambda a: a)
        total = np.full(x.shape[0] if level_axis is not None else (), wb.sum() * n_rest, dtype=np.float64)
        mean = reduce_w(s1) / total
        centred = np.subtract(x, mean.reshape(mean.shape + (1,) * (x.ndim - mean.ndim)), dtype=np.float64)
        np.multiply(centred, centred, out=centred)
        s2 = centred.sum(axis=rest) if rest else centred
        del centred
        m2 = reduce_w(s2)
        flat_axes = tuple(range(1, x.ndim)) if level_axis is not None else None
        return cls(total, mean, m2, x.min(axis=flat_axes).astype(np.float64), x.max(axis=flat_axes).astype(np.float64))

    def merge(self, other: "Moments") -> "Moments":
        """Chan et al.'s pairwise combination of two sets of moments."""
        total = self.weight + other.weight
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.weight / total)
        m2 = self.m2 + other.m2 + delta * delta * (self.weight * other.weight / total)
        return Moments(
            total, mean, m2, np.minimum(self.minimum, other.minimum), np.maximum(self.maximum, other.maximum)
        )

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.m2, 0.0) / self.weight)


_Mergeable = TypeVar("_Mergeable", Moments, ZonalPower)


def _merge_all(parts: Iterable[_Mergeable | None]) -> _Mergeable | None:
    acc: _Mergeable | None = None
    for part in parts:
        if part is None:
            continue
        acc = part if acc is None else acc.merge(part)
    return acc


def _moments(values: np.ndarray, dims: tuple[str, ...], lat_weights: np.ndarray | None) -> Moments:
    """Moments per level (if any) of an array with dims ``dims``, area-weighted along latitude if asked."""
    weighted = lat_weights is not None and "latitude" in dims
    return Moments.of(
        values,
        level_axis=dims.index("level") if "level" in dims else None,
        weight_axis=dims.index("latitude") if weighted else None,
        weights=lat_weights if weighted else None,
    )


@functools.lru_cache(maxsize=8)
def _open_store(store: str, stamp: int) -> xr.Dataset:
    """The snapshot opened once per process (``stamp`` = zarr.json mtime, so a rewritten store reopens)."""
    return xr.open_zarr(store, chunks=None, consolidated=False)


def _open(store: str) -> xr.Dataset:
    return _open_store(store, (Path(store) / "zarr.json").stat().st_mtime_ns)


def block_moments(
    store: str, name: str, start: int, stop: int, area_weighted: bool
) -> tuple[Moments, Moments | None, ZonalPower | None]:
    """Moments of ``name`` over time steps [start, stop) and of its 6-hour differences, and the differences'
    zonal power (None off a regular full-circle grid).

    Reads [start - 1, stop) so the difference across the block boundary is
    counted exactly once (by the later block). Runs in-process or on a Dask worker.
    """
    ds = _open(store)
    da = ds[name]
    lat_w = cell_area_weights(ds["latitude"].values) if area_weighted else None
    lead = 1 if start > 0 else 0
    chunk_steps = (da.encoding.get("chunks") or (None,))[da.dims.index("time")]
    values = read_values(
        da.isel(time=slice(start - lead, stop)), store=store, name=name, offset=start - lead, chunk_steps=chunk_steps
    )
    value_moments = _moments(values[lead:], da.dims, lat_w)
    diffs = np.diff(values, axis=da.dims.index("time"))
    tendency = _moments(diffs, da.dims, lat_w) if diffs.shape[0] else None
    power = None
    if diffs.shape[0] and {"latitude", "longitude"} <= set(da.dims) and is_full_circle(ds["longitude"].values):
        power = ZonalPower.of(diffs, da.dims)
    return value_moments, tendency, power


def _static_moments(store: str, name: str, area_weighted: bool) -> Moments:
    ds = _open(store)
    da = ds[name]
    lat_w = cell_area_weights(ds["latitude"].values) if area_weighted else None
    return _moments(read_values(da, store=store, name=name), da.dims, lat_w)


def time_blocks(n_steps: int, bytes_per_step: int, budget_bytes: float) -> list[tuple[int, int]]:
    """[start, stop) ranges of at least 2 steps whose data (with float64 temporaries) fit the budget."""
    per_step = max(1, bytes_per_step) * 4  # float32 read + its difference + one float64 temporary
    size = max(2, int(budget_bytes // per_step))
    return [(a, min(n_steps, a + size)) for a in range(0, n_steps, size)]


def _period_slice(ds: xr.Dataset, params: Params) -> tuple[int, int]:
    period = params.statistics_period
    times = ds["time"].values
    idx = np.flatnonzero((times >= np.datetime64(period.start)) & (times <= np.datetime64(period.end)))
    if idx.size < 2:
        raise ValueError(f"statistics.period {period.as_str()} holds {idx.size} time step(s) of the snapshot; need >= 2")
    return int(idx[0]), int(idx[-1]) + 1


def compute_statistics(
    snapshot_dir: str | os.PathLike[str], params: Params, *, progress: bool = True
) -> xr.Dataset:
    """Streams over the snapshot once and returns the statistics Dataset (see module docstring)."""
    store = str(Path(snapshot_dir) / DATA_DIRNAME)
    ds = xr.open_zarr(store, chunks=None, consolidated=False)
    first, last = _period_slice(ds, params)
    sub = ds.isel(time=slice(first, last))
    budget = params.statistics.chunk_budget_mb * 2**20
    area = params.statistics.area_weighted
    timed = sorted(n for n, da in ds.data_vars.items() if "time" in da.dims)
    static = sorted(n for n in ds.data_vars if n not in timed)

    tasks: list[tuple[str, int, int]] = []
    for name in timed:
        da = sub[name]
        per_step = int(np.prod([da.sizes[d] for d in da.dims if d != "time"])) * da.dtype.itemsize
        for a, b in time_blocks(sub.sizes["time"], per_step, budget):
            tasks.append((name, first + a, first + b))

    run = _dask_runner(params.statistics.dask_address) if params.statistics.dask_address else _local_runner
    results = run(store, tasks, area, progress)

    out: dict[str, xr.DataArray] = {}
    for name in timed:
        parts = [results[i] for i, t in enumerate(tasks) if t[0] == name]
        values = _merge_all(p[0] for p in parts)
        tendency = _merge_all(p[1] for p in parts)
        out[name] = _as_dataarray(ds[name], values, tendency)
        power = _merge_all(p[2] for p in parts)
        if power is not None:
            out[zonal_power_name(name)] = _zonal_power_dataarray(ds[name], power)
    for name in static:
        out[name] = _as_dataarray(ds[name], _static_moments(store, name, area), None)
    result = xr.Dataset(out, coords={"statistic": list(STATISTICS)})
    period = params.statistics_period
    result.attrs = {
        "period": period.as_str(),
        "time_steps": int(last - first),
        "area_weighted": int(area),
        "std_definition": "population std (ddof=0), weighted",
        "tendency_definition": "differences of consecutive 6-hourly steps",
    }
    return result


def _as_dataarray(template: xr.DataArray, values: Moments, tendency: Moments | None) -> xr.DataArray:
    tend = tendency.std if tendency is not None else np.zeros_like(values.mean)
    stacked = np.stack([values.mean, values.std, tend, values.minimum, values.maximum]).astype(np.float64)
    if "level" in template.dims:
        da = xr.DataArray(stacked, dims=("statistic", "level"), coords={"level": template["level"].values})
    else:
        da = xr.DataArray(stacked, dims=("statistic",))
    da.attrs = {"units": template.attrs.get("units", ""), "long_name": template.attrs.get("long_name", template.name)}
    return da


def _zonal_power_dataarray(template: xr.DataArray, power: ZonalPower) -> xr.DataArray:
    dims = tuple(d for d in ("level", "latitude") if d in template.dims) + (ZONAL_WAVENUMBER,)
    coords = {d: template[d].values for d in dims[:-1]}
    coords[ZONAL_WAVENUMBER] = np.arange(power.total.shape[-1])
    units = template.attrs.get("units", "")
    return xr.DataArray(
        power.mean,
        dims=dims,
        coords=coords,
        attrs={
            "units": f"({units})**2" if units else "",
            "long_name": f"mean zonal power of the 6-hour differences of {template.name} per latitude circle",
            "definition": "mean over time of |rfft(diff, norm='forward')|**2 along longitude, one-sided (k = 0..n_lon//2)",
        },
    )


RunBlocks = Callable[[str, list[tuple[str, int, int]], bool, bool], list[tuple[Moments, Moments | None, ZonalPower | None]]]


def _local_runner(store: str, tasks: list[tuple[str, int, int]], area: bool, progress: bool):
    return [
        block_moments(store, name, a, b, area)
        for name, a, b in tqdm(tasks, desc="statistics", unit="block", disable=not progress)
    ]


def _dask_runner(address: str) -> RunBlocks:
    def run(store: str, tasks: list[tuple[str, int, int]], area: bool, progress: bool):
        from distributed import Client

        with Client(address, timeout="30s") as client:
            futures = [client.submit(block_moments, store, n, a, b, area, pure=False) for n, a, b in tasks]
            return client.gather(futures)

    return run


def statistics_hash(stats: xr.Dataset) -> str:
    """sha256 over names, statistic order, levels, values (float64) and the period."""
    h = hashlib.sha256()
    h.update(("|".join(STATISTICS) + "|" + str(stats.attrs.get("period"))).encode())
    for name in sorted(stats.data_vars):
        da = stats[name]
        h.update(f"{name}:{da.dims}:".encode())
        if "level" in da.dims:
            h.update(np.asarray(da["level"].values, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(da.values, dtype="<f8").tobytes())
    return h.hexdigest()


def load_statistics(directory: str | os.PathLike[str]) -> xr.Dataset:
    """The statistics of an artifact directory, checked against its ``manifest.json`` before use.

    The file's sha256 must be the one recorded at write time (artifacts written
    before it was recorded skip this) and the statistics hash of the values read
    must be the manifest's ``statistics_hash``; otherwise IntegrityError names the
    file and both hashes.
    """
    directory = Path(directory)
    path = directory / STATISTICS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a zonda statistics artifact (no {STATISTICS_FILENAME})")
    manifest_path = directory / MANIFEST_FILENAME
    manifest = read_manifest(directory)
    if manifest is None or "statistics_hash" not in manifest:
        raise IntegrityError(f"{manifest_path}: missing or without statistics_hash; {path} cannot be verified")
    recorded = manifest.get("files", {}).get(STATISTICS_FILENAME)
    if recorded is not None:
        verify_file(path, recorded, recorded_in=manifest_path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        stats = ds.load()
    digest = sha256_id(statistics_hash(stats))
    if digest != sha256_id(manifest["statistics_hash"]):
        raise IntegrityError(
            f"{path}: holds statistics with hash {digest}, not the statistics_hash {manifest['statistics_hash']} "
            f"recorded in {manifest_path}: the file was changed after it was written; rebuild it with `zonda statistics`"
        )
    return stats


def build_statistics(
    params: Params, snapshot_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, progress: bool = True
) -> dict[str, Any]:
    """Computes the statistics artifact into ``out_dir`` atomically; returns its manifest."""
    snapshot_manifest = verify_snapshot(snapshot_dir)
    stats = compute_statistics(snapshot_dir, params, progress=progress)
    stats.attrs["snapshot_id"] = snapshot_manifest["snapshot_id"]
    digest = statistics_hash(stats)
    stats.attrs["statistics_hash"] = digest
    out_dir = Path(out_dir)

    def write(tmp: Path) -> dict[str, Any]:
        stats.to_netcdf(tmp / STATISTICS_FILENAME, engine="h5netcdf")
        return {
            "kind": "zonda.statistics",
            "statistics_hash": f"sha256:{digest}",
            "files": {STATISTICS_FILENAME: file_entry(tmp / STATISTICS_FILENAME)},
            "snapshot_id": snapshot_manifest["snapshot_id"],
            "period": stats.attrs["period"],
            "time_steps": stats.attrs["time_steps"],
            "area_weighted": params.statistics.area_weighted,
            "variables": sorted(n for n in stats.data_vars if "statistic" in stats[n].dims),
            "code_version": code_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    return write_output(params, out_dir, write)
