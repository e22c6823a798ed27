"""Opening a dataset source lazily and putting it into WB2 names and dims.

Sources: a zarr store (local path or fsspec URL such as the WeatherBench2
ARCO-ERA5 stores on gs://), netCDF files (a path or glob), GRIB files (via
cfgrib), or the embedded Held-Suarez generator (cached by its params).
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from zonda.data.hs_builtin import builtin_restart_path
from zonda.data.locations import SourceError, check_fsspec_backend, protocol
from zonda.params import DataParams, resolve_env_references
from zonda.provenance import canonical_json_hash
from zonda.variables import DIM_ALIASES, grib_renames
from zonda.zarr_files import consolidate_zarr


HELDSUAREZ_CACHE_VERSION = 2  # 2: the truth's spectral states over the test split are kept


def open_zarr_source(path: str, storage_options: dict) -> xr.Dataset:
    check_fsspec_backend(path)
    if protocol(path) is None and not Path(path).exists():
        raise SourceError(f"data.source.path {path!r}: no such zarr store")
    try:
        with warnings.catch_warnings():
            # consolidated=None falls back to per-array metadata (what a small local store has) with a
            # RuntimeWarning that asks the reader to rewrite the store: not actionable for a source
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated metadata", RuntimeWarning)
            return xr.open_zarr(
                path, storage_options=storage_options or None, chunks={}, decode_timedelta=True, consolidated=None
            )
    except Exception as exc:  # noqa: BLE001 - re-raised with the field named
        raise SourceError(f"data.source.path {path!r}: cannot open as zarr: {type(exc).__name__}: {exc}") from None


def open_netcdf_source(path: str) -> xr.Dataset:
    files = sorted(glob.glob(path)) if protocol(path) is None else [path]
    if not files:
        raise SourceError(f"data.source.path {path!r}: no netCDF file matches")
    try:
        if len(files) == 1:
            return xr.open_dataset(files[0], chunks={})
        return xr.open_mfdataset(files, combine="by_coords", chunks={})
    except Exception as exc:  # noqa: BLE001
        raise SourceError(f"data.source.path {path!r}: cannot open as netCDF: {type(exc).__name__}: {exc}") from None


# cfgrib coordinates that describe a GRIB message rather than the data (dropped after reading).
_GRIB_MESSAGE_COORDS = ("number", "step", "surface", "valid_time", "heightAboveGround", "meanSea")


def open_grib_source(path: str) -> xr.Dataset:
    """Opens GRIB files (a path or glob) with cfgrib, as one Dataset with catalogue names.

    A GRIB file usually mixes level types (pressure-level ``t``, ``z``, ... and
    surface ``sp``, ``msl``, ...), which cfgrib reads as one hypercube each;
    they are merged here, per file, and the files concatenated along time.
    Surface ``z`` (ERA5's orography, which would clash with pressure-level
    ``z``) becomes ``geopotential_at_surface``.
    ``time`` becomes the valid time (analysis time + step). cfgrib's variable
    names (``t``, ``t2m``) are kept; :func:`standardise_names` maps them to the
    catalogue's. cfgrib's index files are not written (the source may be
    read-only).
    """
    try:
        import cfgrib
    except ImportError:
        raise SourceError(
            f"data.source.path {path!r}: GRIB sources need cfgrib and ecCodes (pip install 'zonda[grib]')"
        ) from None
    files = sorted(glob.glob(path))
    if not files:
        raise SourceError(f"data.source.path {path!r}: no GRIB file matches")
    parts = []
    for file in files:
        try:
            with warnings.catch_warnings():  # cfgrib's own internal merge, about an xarray default to come
                warnings.filterwarnings("ignore", category=FutureWarning, module="cfgrib")
                cubes = cfgrib.open_datasets(file, backend_kwargs={"indexpath": ""})
        except Exception as exc:  # noqa: BLE001 - cfgrib/ecCodes raise many kinds
            raise SourceError(f"data.source.path {path!r}: cannot read {file} as GRIB: {type(exc).__name__}: {exc}") from None
        if not cubes:
            raise SourceError(f"data.source.path {path!r}: {file} holds no GRIB messages")
        try:
            cubes = [_orography_as_static(_grib_cube_on_valid_time(c)) for c in cubes]
        except ValueError as exc:
            raise SourceError(f"data.source.path {path!r}: {file}: {exc}") from None
        try:
            parts.append(xr.merge(cubes, compat="no_conflicts", join="outer"))
        except (ValueError, xr.MergeError) as exc:
            raise SourceError(f"data.source.path {path!r}: the GRIB fields of {file} do not fit one grid: {exc}") from None
    try:
        # data_vars="minimal": only fields with a time axis are concatenated; the orography is one field
        return (xr.combine_by_coords(parts, data_vars="minimal", compat="no_conflicts", combine_attrs="drop_conflicts")
                if len(parts) > 1 else parts[0])
    except ValueError as exc:
        raise SourceError(f"data.source.path {path!r}: the GRIB files do not combine along time: {exc}") from None


def _grib_cube_on_valid_time(ds: xr.Dataset) -> xr.Dataset:
    """One cfgrib hypercube with ``time`` = valid time and the message coordinates dropped."""
    if "valid_time" in ds.coords:
        valid = ds["valid_time"]
        if valid.ndim == 0:  # a file with one time: cfgrib makes time a scalar
            ds = ds.drop_vars(["time", "valid_time"], errors="ignore").expand_dims(time=[valid.values])
        elif valid.dims == ("time",):
            ds = ds.assign_coords(time=valid.values)
        else:
            raise ValueError(f"fields with several forecast steps (valid_time dims {valid.dims}); "
                             "snapshots take analyses, one step per time")
    return ds.drop_vars([c for c in _GRIB_MESSAGE_COORDS if c in ds.coords])


def _orography_as_static(ds: xr.Dataset) -> xr.Dataset:
    """``z`` on the surface (ERA5's orography, beside pressure-level ``z``) as ``geopotential_at_surface (lat, lon)``.

    ERA5 repeats the invariant orography with every analysis time; the first is taken.
    """
    if "z" not in ds.data_vars or ds["z"].attrs.get("GRIB_typeOfLevel") != "surface" or "geopotential_at_surface" in ds:
        return ds
    orography = ds["z"].isel(time=0, drop=True) if "time" in ds["z"].dims else ds["z"]
    return ds.drop_vars("z").assign(geopotential_at_surface=orography)


def heldsuarez_cache_key(data: DataParams) -> str:
    import dinosaur

    payload = {
        "heldsuarez": data.heldsuarez.model_dump(mode="json"),
        "levels": list(data.levels),
        "keep_states": data.splits.test.as_str(),
        "dinosaur": getattr(dinosaur, "__version__", "unknown"),
        "cache_version": HELDSUAREZ_CACHE_VERSION,
    }
    return canonical_json_hash(payload)[:20]


def open_heldsuarez_source(data: DataParams, cache_dir: Path, progress: bool = True) -> xr.Dataset:
    """Runs the generator once per distinct settings; later calls open the cached zarr.

    The record keeps the model's spectral states over ``data.splits.test`` (the
    initial conditions of the physics baseline; see :func:`zonda.data.heldsuarez.generate`).
    """
    from zonda.data import heldsuarez

    cache_dir = Path(cache_dir)
    target = cache_dir / f"heldsuarez-{heldsuarez_cache_key(data)}.zarr"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        test = data.splits.test
        keep = (np.datetime64(test.start, "ns"), np.datetime64(test.end, "ns"))
        ds = heldsuarez.generate(data.heldsuarez, data.levels, progress=progress, keep_states=keep)
        tmp = cache_dir / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            ds.to_zarr(tmp, zarr_format=3, mode="w", consolidated=False)
            consolidate_zarr(tmp)  # plain xr.open_zarr opens it without a warning
            if not target.exists():  # another process may have finished first
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return xr.open_zarr(target, chunks={}, consolidated=False)


def source_storage_options(data: DataParams) -> dict:
    """``data.source.storage_options`` with ``${env:NAME}`` references read from this process's environment
    (ParamsError naming the field and the variable when one is not set)."""
    return resolve_env_references(data.source.storage_options, "data.source.storage_options")


def open_source(data: DataParams, cache_dir: Path, progress: bool = True) -> xr.Dataset:
    """Opens the configured source lazily, renamed to WB2 names and dims."""
    kind = data.source.kind
    if kind == "heldsuarez":
        ds = open_heldsuarez_source(data, cache_dir, progress=progress)
    elif kind == "zarr":
        ds = open_zarr_source(str(data.source.path), source_storage_options(data))
    elif kind == "netcdf":
        ds = open_netcdf_source(str(data.source.path))
    elif kind == "grib":
        ds = open_grib_source(str(data.source.path))
    elif kind == "dvc":
        ds = open_dvc_source(data, cache_dir)
    else:  # pragma: no cover - the schema forbids it
        raise SourceError(f"data.source.kind {kind!r} is not supported")
    return standardise_names(ds, data.source.rename, grib=data.source.file_format == "grib")


def open_dvc_source(data: DataParams, cache_dir: Path) -> xr.Dataset:
    """The (pinned) dvc source's verified local copy, opened by its format (see :mod:`zonda.data.dvc_source`)."""
    from zonda.data import dvc_source

    checkout = dvc_source.materialise(data.source, cache_dir)
    files = dvc_source.data_files(checkout)
    opener = {
        "zarr": lambda: open_zarr_source(files, {}),
        "netcdf": lambda: open_netcdf_source(files),
        "grib": lambda: open_grib_source(files),
    }[checkout.revision.format]
    try:
        return opener()
    except SourceError as exc:
        raise dvc_source.DvcSourceError(f"{dvc_source.describe(data.source)}: {exc}") from None


def standardise_names(ds: xr.Dataset, rename: dict[str, str], *, grib: bool = False) -> xr.Dataset:
    """Applies the user's renames, then the usual aliases: dims (lat -> latitude, ...) and, for a
    ``grib`` source, cfgrib's variable names (t -> temperature, ...); an alias never overwrites a name."""
    missing = [k for k in rename if k not in ds.variables and k not in ds.dims]
    if missing:
        raise SourceError(f"data.source.rename names {missing}, which the source does not have")
    ds = ds.rename(rename) if rename else ds
    aliases = {k: v for k, v in DIM_ALIASES.items() if (k in ds.dims or k in ds.coords) and v not in ds.variables}
    if grib:
        aliases |= {k: v for k, v in grib_renames().items() if k in ds.data_vars and v not in ds.variables}
    return ds.rename(aliases) if aliases else ds


def normalise_grid(ds: xr.Dataset) -> xr.Dataset:
    """Longitudes into [0, 360) increasing, latitudes ascending (WB2 convention), level in hPa."""
    if "longitude" in ds.coords:
        lon = np.asarray(ds["longitude"].values, dtype=np.float64)
        if (lon < 0).any():
            ds = ds.assign_coords(longitude=np.mod(lon, 360.0)).sortby("longitude")
    if "latitude" in ds.coords:
        lat = np.asarray(ds["latitude"].values)
        if lat.size > 1 and lat[0] > lat[-1] and np.all(np.diff(lat) < 0):
            ds = ds.isel(latitude=slice(None, None, -1))
    if "level" in ds.coords:
        units = str(ds["level"].attrs.get("units", "hPa")).strip()
        if units in ("Pa", "pascal"):
            ds = ds.assign_coords(level=(np.asarray(ds["level"].values) / 100.0))
        ds["level"].attrs["units"] = "hPa"
    return ds


def preflight(data: DataParams) -> None:
    """Cheap reachability check of the source (metadata only), before any run or artifact is created."""
    kind = data.source.kind
    if kind == "heldsuarez":
        restart = data.heldsuarez.restart
        if restart == "builtin":
            builtin_restart_path(data.heldsuarez.truncation, data.heldsuarez.layers)
        elif restart != "rest" and not Path(restart).is_file():
            raise SourceError(f"data.heldsuarez.restart {restart!r}: no such file")
        return
    if kind == "dvc":
        from zonda.data import dvc_source

        dvc_source.preflight(data.source)
        return
    ds = {
        "zarr": lambda: open_zarr_source(str(data.source.path), source_storage_options(data)),
        "netcdf": lambda: open_netcdf_source(str(data.source.path)),
        "grib": lambda: open_grib_source(str(data.source.path)),
    }[kind]()
    ds.close()
