"""Held-Suarez (1994) training data from Google's ``dinosaur`` dynamical core.

The generator integrates the dry primitive equations on equidistant sigma
levels with the Held & Suarez (1994) forcing (Newtonian relaxation to a
zonally symmetric radiative-equilibrium temperature plus Rayleigh friction in
the boundary layer, flat planet) and writes 6-hourly snapshots that look like
WeatherBench2 / ARCO-ERA5 data on the 5.625 degree grid (64 x 32, latitude
ascending, pressure levels in hPa).  Names, units and CF attributes come from
:mod:`zonda.variables`.

Public API:

- :func:`generate` -- run the model from a restart and return an ``xr.Dataset``.
- :func:`spin_up` -- spin a model up from rest and write a restart ``.npz``.
- :func:`builtin_restart_path` -- the restart shipped in the package.
- :func:`main_heldsuarez` -- what ``zonda data heldsuarez`` does.

The shipped restart ``heldsuarez_restart_T21_L12.npz`` (T21, 12 levels,
dt 30 min, 300 days from an isothermal rest atmosphere, seed 0) is regenerated
with (the CLI reads ``params/local.yaml`` by default: seed 0, perturbation 1e-3 K)::

    zonda data heldsuarez --spinup-days 300 --write-restart src/zonda/data/heldsuarez_restart_T21_L12.npz

Restarts for other resolutions are written the same way with the params
overrides ``data.heldsuarez.truncation=T data.heldsuarez.layers=L`` and the
file name ``heldsuarez_restart_T{T}_L{L}.npz``.

Climate at the default T21 L12: westerly jets of ~30 m/s at 250 hPa, equatorial
near-surface air at ~306 K, trade easterlies of ~-9 m/s near 15 deg; the jets
sit at ~31-37 deg latitude, equatorward of the ~40-45 deg jets of Held & Suarez's
higher-resolution runs (a T21 resolution effect: the same setup at T31 puts
them at ~42 deg; T21 with 20 levels still at ~31-37 deg).
The model spins up from rest in ~80-100 days.

Reproducibility: the same :class:`~zonda.params.HeldSuarezParams` (seed
included) gives bit-identical output in the same software environment;
different seeds add different white temperature noise of ``perturbation`` K to
the restart state, so their weather diverges while their climate is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dinosaur
import jax
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from zonda.data import hs_dycore
from zonda.data.hs_dycore import Dycore
from zonda.data.hs_builtin import DEFAULT_RESTART_SPINUP_DAYS, builtin_restart_path
from zonda.data.hs_restart import read_restart, write_restart
from zonda.data.truth_states import STATE_PREFIX, STATE_TIME
from zonda.files import atomic_path
from zonda.params import HeldSuarezParams, Params
from zonda.variables import TIME_STEP_HOURS, variable

STEADINESS_WINDOW_DAYS = 50
ATMOSPHERIC = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind")
SURFACE = ("surface_pressure",)
STATIC = ("geopotential_at_surface",)
PRODUCED = ATMOSPHERIC + SURFACE + STATIC
CHUNKS_PER_DAY = 24 // TIME_STEP_HOURS


# --------------------------------------------------------------------------- restarts


def _rng(seed: int) -> np.random.Generator:
    """A numpy Generator for ``seed``; every int (negative too) gives its own stream."""
    return np.random.default_rng(np.random.SeedSequence([abs(seed), int(seed < 0)]))


def _load_start(hs: HeldSuarezParams) -> tuple[dict[str, np.ndarray] | None, str]:
    """Reads and checks the restart named by ``hs.restart`` (None for "rest").

    Returns:
      ``(arrays, description)``: the modal State arrays (None for a rest start)
      and a sentence saying where the state comes from.
    """
    if hs.restart == "rest":
        return None, "rest (isothermal 288 K, p0=1e5 Pa, 5e3 Pa bump)"
    path = builtin_restart_path(hs.truncation, hs.layers) if hs.restart == "builtin" else Path(hs.restart)
    arrays, meta = read_restart(path, hs.truncation, hs.layers)
    label = f"builtin {path.name}" if hs.restart == "builtin" else str(path)
    return arrays, f"{label} ({meta['spinup_days']:g} days spun up from rest, seed {meta['seed']})"


def _initial_state(dycore: Dycore, arrays: dict[str, np.ndarray] | None, hs: HeldSuarezParams):
    """The state before spin-up: the restart (or rest if ``arrays`` is None) plus seeded temperature noise."""
    rng = _rng(hs.seed)
    state = hs_dycore.rest_state(dycore, rng) if arrays is None else hs_dycore.state_from_arrays(dycore, arrays)
    return hs_dycore.perturb_temperature(dycore, state, hs.perturbation, rng)


def initial_model_state(hs: HeldSuarezParams):
    """The (cached) model for ``hs`` and its state before spin-up.

    The restart is read and checked before the model is built, so a mismatch
    fails fast.

    Returns:
      ``(dycore, state, origin)``: the :class:`~zonda.data.hs_dycore.Dycore`,
      the modal dinosaur State (restart or rest plus seeded noise) and a
      sentence saying where the state comes from.
    """
    arrays, origin = _load_start(hs)
    dycore = hs_dycore.get_dycore(hs.truncation, hs.layers, hs.dt_minutes)
    return dycore, _initial_state(dycore, arrays, hs), origin


# ------------------------------------------------------------------------ integration


def _model_steps(dycore: Dycore, days: float, field: str) -> int:
    """Whole model steps in ``days`` simulated days; raises ValueError naming ``field`` otherwise."""
    steps = days * 24 * 60 / dycore.dt_minutes
    if not math.isclose(steps, round(steps), rel_tol=0, abs_tol=1e-6):
        raise ValueError(f"{field}={days:g} days is not a whole number of {dycore.dt_minutes:g}-minute steps")
    return round(steps)


def output_steps(days: float) -> int:
    """Number of 6-hourly outputs in a record of ``days`` days (the last one at start + days - 6 h)."""
    count = math.floor(days * CHUNKS_PER_DAY + 1e-9)
    if count < 1:
        raise ValueError(f"heldsuarez.days={days:g} is shorter than one {TIME_STEP_HOURS}-hour output step")
    return count


def _advance(dycore: Dycore, state, n_steps: int, bar: tqdm, chunk_hook=None):
    """Integrates ``n_steps`` model steps in 6-hour chunks, updating ``bar`` in days.

    ``chunk_hook(state, day)`` is called after every chunk that completes a whole simulated day.
    """
    done = 0
    while done < n_steps:
        steps = min(dycore.steps_per_chunk, n_steps - done)
        state = dycore.advance(state, steps)
        done += steps
        bar.update(steps * dycore.dt_minutes / 1440.0)
        day = done * dycore.dt_minutes / 1440.0
        if chunk_hook is not None and math.isclose(day, round(day), abs_tol=1e-9):
            chunk_hook(state, round(day))
    return state


def _check_finite(dycore: Dycore, values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(
            f"Held-Suarez model blew up: {what} is not finite at T{dycore.truncation} L{dycore.layers} "
            f"with heldsuarez.dt_minutes={dycore.dt_minutes:g}; use a shorter time step"
        )


def _progress(total_days: float, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total_days,
        desc=desc,
        unit="day",
        disable=not enabled,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} simulated days [{elapsed}<{remaining}]",
    )


# --------------------------------------------------------------------------- generate


def _validate_levels(levels: Sequence[int]) -> tuple[int, ...]:
    values = [int(lv) for lv in levels]
    if not values:
        raise ValueError("levels: at least one pressure level (hPa) is required")
    bad = [lv for lv in values if not 1 <= lv <= 1100]
    if bad or len(set(values)) != len(values):
        raise ValueError(f"levels: expected distinct pressure levels in 1..1100 hPa, got {list(levels)}")
    return tuple(sorted(values))


def _times(start, count: int) -> np.ndarray:
    """``count`` 6-hourly datetime64[ns] values from ``start`` (tz-aware starts are taken in UTC)."""
    t0 = pd.Timestamp(start)
    if t0.tzinfo is not None:
        t0 = t0.tz_convert("UTC").tz_localize(None)
    return t0.to_datetime64().astype("datetime64[ns]") + np.arange(count) * np.timedelta64(TIME_STEP_HOURS, "h")


def generate(
    hs: HeldSuarezParams,
    levels: Sequence[int],
    *,
    progress: bool = True,
    keep_states: tuple[np.datetime64, np.datetime64] | None = None,
) -> xr.Dataset:
    """Runs the Held-Suarez model and returns 6-hourly WB2-style fields.

    The model starts from ``hs.restart`` plus seeded temperature noise,
    integrates ``hs.spinup_days`` (discarded), then records the state every
    6 hours for ``hs.days`` days.

    Args:
      hs: generator settings (resolution, time step, seed, restart, record window).
      levels: output pressure levels in hPa (sorted ascending in the output).
      progress: show a progress bar over simulated days.
      keep_states: ``(first, last)`` valid times (inclusive): the model's own
        spectral states at the outputs in that window are returned too, as the
        truth's initial conditions for the physics baseline
        (:mod:`zonda.data.hs_baseline`); see :func:`states_dataset` for their layout.

    Returns:
      Dataset with coordinates ``time`` (n = floor(4 * hs.days), datetime64[ns],
      from hs.start every 6 h), ``level`` (int64, hPa, ascending), ``latitude``
      (32, float64, degrees_north, -87.1875..87.1875 ascending) and
      ``longitude`` (64, float64, degrees_east, 0..354.375), and float32
      variables ``temperature`` (K), ``geopotential`` (m**2 s**-2),
      ``u_component_of_wind`` and ``v_component_of_wind`` (m s**-1) with dims
      (time, level, latitude, longitude); ``surface_pressure`` (Pa) with dims
      (time, latitude, longitude); static ``geopotential_at_surface``
      (m**2 s**-2, zeros) with dims (latitude, longitude). With ``keep_states``
      also the state variables of :func:`states_dataset`
      (layout in :mod:`zonda.data.truth_states`).

    Raises:
      FileNotFoundError / RestartError: the restart is missing or does not fit.
      FloatingPointError: the integration produced NaN/inf (time step too long).
    """
    level_tuple = _validate_levels(levels)
    n_out = output_steps(hs.days)
    dycore, state, origin = initial_model_state(hs)
    spin_steps = _model_steps(dycore, hs.spinup_days, "heldsuarez.spinup_days")
    diagnose = hs_dycore.get_diagnostics(dycore, level_tuple)
    times = _times(hs.start, n_out)

    keep = np.zeros(n_out, bool)
    if keep_states is not None:
        first, last = (np.datetime64(t, "ns") for t in keep_states)
        keep = (times >= first) & (times <= last)
    kept: list[dict[str, np.ndarray]] = []

    with _progress(hs.spinup_days + n_out / CHUNKS_PER_DAY, "Held-Suarez", progress) as bar:
        state = _advance(dycore, state, spin_steps, bar)
        raw = _record(dycore, diagnose, state, n_out, len(level_tuple), times, bar, keep=keep, kept=kept)

    fields = {name: _to_wb2_layout(hs_dycore.dimensionalize(dycore, name, values)) for name, values in raw.items()}
    ds = _assemble(fields, times, level_tuple, _source_attrs(hs, dycore, origin))
    if keep_states is not None:
        ds = xr.merge([ds, states_dataset(dycore, kept, times[keep])], combine_attrs="override")
    return ds


def states_dataset(dycore: Dycore, states: list[dict[str, np.ndarray]], times: np.ndarray) -> xr.Dataset:
    """The model's modal states at ``times`` as a Dataset (nondimensional, dinosaur's layout).

    Variables ``hs_state_<field>`` for the :data:`~zonda.data.hs_dycore.STATE_FIELDS`,
    float32, dims ``(state_time, hs_layer | hs_surface, hs_m, hs_l)``: shape
    ``(n, layers, 2T+1, T+2)`` (``(n, 1, 2T+1, T+2)`` for ``log_surface_pressure``),
    with ``hs_m`` the interleaved zonal wavenumbers ``0, 1, -1, 2, -2, ...`` and
    ``hs_l`` the total wavenumbers ``0..T+1``. Each variable's attributes record
    the model (truncation, layers, dt, reference temperature) so a reader can rebuild it.
    """
    attrs = {
        "hs_truncation": int(dycore.truncation),
        "hs_layers": int(dycore.layers),
        "hs_dt_minutes": float(dycore.dt_minutes),
        "hs_reference_temperature_K": float(np.mean(dycore.reference_temperature)),
        "units": "1",
        "long_name": "dinosaur modal state (nondimensional)",
    }
    data_vars = {}
    for name in hs_dycore.STATE_FIELDS:
        values = np.stack([s[name] for s in states]) if states else np.zeros((0, *_modal_shape(dycore, name)), np.float32)
        vertical = "hs_surface" if name == "log_surface_pressure" else "hs_layer"
        data_vars[STATE_PREFIX + name] = ((STATE_TIME, vertical, "hs_m", "hs_l"), values.astype(np.float32), attrs)
    return xr.Dataset(data_vars, coords={STATE_TIME: np.asarray(times, "datetime64[ns]")})


def _modal_shape(dycore: Dycore, name: str) -> tuple[int, ...]:
    return dycore.surface_modal_shape if name == "log_surface_pressure" else dycore.modal_shape


def _record(
    dycore: Dycore, diagnose, state, n_out: int, n_levels: int, times: np.ndarray, bar: tqdm,
    *, keep: np.ndarray, kept: list[dict[str, np.ndarray]],
) -> dict:
    """Integrates ``n_out`` outputs; returns nondimensional arrays (time, [level,] lon, lat).

    The modal state at every output ``i`` with ``keep[i]`` is appended to ``kept``.
    """
    nx, ny = hs_dycore.OUTPUT_LONGITUDES, hs_dycore.OUTPUT_LATITUDES
    raw = {name: np.empty((n_out, n_levels, nx, ny), np.float32) for name in ATMOSPHERIC}
    raw["surface_pressure"] = np.empty((n_out, nx, ny), np.float32)
    for i in range(n_out):
        if i:
            state = _advance(dycore, state, dycore.steps_per_chunk, bar)
        for name, values in diagnose(state).items():
            raw[name][i] = np.asarray(values)
        if keep[i]:
            kept.append(hs_dycore.state_to_arrays(state))
        _check_finite(dycore, raw["surface_pressure"][i], f"surface_pressure at {times[i]}")
        if i == 0:
            bar.update(1.0 / CHUNKS_PER_DAY)  # the first output costs no integration
    for name, values in raw.items():
        _check_finite(dycore, values, name)
    return raw


def _to_wb2_layout(values: np.ndarray) -> np.ndarray:
    """(..., lon, lat) -> (..., lat, lon), C-contiguous float32."""
    return np.ascontiguousarray(np.swapaxes(values, -1, -2), dtype=np.float32)


def _var_attrs(name: str) -> dict[str, str]:
    entry = variable(name)
    attrs = {"units": entry.units, "long_name": entry.long_name}
    if entry.standard_name:
        attrs["standard_name"] = entry.standard_name
    return attrs


def _coords(times: np.ndarray, levels: tuple[int, ...]) -> dict[str, Any]:
    return {
        "time": ("time", times, {"long_name": "time", "standard_name": "time", "axis": "T"}),
        "level": ("level", np.asarray(levels, np.int64), {
            "units": "hPa", "long_name": "pressure_level", "standard_name": "air_pressure",
            "positive": "down", "axis": "Z",
        }),
        "latitude": ("latitude", hs_dycore.wb2_latitudes(), {
            "units": "degrees_north", "long_name": "latitude", "standard_name": "latitude", "axis": "Y",
        }),
        "longitude": ("longitude", hs_dycore.wb2_longitudes(), {
            "units": "degrees_east", "long_name": "longitude", "standard_name": "longitude", "axis": "X",
        }),
    }


def _assemble(fields: dict[str, np.ndarray], times, levels, attrs: dict[str, Any]) -> xr.Dataset:
    data_vars = {name: (("time", "level", "latitude", "longitude"), fields[name], _var_attrs(name)) for name in ATMOSPHERIC}
    data_vars["surface_pressure"] = (("time", "latitude", "longitude"), fields["surface_pressure"], _var_attrs("surface_pressure"))
    flat = np.zeros((hs_dycore.OUTPUT_LATITUDES, hs_dycore.OUTPUT_LONGITUDES), np.float32)  # Held-Suarez planet is flat
    data_vars["geopotential_at_surface"] = (("latitude", "longitude"), flat, _var_attrs("geopotential_at_surface"))
    return xr.Dataset(data_vars, coords=_coords(times, levels), attrs=attrs)


def _source_attrs(hs: HeldSuarezParams, dycore: Dycore, origin: str) -> dict[str, Any]:
    return {
        "title": "Held-Suarez (1994) idealised dry climate",
        "source": (
            f"dinosaur {dinosaur.__version__} (jax {jax.__version__}) primitive equations with Held-Suarez forcing, "
            f"T{hs.truncation}, {hs.layers} equidistant sigma levels, dt {hs.dt_minutes:g} min, IMEX RK SIL3, "
            f"seed {hs.seed}, temperature perturbation {hs.perturbation:g} K, spin-up {hs.spinup_days:g} days, "
            f"restart {origin}"
        ),
        "Conventions": "CF-1.8",
        "dinosaur_version": dinosaur.__version__,
        "truncation": int(hs.truncation),
        "sigma_levels": int(hs.layers),
        "dt_minutes": float(hs.dt_minutes),
        "seed": int(hs.seed),
        "perturbation_K": float(hs.perturbation),
        "spinup_days": float(hs.spinup_days),
        "restart": origin,
    }


# ---------------------------------------------------------------------------- spin-up


def spin_up(hs: HeldSuarezParams, days: float, out_path: str | Path, *, progress: bool = True) -> Path:
    """Spins the model up from rest for ``days`` days and writes the final state as a restart.

    Starts from an isothermal 288 K atmosphere at rest (p0 = 1e5 Pa, with a
    5e3 Pa surface-pressure bump placed by ``hs.seed``) plus ``hs.perturbation``
    K of seeded temperature noise, at ``hs.truncation``, ``hs.layers`` and
    ``hs.dt_minutes``.  The restart metadata records the settings and daily
    diagnostics (mass-weighted global-mean kinetic energy in m**2 s**-2, the
    strongest zonal-mean zonal wind per hemisphere in m s**-1) and their means
    over the last two 50-day windows, to judge whether the state is steady.

    Returns:
      ``out_path`` as a Path, written atomically (see :mod:`zonda.data.hs_restart`).
    """
    dycore = hs_dycore.get_dycore(hs.truncation, hs.layers, hs.dt_minutes)
    n_steps = _model_steps(dycore, days, "spin-up days")
    state = _initial_state(dycore, None, hs)
    daily: dict[str, list[float]] = {"day": [], "kinetic_energy": [], "jet_sh": [], "jet_nh": []}

    def record(s, day: int) -> None:
        values = hs_dycore.dimensionalize_energy(dycore, *dycore.energy(s))
        _check_finite(dycore, np.array(list(values.values())), f"the state on spin-up day {day}")
        daily["day"].append(day)
        for key, value in values.items():
            daily[key].append(round(value, 4))

    with _progress(days, "Held-Suarez spin-up", progress) as bar:
        state = _advance(dycore, state, n_steps, bar, chunk_hook=record)
    arrays = hs_dycore.state_to_arrays(state)
    for name, values in arrays.items():
        _check_finite(dycore, values, f"final spin-up {name}")
    metadata = {
        "truncation": hs.truncation,
        "layers": hs.layers,
        "dt_minutes": float(hs.dt_minutes),
        "spinup_days": float(days),
        "seed": hs.seed,
        "perturbation_K": float(hs.perturbation),
        "dinosaur_version": dinosaur.__version__,
        "jax_version": jax.__version__,
        "reference_temperature_K": hs_dycore.REFERENCE_TEMPERATURE_K,
        "spectral_layout": "dinosaur RealSphericalHarmonics modal, nondimensional (dinosaur default scale)",
        "diagnostics_daily": daily,
        "steadiness": steadiness(daily, STEADINESS_WINDOW_DAYS),
    }
    return write_restart(out_path, arrays, metadata)


def steadiness(daily: dict[str, list[float]], window: int) -> dict[str, float] | None:
    """Means of each daily diagnostic over the last ``window`` days and the ``window`` days before.

    Returns ``None`` when fewer than ``2 * window`` days were recorded, else a
    dict with ``<name>_last``, ``<name>_previous`` and ``<name>_relative_change``
    (last / previous - 1) for kinetic_energy, jet_sh and jet_nh.
    """
    if len(daily["day"]) < 2 * window:
        return None
    out: dict[str, float] = {"window_days": window}
    for key in ("kinetic_energy", "jet_sh", "jet_nh"):
        series = np.asarray(daily[key])
        last, previous = series[-window:].mean(), series[-2 * window:-window].mean()
        out[f"{key}_last"] = round(float(last), 4)
        out[f"{key}_previous"] = round(float(previous), 4)
        out[f"{key}_relative_change"] = round(float(last / previous - 1.0), 4)
    return out


# ------------------------------------------------------------------------------- CLI


def main_heldsuarez(
    params: Params,
    out: Path | None,
    spinup_days: float | None,
    write_restart: Path | None,
    *,
    progress: bool = True,
) -> None:
    """What ``zonda data heldsuarez`` does.

    - ``write_restart``: spin up from rest for ``spinup_days`` (default 300)
      days with ``params.data.heldsuarez`` and write the restart there.
    - ``out`` (``.nc`` or ``.zarr``): generate ``params.data.heldsuarez.days``
      days on ``params.data.levels`` and write them atomically.  ``spinup_days``
      overrides ``heldsuarez.spinup_days``; if a restart was just written, the
      data start from it with no further spin-up.

    ``progress`` shows progress bars over simulated days.
    """
    if out is None and write_restart is None:
        raise ValueError("zonda data heldsuarez: give an output path (.nc/.zarr) and/or --write-restart PATH")
    if out is not None:
        _output_format(Path(out))  # fail before hours of integration
        _check_requested_variables(params)
    hs = params.data.heldsuarez
    if write_restart is not None:
        days = DEFAULT_RESTART_SPINUP_DAYS if spinup_days is None else spinup_days
        path = spin_up(hs, days, write_restart, progress=progress)
        print(f"wrote Held-Suarez restart {path} ({days:g} days from rest)")
        hs = _with(hs, restart=str(path), spinup_days=0.0)
    elif spinup_days is not None:
        hs = _with(hs, spinup_days=spinup_days)
    if out is not None:
        ds = generate(hs, params.data.levels, progress=progress)
        written = write_dataset(ds, Path(out), chunk_time=params.data.chunk_time)
        print(f"wrote Held-Suarez data {written}")


def _with(hs: HeldSuarezParams, **changes: Any) -> HeldSuarezParams:
    """A validated copy of ``hs`` with ``changes`` applied."""
    return HeldSuarezParams.model_validate({**hs.model_dump(), **changes})


def _check_requested_variables(params: Params) -> None:
    missing = [n for n in (*params.data.variables, *params.data.static) if n not in PRODUCED]
    if missing:
        raise ValueError(
            f"data.variables/data.static ask for {missing}, which the Held-Suarez generator does not produce "
            f"(it produces {', '.join(PRODUCED)})"
        )


def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".zarr"):
        raise ValueError(f"output path {path}: expected a .nc or .zarr suffix, got {suffix or 'none'!r}")
    return suffix


def write_dataset(ds: xr.Dataset, out: Path, *, chunk_time: int = 8) -> Path:
    """Writes ``ds`` to ``out`` atomically: .nc via h5netcdf, .zarr as a consolidated zarr v2 store
    (the ARCO-ERA5 / WeatherBench2 layout) with ``chunk_time`` time steps per chunk.

    The data are written under a temporary name beside ``out`` and renamed into place.
    """
    out = Path(out)
    suffix = _output_format(out)
    with atomic_path(out) as tmp:
        if suffix == ".nc":
            ds.to_netcdf(tmp, engine="h5netcdf")
        else:
            ds.to_zarr(tmp, mode="w", encoding=_zarr_encoding(ds, chunk_time), zarr_format=2, consolidated=True)
    return out


def _zarr_encoding(ds: xr.Dataset, chunk_time: int) -> dict[str, dict[str, tuple[int, ...]]]:
    encoding = {}
    for name, da in ds.data_vars.items():
        chunks = tuple(min(chunk_time, n) if dim == "time" else n for dim, n in zip(da.dims, da.shape))
        encoding[name] = {"chunks": chunks}
    return encoding
