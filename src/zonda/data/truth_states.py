"""The truth's own model states at the evaluation's initial times (Held-Suarez sources).

The embedded generator integrates the truth in spectral space; at the outputs
inside ``data.splits.test`` it also keeps the model's modal state (see
:func:`zonda.data.heldsuarez.generate`). The snapshot stage stores them beside
``data.zarr`` as ``truth_states.nc`` with their sha256 in the manifest, and the
physics baseline (:mod:`zonda.data.hs_baseline`) starts its coarse forecasts
from them: a spectral truncation of the truth's exact state, not a re-analysis
from pressure levels.

This module owns the names, the file and its hash check; it does not import JAX.

Layout (nondimensional, dinosaur's modal layout): variables ``hs_state_<field>``
for ``vorticity``, ``divergence``, ``temperature_variation`` (dims
``(state_time, hs_layer, hs_m, hs_l)``) and ``log_surface_pressure``
(``(state_time, hs_surface, hs_m, hs_l)``); ``hs_m`` holds the interleaved zonal
wavenumbers ``0, 1, -1, 2, -2, ...`` (2T+1), ``hs_l`` the total wavenumbers
``0..T+1``. Each variable's attributes give the model's ``hs_truncation``,
``hs_layers``, ``hs_dt_minutes`` and ``hs_reference_temperature_K``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from zonda.files import file_sha256, write_netcdf_atomic

STATE_PREFIX = "hs_state_"
STATE_TIME = "state_time"
STATES_FILE = "truth_states.nc"
MANIFEST_KEY = "truth_states"


class TruthStatesError(ValueError):
    """The truth states are missing, do not cover the asked times, or fail their hash check."""


def split_states(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset | None]:
    """``(ds without the state variables, the states or None)``."""
    names = [n for n in ds.data_vars if str(n).startswith(STATE_PREFIX)]
    if not names:
        return ds, None
    return ds.drop_vars(names).drop_dims(STATE_TIME, errors="ignore"), ds[names]


def write_truth_states(states: xr.Dataset, directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Writes ``states`` to ``directory/truth_states.nc``; returns the manifest entry (file, sha256, times)."""
    path = Path(directory) / STATES_FILE
    states = states.load()
    for var in states.variables.values():
        var.encoding = {}
    write_netcdf_atomic(states, path)
    times = pd.DatetimeIndex(states[STATE_TIME].values)
    first = next(iter(states.data_vars.values())).attrs
    return {
        "file": STATES_FILE,
        "sha256": file_sha256(path),
        "count": int(len(times)),
        "first": times[0].isoformat() if len(times) else None,
        "last": times[-1].isoformat() if len(times) else None,
        "truncation": int(first["hs_truncation"]),
        "layers": int(first["hs_layers"]),
    }


def read_truth_states(snapshot_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> xr.Dataset:
    """The snapshot's truth states, loaded, after checking the file against the manifest's sha256.

    Raises:
      TruthStatesError: the snapshot has none (not a Held-Suarez snapshot, or one
        written before states were kept), or the file's hash differs from the manifest's.
    """
    entry = manifest.get(MANIFEST_KEY)
    if not entry:
        raise TruthStatesError(
            f"snapshot {snapshot_dir} holds no truth states (only Held-Suarez snapshots written by "
            f"this zonda version keep them): the physics baseline needs them"
        )
    path = Path(snapshot_dir) / entry["file"]
    if not path.is_file():
        raise TruthStatesError(f"{path}: missing, although the snapshot manifest lists it")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise TruthStatesError(
            f"{path}: sha256 {digest} differs from the manifest's {entry['sha256']}: the file was changed after the snapshot was written"
        )
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def states_at(states: xr.Dataset, init_times: np.ndarray, *, what: str) -> xr.Dataset:
    """The states at exactly ``init_times``; raises TruthStatesError naming the first missing time."""
    have = pd.DatetimeIndex(states[STATE_TIME].values)
    want = pd.DatetimeIndex(np.asarray(init_times, "datetime64[ns]"))
    missing = want.difference(have)
    if len(missing):
        span = f"{have[0]} to {have[-1]}" if len(have) else "no times"
        raise TruthStatesError(
            f"{what}: the truth states cover {span} ({len(have)} states); {len(missing)} initial time(s) "
            f"are missing, first {missing[0]}"
        )
    return states.sel({STATE_TIME: want.values})
