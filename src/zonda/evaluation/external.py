"""Baselines from outside the evaluation: forecast stores and the Held-Suarez physics baseline.

Contract (``evaluation.baselines``): every baseline becomes a forecast in the
WB2 layout ``(time = init, prediction_timedelta, [level], latitude, longitude)``
on exactly the model's initial times, the model's leads, the snapshot's grid
and levels, in the catalogue's units, and is then scored by
:func:`zonda.evaluation.results.evaluate` exactly like the model.

Two steps, so that a baseline that cannot be scored fails before any forecast is run:

* :func:`prepare_baselines` opens each store lazily (or reads and hash-checks
  the snapshot's truth states) and checks coverage: every init time, every
  model lead, the headline variables and levels, the grid and the units. Any
  gap raises :class:`BaselineError` naming the baseline and what is missing.
* :meth:`PreparedBaseline.load` then reads (or, for the physics baseline,
  integrates) the aligned forecast.

A store may hold more than needed (other variables, levels, inits, leads, a
lead of 0): the extras are ignored. Model variables the store lacks that are
not headline variables are simply not scored for that baseline.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from zonda.data.sources import normalise_grid, standardise_names
from zonda.data.truth_states import TruthStatesError, read_truth_states, states_at
from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, as_datetimes, as_timedeltas
from zonda.evaluation.headline import parse_headline
from zonda.params import BaselineParams, resolve_env_references
from zonda.variables import VARIABLES

GRID_TOLERANCE_DEG = 1e-6


class BaselineError(ValueError):
    """A configured baseline cannot be scored on the evaluation's inits, leads, variables or grid."""


@dataclasses.dataclass(frozen=True)
class PreparedBaseline:
    """A checked baseline: ``load()`` returns its aligned forecast (see the module docstring).

    Attributes:
      name: the label in results, scorecard and summary.
      description: one line for the summary and the manifest (where it comes from).
      variables: the model variables it is scored on.
      lineage: what it was made from (path, hashes, model settings), for the manifest.
      load: returns the forecast ``(time, prediction_timedelta, [level], latitude, longitude)``.
    """

    name: str
    description: str
    variables: tuple[str, ...]
    lineage: dict[str, Any]
    load: Callable[[], xr.Dataset]


@dataclasses.dataclass(frozen=True)
class Target:
    """What every baseline must line up with: the model's forecast axes and grid."""

    init_times: np.ndarray  # (n_init,) datetime64[ns]
    leads: np.ndarray  # (n_lead,) timedelta64[ns]
    variables: tuple[str, ...]
    levels: tuple[int, ...]
    latitudes: np.ndarray  # (n_lat,) ascending degrees
    longitudes: np.ndarray  # (n_lon,) degrees in [0, 360)
    headline_variables: tuple[str, ...]


def prepare_baselines(
    specs: Sequence[BaselineParams],
    target: Target,
    *,
    snapshot_dir: str | os.PathLike[str],
    snapshot_manifest: dict[str, Any],
    progress: bool = True,
) -> list[PreparedBaseline]:
    """Checks every configured baseline against ``target``; returns them ready to load.

    Raises:
      BaselineError: naming the baseline and the first gap found.
    """
    prepared = []
    for spec in specs:
        if spec.heldsuarez is not None:
            prepared.append(_prepare_physics(spec, target, Path(snapshot_dir), snapshot_manifest, progress))
        else:
            prepared.append(_prepare_store(spec, target))
    return prepared


# ------------------------------------------------------------------------ stores


def _open_store(spec: BaselineParams) -> xr.Dataset:
    path = str(spec.path)
    if "://" not in path and not Path(path).exists():
        raise BaselineError(f"baseline {spec.name!r}: evaluation.baselines path {path!r}: no such zarr store")
    options = resolve_env_references(spec.storage_options, f"evaluation.baselines[{spec.name}].storage_options")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated metadata", RuntimeWarning)
            ds = xr.open_zarr(path, storage_options=options or None, chunks={}, decode_timedelta=True, consolidated=None)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the baseline
        raise BaselineError(f"baseline {spec.name!r}: cannot open {path!r} as zarr: {type(exc).__name__}: {exc}") from None
    try:
        return normalise_grid(standardise_names(ds, spec.rename))
    except Exception as exc:  # noqa: BLE001
        raise BaselineError(f"baseline {spec.name!r} ({path}): {exc}") from None


def _prepare_store(spec: BaselineParams, target: Target) -> PreparedBaseline:
    ds = _open_store(spec)
    where = f"baseline {spec.name!r} ({spec.path})"
    for dim in (INIT_DIM, LEAD_DIM, "latitude", "longitude"):
        if dim not in ds.dims:
            raise BaselineError(
                f"{where}: no {dim!r} dim (dims {dict(ds.sizes)}); a WB2 forecast store has time (init), "
                f"prediction_timedelta, [level], latitude, longitude; map other names with rename"
            )
    _check_grid(ds, target, where)
    names = _scored_variables(ds, target, where)
    _check_levels(ds, target, names, where)
    _check_covered(as_datetimes(ds[INIT_DIM].values), target.init_times, where, "initial times")
    _check_leads(as_timedeltas(ds[LEAD_DIM].values), target.leads, where)

    def load() -> xr.Dataset:
        out = ds[names].sel({INIT_DIM: target.init_times, LEAD_DIM: target.leads})
        if target.levels and "level" in out.dims:
            out = out.sel(level=np.asarray(target.levels, dtype=out["level"].dtype))
        out = out.assign_coords(latitude=target.latitudes, longitude=target.longitudes)
        return out.astype(np.float32).load()

    lineage = {"path": spec.path, "rename": dict(spec.rename), "variables": names}
    return PreparedBaseline(spec.name, f"forecast store {spec.path}", tuple(names), lineage, load)


def _check_grid(ds: xr.Dataset, target: Target, where: str) -> None:
    for dim, want in (("latitude", target.latitudes), ("longitude", target.longitudes)):
        have = np.asarray(ds[dim].values, np.float64)
        if have.shape != want.shape or not np.allclose(have, want, rtol=0, atol=GRID_TOLERANCE_DEG):
            raise BaselineError(
                f"{where}: its {dim} ({have.size} points, {have[:1]}..{have[-1:]}) is not the snapshot's "
                f"({want.size} points, {want[:1]}..{want[-1:]}); regrid the store to the snapshot grid first"
            )


def _scored_variables(ds: xr.Dataset, target: Target, where: str) -> list[str]:
    headline = {parse_headline(spec)[0] for spec in target.headline_variables}
    missing = sorted(n for n in headline if n not in ds.data_vars)
    if missing:
        raise BaselineError(
            f"{where}: lacks the headline variables {missing} (it has {sorted(map(str, ds.data_vars))}); "
            f"map other names with rename"
        )
    names = [n for n in target.variables if n in ds.data_vars]
    for name in names:
        _check_units(ds[name], name, where)
    return names


def _normalised_units(units: str) -> str:
    return re.sub(r"[\s*^]", "", units)


def _check_units(da: xr.DataArray, name: str, where: str) -> None:
    units = da.attrs.get("units")
    if units is None or name not in VARIABLES:
        return
    want = VARIABLES[name].units
    if _normalised_units(str(units)) != _normalised_units(want):
        raise BaselineError(f"{where}: {name} is in {units!r}, the evaluation needs {want!r}")


def _check_levels(ds: xr.Dataset, target: Target, names: list[str], where: str) -> None:
    if not target.levels or not any("level" in ds[n].dims for n in names):
        return
    have = {int(round(float(v))) for v in ds["level"].values}
    absent = sorted(set(target.levels) - have)
    if absent:
        raise BaselineError(f"{where}: lacks pressure levels {absent} hPa (it has {sorted(have)})")


def _check_covered(have: np.ndarray, want: np.ndarray, where: str, what: str) -> None:
    missing = pd.DatetimeIndex(want).difference(pd.DatetimeIndex(have))
    if len(missing):
        span = f"{pd.Timestamp(have.min())} to {pd.Timestamp(have.max())}" if have.size else "nothing"
        raise BaselineError(
            f"{where}: does not cover the evaluation's {what}: {len(missing)} of {len(want)} missing "
            f"(first {missing[0]}, last {missing[-1]}); the store covers {span}"
        )


def _check_leads(have: np.ndarray, want: np.ndarray, where: str) -> None:
    missing = pd.TimedeltaIndex(want).difference(pd.TimedeltaIndex(have))
    if len(missing):
        raise BaselineError(
            f"{where}: lacks {len(missing)} of the {len(want)} lead times (first {missing[0]}); "
            f"it has {len(have)} leads up to {pd.Timedelta(have.max()) if have.size else 'none'}"
        )


# --------------------------------------------------------------- physics baseline


def _prepare_physics(
    spec: BaselineParams, target: Target, snapshot_dir: Path, manifest: dict[str, Any], progress: bool
) -> PreparedBaseline:
    from zonda.data.hs_baseline import PRODUCED, CoarseModel, check_coarsening, physics_forecast  # JAX boundary
    from zonda.data.hs_dycore import steps_per_chunk

    assert spec.heldsuarez is not None
    model = CoarseModel(spec.heldsuarez.truncation, spec.heldsuarez.layers, spec.heldsuarez.dt_minutes)
    where = f"baseline {spec.name!r} ({model.label})"
    try:
        states = read_truth_states(snapshot_dir, manifest)
        states_at(states, target.init_times, what=where)
    except TruthStatesError as exc:
        raise BaselineError(str(exc)) from None
    entry = manifest["truth_states"]
    try:
        check_coarsening(truth_truncation=entry["truncation"], truth_layers=entry["layers"], model=model)
        steps_per_chunk(model.dt_minutes)  # raises unless the step divides 6 hours
    except ValueError as exc:
        raise BaselineError(f"{where}: {exc}") from None
    names = [n for n in target.variables if n in PRODUCED]
    headline = {parse_headline(s)[0] for s in target.headline_variables}
    if headline - set(names):
        raise BaselineError(f"{where}: cannot produce headline variables {sorted(headline - set(names))}")
    steps = len(target.leads)

    def load() -> xr.Dataset:
        return physics_forecast(
            states, init_times=target.init_times, steps=steps, levels=list(target.levels), model=model,
            variables=names, progress=progress,
        )

    lineage = {
        "physics": {"truncation": model.truncation, "layers": model.layers, "dt_minutes": model.dt_minutes},
        "truth_states_sha256": entry["sha256"],
        "truth": {"truncation": entry["truncation"], "layers": entry["layers"]},
        "variables": names,
    }
    description = f"{model.label} (dt {model.dt_minutes:g} min) from the truth's T{entry['truncation']} L{entry['layers']} states"
    return PreparedBaseline(spec.name, description, tuple(names), lineage, load)


__all__ = ["BaselineError", "PreparedBaseline", "Target", "prepare_baselines"]
