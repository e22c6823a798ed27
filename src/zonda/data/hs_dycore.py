"""The dinosaur dynamical core set up for the Held-Suarez (1994) test case.

This module owns everything that touches dinosaur and JAX: building the
spectral model (primitive equations on equidistant sigma levels, composed with
Held-Suarez forcing, stepped by IMEX RK SIL3 with an exponential filter), the
jitted integrator, and the jitted diagnostics that turn a modal state into
fields on the WeatherBench2 5.625 degree grid.

Everything inside a :class:`~dinosaur.primitive_equations.State` is
nondimensional (dinosaur's default scale: Earth radius = 1, 1/Omega = 1,
temperature in K).  The diagnostics return nondimensional arrays too;
:func:`dimensionalize` converts them with ``physics_specs.dimensionalize``.

Compiled functions are cached per process: one :class:`Dycore` per
``(truncation, layers, dt_minutes)`` and one diagnostics function per
``(dycore, pressure levels)``, so a second ``generate`` in the same process
does not compile again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from dinosaur import coordinate_systems
from dinosaur import held_suarez
from dinosaur import primitive_equations
from dinosaur import primitive_equations_states
from dinosaur import scales
from dinosaur import sigma_coordinates
from dinosaur import spherical_harmonic
from dinosaur import time_integration
from dinosaur import vertical_interpolation
from dinosaur import xarray_utils

UNITS = scales.units

# Held & Suarez (1994) setup, as in dinosaur's held_suarez notebook.
REFERENCE_SURFACE_PRESSURE_PA = 1.0e5  # p0
REST_PRESSURE_BUMP_PA = 5.0e3  # p1: amplitude of the surface-pressure bump in the rest state
REFERENCE_TEMPERATURE_K = 288.0  # isothermal reference/rest temperature
FILTER_TAU = 0.0087504  # exponential filter settings from the notebook
FILTER_ORDER = 1.5
FILTER_CUTOFF = 0.8

OUTPUT_HOURS = 6  # one chunk of integration = one output interval
# WeatherBench2 5.625 degree grid: 64 longitudes x 32 latitudes, no poles.
OUTPUT_LONGITUDES = 64
OUTPUT_LATITUDES = 32
# Largest total wavenumber representable on 64 longitudes (Nyquist m < 32).
OUTPUT_MAX_WAVENUMBER = 31


def wb2_latitudes() -> np.ndarray:
    """WB2 5.625 deg latitudes, shape (32,), degrees_north, ascending -87.1875..87.1875."""
    step = 180.0 / OUTPUT_LATITUDES
    return -90.0 + step / 2 + step * np.arange(OUTPUT_LATITUDES, dtype=np.float64)


def wb2_longitudes() -> np.ndarray:
    """WB2 5.625 deg longitudes, shape (64,), degrees_east, 0..354.375."""
    return (360.0 / OUTPUT_LONGITUDES) * np.arange(OUTPUT_LONGITUDES, dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class Dycore:
    """A compiled Held-Suarez model at one resolution and time step.

    Attributes:
      truncation: triangular spectral truncation T (21, 31 or 42).
      layers: number of equidistant sigma layers.
      dt_minutes: model time step in minutes.
      coords: dinosaur coordinate system (Gaussian grid, sigma levels).
      physics: dinosaur ``SimUnits`` (nondimensionalisation).
      reference_temperature: nondimensional reference temperature per layer, shape (layers,).
      steps_per_chunk: model steps per 6-hour output interval.
      advance: jitted ``(state, n_steps) -> state``; ``n_steps`` is a traced int,
        so any number of steps reuses one compilation.
      energy: jitted ``state -> (ke, jet_sh, jet_nh)``: mass-weighted global-mean
        kinetic energy and the maximum zonal-mean zonal wind in each hemisphere,
        all nondimensional scalars.
    """

    truncation: int
    layers: int
    dt_minutes: float
    coords: coordinate_systems.CoordinateSystem
    physics: primitive_equations.PrimitiveEquationsSpecs
    reference_temperature: np.ndarray
    steps_per_chunk: int
    advance: Callable[[primitive_equations.State, int], primitive_equations.State]
    energy: Callable[[primitive_equations.State], tuple[jax.Array, jax.Array, jax.Array]]

    @property
    def modal_shape(self) -> tuple[int, int, int]:
        """Shape (layers, 2M+1, M+2) of each 3-D modal state array."""
        return self.coords.modal_shape

    @property
    def surface_modal_shape(self) -> tuple[int, int, int]:
        """Shape (1, 2M+1, M+2) of the modal log surface pressure."""
        return self.coords.surface_modal_shape


def steps_per_chunk(dt_minutes: float) -> int:
    """Model steps per 6-hour output interval; raises ValueError unless 360/dt is whole."""
    ratio = OUTPUT_HOURS * 60.0 / dt_minutes
    steps = round(ratio)
    if steps < 1 or not math.isclose(ratio, steps, rel_tol=0, abs_tol=1e-9):
        raise ValueError(
            f"heldsuarez.dt_minutes={dt_minutes:g} does not divide the {OUTPUT_HOURS}-hour output "
            f"interval into whole steps; use e.g. 10, 15, 20, 30 or 60"
        )
    return steps


def gaussian_grid(truncation: int) -> spherical_harmonic.Grid:
    """dinosaur's Gaussian grid for triangular truncation ``T``: its named grid (T21, T31, ...) where one
    exists, else the alias-free quadratic grid with ``ceil((3T + 1) / 4)`` Gaussian latitudes per hemisphere
    (the same rule gives 16, 24 and 32 for T21, T31 and T42)."""
    if truncation < 2:
        raise ValueError(f"truncation T{truncation}: at least T2 is needed")
    named = getattr(spherical_harmonic.Grid, f"T{truncation}", None)
    if named is not None:
        return named()
    return spherical_harmonic.Grid.construct(max_wavenumber=truncation, gaussian_nodes=math.ceil((3 * truncation + 1) / 4))


@functools.lru_cache(maxsize=8)
def get_dycore(truncation: int, layers: int, dt_minutes: float) -> Dycore:
    """Builds (once per process and settings) the Held-Suarez model and its jitted functions."""
    chunk = steps_per_chunk(dt_minutes)
    coords = coordinate_systems.CoordinateSystem(
        horizontal=gaussian_grid(truncation),
        vertical=sigma_coordinates.SigmaCoordinates.equidistant(layers),
    )
    physics = primitive_equations.PrimitiveEquationsSpecs.from_si()
    _, aux = primitive_equations_states.isothermal_rest_atmosphere(
        coords=coords,
        physics_specs=physics,
        tref=REFERENCE_TEMPERATURE_K * UNITS.degK,
        p0=REFERENCE_SURFACE_PRESSURE_PA * UNITS.pascal,
        p1=REST_PRESSURE_BUMP_PA * UNITS.pascal,
    )
    ref_temps = np.asarray(aux[xarray_utils.REF_TEMP_KEY])
    orography = primitive_equations.truncated_modal_orography(aux[xarray_utils.OROGRAPHY], coords)
    dt = physics.nondimensionalize(dt_minutes * UNITS.minute)
    equations = time_integration.compose_equations([
        primitive_equations.PrimitiveEquations(ref_temps, orography, coords, physics),
        held_suarez.HeldSuarezForcing(
            coords=coords,
            physics_specs=physics,
            reference_temperature=ref_temps,
            p0=REFERENCE_SURFACE_PRESSURE_PA * UNITS.pascal,
        ),
    ])
    step = time_integration.step_with_filters(
        time_integration.imex_rk_sil3(equations, dt),
        [time_integration.exponential_step_filter(
            coords.horizontal, dt, tau=FILTER_TAU, order=FILTER_ORDER, cutoff=FILTER_CUTOFF)],
    )

    def advance(state: primitive_equations.State, n_steps: jax.Array) -> primitive_equations.State:
        return jax.lax.fori_loop(0, n_steps, lambda _, s: step(s), state)

    return Dycore(
        truncation=truncation,
        layers=layers,
        dt_minutes=float(dt_minutes),
        coords=coords,
        physics=physics,
        reference_temperature=ref_temps,
        steps_per_chunk=chunk,
        advance=jax.jit(advance),
        energy=jax.jit(functools.partial(_energy, coords)),
    )


def _energy(coords: coordinate_systems.CoordinateSystem, state: primitive_equations.State):
    """Mass-weighted global-mean kinetic energy and hemispheric zonal-mean jet maxima."""
    grid = coords.horizontal
    u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
    ps = jnp.exp(grid.to_nodal(state.log_surface_pressure))  # (1, lon, lat)
    dsigma = jnp.asarray(coords.vertical.layer_thickness)[:, None, None]
    ke = grid.integrate(jnp.sum(0.5 * (u**2 + v**2) * ps * dsigma, axis=0)) / grid.integrate(ps[0])
    zonal_u = jnp.max(jnp.mean(u, axis=1), axis=0)  # (lat,), jet core over levels
    north = jnp.asarray(grid.nodal_axes[1] > 0)
    jet_nh = jnp.max(jnp.where(north, zonal_u, -jnp.inf))
    jet_sh = jnp.max(jnp.where(north, -jnp.inf, zonal_u))
    return ke, jet_sh, jet_nh


# --------------------------------------------------------------------------- states


def rest_state(dycore: Dycore, rng: np.random.Generator) -> primitive_equations.State:
    """Isothermal (288 K) atmosphere at rest, p0=1e5 Pa with a 5e3 Pa bump placed by ``rng``."""
    state_fn, _ = primitive_equations_states.isothermal_rest_atmosphere(
        coords=dycore.coords,
        physics_specs=dycore.physics,
        tref=REFERENCE_TEMPERATURE_K * UNITS.degK,
        p0=REFERENCE_SURFACE_PRESSURE_PA * UNITS.pascal,
        p1=REST_PRESSURE_BUMP_PA * UNITS.pascal,
    )
    return state_fn(jax.random.PRNGKey(int(rng.integers(2**31))))


def perturb_temperature(
    dycore: Dycore, state: primitive_equations.State, amplitude_k: float, rng: np.random.Generator
) -> primitive_equations.State:
    """Adds Gaussian white noise of standard deviation ``amplitude_k`` (K) to the temperature.

    The noise is drawn on the model's nodal grid, shape (layers, lon, lat), and
    projected onto the retained spherical harmonics.
    """
    nodal_shape = (dycore.layers, *dycore.coords.horizontal.nodal_shape)
    noise = rng.standard_normal(nodal_shape) * dycore.physics.nondimensionalize(amplitude_k * UNITS.degK)
    modal_noise = dycore.coords.horizontal.to_modal(jnp.asarray(noise, dtype=jnp.float32))
    return dataclasses.replace(state, temperature_variation=state.temperature_variation + modal_noise)


def state_from_arrays(dycore: Dycore, arrays: dict[str, np.ndarray]) -> primitive_equations.State:
    """Builds a modal State from float arrays named like the State fields (nondimensional)."""
    return primitive_equations.State(
        vorticity=jnp.asarray(arrays["vorticity"], jnp.float32),
        divergence=jnp.asarray(arrays["divergence"], jnp.float32),
        temperature_variation=jnp.asarray(arrays["temperature_variation"], jnp.float32),
        log_surface_pressure=jnp.asarray(arrays["log_surface_pressure"], jnp.float32),
    )


STATE_FIELDS = ("vorticity", "divergence", "temperature_variation", "log_surface_pressure")


def state_to_arrays(state: primitive_equations.State) -> dict[str, np.ndarray]:
    """The modal State fields as float32 numpy arrays (nondimensional)."""
    return {name: np.asarray(getattr(state, name), dtype=np.float32) for name in STATE_FIELDS}


# ---------------------------------------------------------------------- diagnostics


def output_grid(truncation: int) -> spherical_harmonic.Grid:
    """Equiangular 64 x 32 grid (the WB2 5.625 deg grid) carrying up to T31 harmonics."""
    max_wavenumber = min(truncation, OUTPUT_MAX_WAVENUMBER)
    return spherical_harmonic.Grid(
        longitude_wavenumbers=max_wavenumber + 1,
        total_wavenumbers=max_wavenumber + 2,
        longitude_nodes=OUTPUT_LONGITUDES,
        latitude_nodes=OUTPUT_LATITUDES,
        latitude_spacing="equiangular",
    )


def check_output_grid(grid: spherical_harmonic.Grid) -> None:
    """Raises RuntimeError unless ``grid`` nodes are the WB2 5.625 deg grid, latitude ascending."""
    lon = np.degrees(grid.nodal_axes[0])
    lat = np.degrees(np.arcsin(grid.nodal_axes[1]))
    if not np.allclose(lon, wb2_longitudes(), rtol=0, atol=1e-9):
        raise RuntimeError(f"dinosaur output longitudes {lon[:3]}... differ from the WB2 grid")
    if not np.allclose(lat, wb2_latitudes(), rtol=0, atol=1e-9):
        raise RuntimeError(f"dinosaur output latitudes {lat[:3]}... differ from the WB2 grid (ascending)")


@functools.lru_cache(maxsize=16)
def get_diagnostics(dycore: Dycore, levels_hpa: tuple[int, ...]) -> Callable[[primitive_equations.State], dict]:
    """Jitted ``state -> fields`` on the WB2 grid and pressure levels ``levels_hpa`` (ascending).

    The returned dict holds nondimensional jax arrays with dinosaur's nodal
    axis order: ``temperature``, ``geopotential``, ``u_component_of_wind``,
    ``v_component_of_wind`` of shape (level, lon=64, lat=32) and
    ``surface_pressure`` of shape (lon=64, lat=32).
    """
    grid = output_grid(dycore.truncation)
    check_output_grid(grid)
    rows, cols = grid.modal_shape
    sigma = dycore.coords.vertical
    log_sigma = np.log(sigma.centers)
    pressures = np.asarray(
        [dycore.physics.nondimensionalize(100.0 * lv * UNITS.pascal) for lv in levels_hpa], dtype=np.float64
    )
    ref = jnp.asarray(dycore.reference_temperature, jnp.float32)[:, None, None]
    flat = jnp.zeros(grid.nodal_shape, jnp.float32)
    # Linear in log(sigma) = log(p / ps), linearly extrapolated past the top and bottom layers.
    interpolate = vertical_interpolation.vectorize_vertical_interpolation(
        vertical_interpolation.linear_interp_with_linear_extrap
    )

    def diagnose(state: primitive_equations.State) -> dict:
        vor, div, tv, lsp = (x[:, :rows, :cols] for x in (
            state.vorticity, state.divergence, state.temperature_variation, state.log_surface_pressure))
        u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, vor, div)
        temperature = ref + grid.to_nodal(tv)
        ps = jnp.exp(grid.to_nodal(lsp))  # (1, lon, lat)
        geopotential = primitive_equations.get_geopotential_on_sigma(
            temperature,
            nodal_orography=flat,
            sigma=sigma,
            gravity_acceleration=dycore.physics.g,
            ideal_gas_constant=dycore.physics.R,
        )
        target = jnp.log(jnp.asarray(pressures, jnp.float32)[:, None, None] / ps)
        on_pressure = {
            name: interpolate(target, log_sigma, field)
            for name, field in (
                ("temperature", temperature),
                ("geopotential", geopotential),
                ("u_component_of_wind", u),
                ("v_component_of_wind", v),
            )
        }
        return {**on_pressure, "surface_pressure": ps[0]}

    return jax.jit(diagnose)


# Units each diagnostic is dimensionalised to (SI; the strings in zonda.variables say the same).
_SI_UNITS = {
    "temperature": UNITS.degK,
    "geopotential": UNITS.meter**2 / UNITS.second**2,
    "u_component_of_wind": UNITS.meter / UNITS.second,
    "v_component_of_wind": UNITS.meter / UNITS.second,
    "surface_pressure": UNITS.pascal,
}


def dimensionalize(dycore: Dycore, name: str, values: np.ndarray) -> np.ndarray:
    """Converts nondimensional diagnostic ``name`` to SI float32 via ``physics_specs.dimensionalize``."""
    return np.asarray(dycore.physics.dimensionalize(np.asarray(values, np.float64), _SI_UNITS[name]).m, np.float32)


def dimensionalize_energy(dycore: Dycore, ke: float, jet_sh: float, jet_nh: float) -> dict[str, float]:
    """Energy diagnostics in SI: ke in m**2 s**-2 (J/kg), jets in m s**-1."""
    speed = UNITS.meter / UNITS.second
    return {
        "kinetic_energy": float(dycore.physics.dimensionalize(float(ke), speed**2).m),
        "jet_sh": float(dycore.physics.dimensionalize(float(jet_sh), speed).m),
        "jet_nh": float(dycore.physics.dimensionalize(float(jet_nh), speed).m),
    }
