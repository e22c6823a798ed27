"""The one catalogue of physical variables zonda knows: names, units, kinds.

Names, units and dimensions follow ARCO-ERA5 / WeatherBench2, so a snapshot
made from ERA5 and one made from the Held-Suarez generator look the same to
every later stage.  Every stage looks variables up here; nothing else in the
code base spells a unit string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from zonda.standard_atmosphere import plausible_geopotential

Kind = Literal["atmospheric", "surface", "static", "forcing"]


@dataclass(frozen=True)
class Variable:
    """A physical variable as stored in a snapshot.

    Attributes:
      name: ARCO-ERA5 / WB2 name (the zarr array name).
      units: CF/udunits string that the snapshot must carry.
      kind: ``atmospheric`` has a ``level`` dim; ``surface`` is 2-D per time;
        ``static`` has no time dim; ``forcing`` is derived from the clock.
      long_name: CF long_name.
      valid_range: physically plausible (min, max), used by validation to catch
        unit mix-ups; for a variable with ``level_range``, the envelope over all levels.
      standard_name: CF standard name where one exists.
      grib_name: the name cfgrib gives the variable when it reads ECMWF GRIB
        (the ecCodes ``cfVarName``: ``t``, ``z``, ``t2m``, ...), or None where a
        GRIB field does not map one to one (accumulations, surface geopotential).
      level_range: plausible (min, max) at a pressure level (hPa), where the
        physics makes it depend on the level (geopotential: from the standard
        atmosphere, so geopotential height in m labelled m**2 s**-2 is caught).
      may_be_constant: a whole field may legitimately be one value at a time
        (precipitation over a dry region); otherwise a constant field is flagged.
    """

    name: str
    units: str
    kind: Kind
    long_name: str
    valid_range: tuple[float, float]
    standard_name: str | None = None
    grib_name: str | None = None
    level_range: Callable[[float], tuple[float, float]] | None = None
    may_be_constant: bool = False

    def plausible_range(self, level_hpa: float | None = None) -> tuple[float, float]:
        """(min, max) plausible values, at ``level_hpa`` where the variable has a per-level range."""
        if level_hpa is not None and self.level_range is not None:
            return self.level_range(float(level_hpa))
        return self.valid_range

    @property
    def has_levels(self) -> bool:
        return self.kind == "atmospheric"

    @property
    def has_time(self) -> bool:
        return self.kind != "static"


_CATALOGUE = [
    Variable("temperature", "K", "atmospheric", "Temperature", (150.0, 350.0), "air_temperature", "t"),
    Variable(  # envelope: plausible_geopotential from 1100 to 0.1 hPa
        "geopotential", "m**2 s**-2", "atmospheric", "Geopotential", (-2.5e4, 8.0e5), "geopotential", "z",
        level_range=plausible_geopotential,
    ),
    Variable("u_component_of_wind", "m s**-1", "atmospheric", "U component of wind", (-250.0, 250.0), "eastward_wind", "u"),
    Variable("v_component_of_wind", "m s**-1", "atmospheric", "V component of wind", (-250.0, 250.0), "northward_wind", "v"),
    Variable("specific_humidity", "kg kg**-1", "atmospheric", "Specific humidity", (0.0, 0.1), "specific_humidity", "q"),
    Variable(
        "vertical_velocity", "Pa s**-1", "atmospheric", "Vertical velocity", (-50.0, 50.0), "lagrangian_tendency_of_air_pressure", "w"
    ),
    Variable("surface_pressure", "Pa", "surface", "Surface pressure", (3.0e4, 1.2e5), "surface_air_pressure", "sp"),
    Variable("mean_sea_level_pressure", "Pa", "surface", "Mean sea level pressure", (8.0e4, 1.2e5), "air_pressure_at_mean_sea_level", "msl"),
    Variable("2m_temperature", "K", "surface", "2 metre temperature", (150.0, 350.0), "air_temperature", "t2m"),
    Variable("10m_u_component_of_wind", "m s**-1", "surface", "10 metre U wind component", (-150.0, 150.0), "eastward_wind", "u10"),
    Variable("10m_v_component_of_wind", "m s**-1", "surface", "10 metre V wind component", (-150.0, 150.0), "northward_wind", "v10"),
    Variable(
        "total_precipitation_6hr", "m", "surface", "Total precipitation over 6 hours", (0.0, 1.0), "precipitation_amount",
        may_be_constant=True,
    ),
    Variable("geopotential_at_surface", "m**2 s**-2", "static", "Geopotential at surface (orography)", (-5.0e3, 1.0e5), "surface_geopotential"),
    Variable("land_sea_mask", "1", "static", "Land-sea mask", (0.0, 1.0), "land_binary_mask"),
    Variable(
        "toa_incident_solar_radiation", "J m**-2", "forcing", "TOA incident solar radiation accumulated over 1 hour", (0.0, 5.0e6),
        "toa_incoming_shortwave_flux",
    ),
    Variable("year_progress_sin", "1", "forcing", "sin(2 pi * fraction of the year elapsed)", (-1.0, 1.0)),
    Variable("year_progress_cos", "1", "forcing", "cos(2 pi * fraction of the year elapsed)", (-1.0, 1.0)),
    Variable("day_progress_sin", "1", "forcing", "sin(2 pi * local solar fraction of the day)", (-1.0, 1.0)),
    Variable("day_progress_cos", "1", "forcing", "cos(2 pi * local solar fraction of the day)", (-1.0, 1.0)),
]

VARIABLES: dict[str, Variable] = {v.name: v for v in _CATALOGUE}

# The 13 WeatherBench2 pressure levels and the 37 ERA5 pressure levels, in hPa.
WB2_LEVELS_13 = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
ERA5_LEVELS_37 = (
    1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 125, 150, 175, 200, 225, 250, 300, 350,
    400, 450, 500, 550, 600, 650, 700, 750, 775, 800, 825, 850, 875, 900, 925, 950, 975, 1000,
)

# Time step of every snapshot: GraphCast/AIFS predict 6-hour tendencies.
TIME_STEP_HOURS = 6
TIME_STEP = np.timedelta64(TIME_STEP_HOURS, "h")


def lead_timedeltas(steps: int) -> np.ndarray:
    """``(steps,)`` ``timedelta64[ns]`` leads 6 h, 12 h, ..., the ``prediction_timedelta`` coordinate."""
    return (np.arange(1, int(steps) + 1) * TIME_STEP).astype("timedelta64[ns]")


def variable(name: str) -> Variable:
    """Returns the catalogue entry for ``name`` or raises KeyError naming it."""
    try:
        return VARIABLES[name]
    except KeyError:
        known = ", ".join(sorted(VARIABLES))
        raise KeyError(f"unknown variable {name!r}; known variables: {known}") from None


# Names other archives use for WB2 dims (a source's are mapped to these when it is opened).
DIM_ALIASES = {
    "lat": "latitude",
    "lon": "longitude",
    "plev": "level",
    "pressure_level": "level",
    "isobaricInhPa": "level",
    "valid_time": "time",
}


def grib_renames() -> dict[str, str]:
    """cfgrib variable name -> catalogue name, for every variable with a GRIB counterpart."""
    return {v.grib_name: v.name for v in _CATALOGUE if v.grib_name}


def names_of_kind(kind: Kind) -> list[str]:
    """Names of all catalogue variables of one kind, in catalogue order."""
    return [v.name for v in _CATALOGUE if v.kind == kind]


#: CF attributes of the WB2 coordinates of a forecast store (``time`` = initialisation time,
#: ``prediction_timedelta`` = lead). Datetime/timedelta coordinates carry no ``units``: xarray encodes those.
FORECAST_COORDINATE_ATTRS: dict[str, dict[str, str]] = {
    "time": {"standard_name": "forecast_reference_time", "long_name": "initialisation time", "axis": "T"},
    "prediction_timedelta": {"standard_name": "forecast_period", "long_name": "lead time of the forecast"},
    "level": {
        "units": "hPa", "standard_name": "air_pressure", "long_name": "pressure level", "positive": "down", "axis": "Z",
    },
    "latitude": {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude", "axis": "Y"},
    "longitude": {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude", "axis": "X"},
}
CF_CONVENTIONS = "CF-1.8"


def forecast_cf_attrs(ds: Any) -> Any:
    """``ds`` (an ``xarray.Dataset`` in the WB2 forecast layout) with CF attributes: those of
    :data:`FORECAST_COORDINATE_ATTRS` on its coordinates, each catalogued variable's units,
    long_name and standard_name, and ``Conventions``; other attributes are kept."""
    ds = ds.copy()
    for name, attrs in FORECAST_COORDINATE_ATTRS.items():
        if name in ds.coords:
            ds[name].attrs.update(attrs)
    for name in ds.data_vars:
        if name in VARIABLES:
            meta = VARIABLES[name]
            ds[name].attrs.update({"units": meta.units, "long_name": meta.long_name})
            if meta.standard_name:
                ds[name].attrs["standard_name"] = meta.standard_name
    ds.attrs["Conventions"] = CF_CONVENTIONS
    return ds
