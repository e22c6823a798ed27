"""The physics baseline: the same dynamical core at a coarser resolution, started from the truth.

WeatherBench2 scores data-driven models against IFS HRES, a physics model run
from (nearly) the true state. For the embedded Held-Suarez world the analogue
is the dinosaur core that made the truth, run at a lower spectral truncation
and with fewer sigma layers, from the truth's own state at each initial time:

* horizontally, a triangular spectral truncation: the coefficients with total
  wavenumber ``l <= T_c`` (and so ``|m| <= T_c``) are kept exactly, the rest dropped;
* vertically, the mean of each block of ``L / L_c`` adjacent equidistant sigma
  layers (layer ``k`` of the coarse model spans exactly those fine layers, so
  this is the mass-weighted layer mean);

then integrated with the Held-Suarez forcing at the coarse resolution and
diagnosed every 6 hours on the WeatherBench2 grid and pressure levels, exactly
as the generator diagnoses the truth. Its error at short leads is the
truncation (what the coarse model cannot represent) plus the coarse model's
own error growth; no re-analysis from pressure levels is involved.

The truth's states come from :mod:`zonda.data.truth_states`. This module owns
the JAX boundary of the baseline; :func:`physics_forecast` returns a
WB2-layout forecast ``(time=init, prediction_timedelta, level, latitude, longitude)``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from zonda.data import hs_dycore
from zonda.data.truth_states import STATE_PREFIX, STATE_TIME, TruthStatesError, states_at
from zonda.variables import TIME_STEP_HOURS, lead_timedeltas, variable

ATMOSPHERIC = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind")
SURFACE = ("surface_pressure",)
PRODUCED = ATMOSPHERIC + SURFACE
INIT_BATCH = 16  # forecasts integrated together (vmapped)


@dataclasses.dataclass(frozen=True)
class CoarseModel:
    """The baseline model's resolution: triangular truncation ``T``, ``layers`` sigma layers, time step."""

    truncation: int
    layers: int
    dt_minutes: float

    @property
    def label(self) -> str:
        return f"dinosaur T{self.truncation} L{self.layers}"


def check_coarsening(*, truth_truncation: int, truth_layers: int, model: CoarseModel) -> None:
    """Raises ValueError unless ``model`` is a true coarsening of the truth's resolution."""
    if not 2 <= model.truncation <= truth_truncation:
        raise ValueError(
            f"physics baseline truncation T{model.truncation} must be between T2 and the truth's T{truth_truncation}"
        )
    if model.layers < 2 or truth_layers % model.layers:
        raise ValueError(
            f"physics baseline layers {model.layers} must divide the truth's {truth_layers} sigma layers "
            f"(each coarse layer is the mean of whole fine layers)"
        )


def coarse_arrays(arrays: dict[str, np.ndarray], *, truncation: int, layers: int) -> dict[str, np.ndarray]:
    """Truncates modal state arrays to ``T=truncation`` and ``layers`` equidistant sigma layers.

    Args:
      arrays: modal fields named like :data:`~zonda.data.hs_dycore.STATE_FIELDS`,
        shapes ``(L, 2T_f+1, T_f+2)`` (``(1, ...)`` for ``log_surface_pressure``),
        zonal wavenumbers interleaved ``0, 1, -1, 2, -2, ...``, total wavenumber ``0..T_f+1``.

    Returns:
      The same fields with shapes ``(layers, 2T+1, T+2)`` (``(1, 2T+1, T+2)``):
      coefficients with ``l <= T`` copied, the ``l = T+1`` column (which only
      dinosaur's derivatives use) zero, each coarse layer the mean of its fine layers.
    """
    rows, cols = 2 * truncation + 1, truncation + 2
    out = {}
    for name, values in arrays.items():
        values = np.asarray(values, np.float64)[:, :rows, :cols].copy()  # (L, 2T+1, T+2)
        values[:, :, truncation + 1 :] = 0.0
        if name != "log_surface_pressure":
            fine = values.shape[0]
            values = values.reshape(layers, fine // layers, rows, cols).mean(axis=1)  # (layers, 2T+1, T+2)
        out[name] = values.astype(np.float32)
    return out


def physics_forecast(
    states: xr.Dataset,
    *,
    init_times: np.ndarray,
    steps: int,
    levels: list[int],
    model: CoarseModel,
    variables: list[str] | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Coarse-model forecasts from the truth's states at ``init_times``.

    Args:
      states: the truth states (:mod:`zonda.data.truth_states` layout).
      init_times: ``(n_init,)`` datetime64 initial times; each must be in ``states``.
      steps: 6-hour leads per forecast (40 for 10 days).
      levels: output pressure levels (hPa).
      model: the coarse resolution and time step.
      variables: which of temperature, geopotential, u/v wind, surface_pressure (default all).

    Returns:
      float32 Dataset, dims ``(time, prediction_timedelta, level, latitude, longitude)``
      (surface fields without ``level``), SI units as in :mod:`zonda.variables`,
      leads ``6 h .. 6 h * steps``, on the WB2 5.625 deg grid.

    Raises:
      TruthStatesError: an init time has no stored state.
      ValueError: the model is no coarsening of the truth, or a variable is not produced.
    """
    names = list(variables) if variables is not None else list(PRODUCED)
    unknown = [n for n in names if n not in PRODUCED]
    if unknown:
        raise ValueError(f"the physics baseline produces {list(PRODUCED)}, not {unknown}")
    attrs = states[STATE_PREFIX + "vorticity"].attrs
    truth_t, truth_l = int(attrs["hs_truncation"]), int(attrs["hs_layers"])
    check_coarsening(truth_truncation=truth_t, truth_layers=truth_l, model=model)
    chosen = states_at(states, init_times, what=f"physics baseline {model.label}")
    dycore = hs_dycore.get_dycore(model.truncation, model.layers, model.dt_minutes)
    _check_reference_temperature(dycore, float(attrs["hs_reference_temperature_K"]))
    level_tuple = tuple(sorted(int(v) for v in levels))
    diagnose = hs_dycore.get_diagnostics(dycore, level_tuple)
    run = _batched_runner(dycore, diagnose)

    n_init = chosen.sizes[STATE_TIME]
    raw = {n: np.empty((n_init, steps, *_nodal_shape(n, len(level_tuple))), np.float32) for n in names}
    bar = tqdm(total=n_init, desc=f"physics baseline {model.label}", unit="init", disable=not progress)
    for a in range(0, n_init, INIT_BATCH):
        batch = range(a, min(n_init, a + INIT_BATCH))
        coarse = [
            coarse_arrays(
                {f: chosen[STATE_PREFIX + f].isel({STATE_TIME: i}).values for f in hs_dycore.STATE_FIELDS},
                truncation=model.truncation, layers=model.layers,
            )
            for i in batch
        ]
        state = hs_dycore.state_from_arrays(dycore, {f: np.stack([c[f] for c in coarse]) for f in hs_dycore.STATE_FIELDS})
        for k in range(steps):
            state, diag = run(state)
            for name in names:
                raw[name][batch.start : batch.stop, k] = np.asarray(diag[name])  # (b, [level,] lon, lat)
        bar.update(len(batch))
    bar.close()
    fields = {}
    for name, values in raw.items():
        values = np.swapaxes(hs_dycore.dimensionalize(dycore, name, values), -1, -2)  # (..., lat, lon)
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values).reshape(n_init, -1).all(axis=1))[0])
            raise FloatingPointError(
                f"physics baseline {model.label} blew up in the forecast from {pd.Timestamp(chosen[STATE_TIME].values[bad])} "
                f"({name} not finite) with dt_minutes={model.dt_minutes:g}; use a shorter time step"
            )
        fields[name] = np.ascontiguousarray(values, dtype=np.float32)
    return _assemble(fields, np.asarray(chosen[STATE_TIME].values), steps, level_tuple, model)


def _batched_runner(dycore: hs_dycore.Dycore, diagnose):
    """One jitted call per 6-hour lead for a batch of states (leading axis): advance
    ``steps_per_chunk`` model steps, then diagnose (nondimensional fields, dinosaur's (lon, lat) order)."""

    def one_lead(state):
        state = dycore.advance(state, dycore.steps_per_chunk)
        return state, diagnose(state)

    return jax.jit(jax.vmap(one_lead))


def _check_reference_temperature(dycore: hs_dycore.Dycore, truth_reference_k: float) -> None:
    ref = np.asarray(dycore.reference_temperature, np.float64)
    ref_k = float(np.mean(ref))
    if not np.allclose(ref, ref[0]) or not math.isclose(ref_k, truth_reference_k, rel_tol=1e-6):
        raise ValueError(
            f"physics baseline: reference temperature {ref_k} K differs from the truth's {truth_reference_k} K; "
            f"the temperature variations would not be comparable"
        )


def _nodal_shape(name: str, n_levels: int) -> tuple[int, ...]:
    grid = (hs_dycore.OUTPUT_LONGITUDES, hs_dycore.OUTPUT_LATITUDES)
    return grid if name in SURFACE else (n_levels, *grid)


def _assemble(
    fields: dict[str, np.ndarray], inits: np.ndarray, steps: int, levels: tuple[int, ...], model: CoarseModel
) -> xr.Dataset:
    data_vars = {}
    for name, values in fields.items():
        dims = ("time", "prediction_timedelta", "latitude", "longitude")
        if name not in SURFACE:
            dims = ("time", "prediction_timedelta", "level", "latitude", "longitude")
        entry = variable(name)
        data_vars[name] = (dims, values, {"units": entry.units, "long_name": entry.long_name})
    coords = {
        "time": ("time", np.asarray(inits, "datetime64[ns]"), {"long_name": "initial time"}),
        "prediction_timedelta": ("prediction_timedelta", lead_timedeltas(steps), {"long_name": "lead time"}),
        "level": ("level", np.asarray(levels, np.int64), {"units": "hPa", "long_name": "pressure level"}),
        "latitude": ("latitude", hs_dycore.wb2_latitudes(), {"units": "degrees_north"}),
        "longitude": ("longitude", hs_dycore.wb2_longitudes(), {"units": "degrees_east"}),
    }
    attrs = {
        "title": f"physics baseline: {model.label}, dt {model.dt_minutes:g} min, from the truth's spectral states",
        "Conventions": "CF-1.8",
        "lead_step_hours": TIME_STEP_HOURS,
        "first_init": str(pd.Timestamp(inits[0])) if len(inits) else "",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


__all__ = ["CoarseModel", "TruthStatesError", "check_coarsening", "coarse_arrays", "physics_forecast"]
