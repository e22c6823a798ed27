"""Heights of pressure levels in the US Standard Atmosphere 1976, and plausible geopotential per level.

The standard atmosphere is a stack of layers, each with a constant lapse rate
``L_b`` (K per geopotential metre) from geopotential height ``H_b``, temperature
``T_b`` and pressure ``p_b`` at its base (U.S. Standard Atmosphere, 1976,
NOAA/NASA/USAF, Table 4 and eqs. 33a/33b). Inverting the hydrostatic pressure
law for the height ``H`` of pressure ``p`` in layer ``b``::

    H = H_b + (T_b / L_b) * ((p / p_b) ** (-R* L_b / (g0 M)) - 1)     (L_b != 0)
    H = H_b + (R* T_b / (g0 M)) * ln(p_b / p)                          (L_b == 0)

with R* = 8.31432 J mol-1 K-1, M = 0.0289644 kg mol-1, g0 = 9.80665 m s-2
(the layer bases' pressures ``p_b`` follow from the same two formulas). In
the troposphere this is the familiar ``H = 44330.8 m * (1 - (p / 1013.25 hPa) ** 0.190263)``.
Geopotential is ``Phi = g0 * H`` (m**2 s**-2).
"""

from __future__ import annotations

import math

import numpy as np

G0 = 9.80665  # m s-2, standard gravity
R_STAR = 8.31432  # J mol-1 K-1, the 1976 standard's gas constant
MOLAR_MASS = 0.0289644  # kg mol-1, dry air
P0_HPA = 1013.25

# (base geopotential height m, lapse rate K per m) of the layers up to 84.852 km (geometric 86 km).
_LAYERS = ((0.0, -0.0065), (11000.0, 0.0), (20000.0, 0.001), (32000.0, 0.0028),
           (47000.0, 0.0), (51000.0, -0.0028), (71000.0, -0.002))
_TOP_HEIGHT = 84852.0
_T0 = 288.15  # K at sea level


def _bases() -> list[tuple[float, float, float, float]]:
    """(H_b m, L_b K/m, T_b K, p_b hPa) of every layer, pressures carried up from 1013.25 hPa."""
    out, temperature, pressure = [], _T0, P0_HPA
    for i, (height, lapse) in enumerate(_LAYERS):
        out.append((height, lapse, temperature, pressure))
        top = _LAYERS[i + 1][0] if i + 1 < len(_LAYERS) else _TOP_HEIGHT
        pressure = _pressure_at(top, height, lapse, temperature, pressure)
        temperature += lapse * (top - height)
    return out


def _pressure_at(h: float, h_b: float, lapse: float, t_b: float, p_b: float) -> float:
    if lapse == 0.0:
        return p_b * math.exp(-G0 * MOLAR_MASS * (h - h_b) / (R_STAR * t_b))
    return p_b * (t_b / (t_b + lapse * (h - h_b))) ** (G0 * MOLAR_MASS / (R_STAR * lapse))


_BASES = _bases()
TOP_PRESSURE_HPA = _pressure_at(_TOP_HEIGHT, *_BASES[-1])  # ~0.0037 hPa


def standard_height(level_hpa: float) -> float:
    """Geopotential height (m) of the pressure ``level_hpa`` in the US Standard Atmosphere 1976.

    Defined from ``TOP_PRESSURE_HPA`` (84.852 km) downwards; pressures above
    1013.25 hPa extend the tropospheric layer below sea level (negative heights).
    """
    p = float(level_hpa)
    if not p >= TOP_PRESSURE_HPA:
        raise ValueError(f"pressure {level_hpa} hPa is above the 1976 standard atmosphere's top ({TOP_PRESSURE_HPA:.4f} hPa)")
    for h_b, lapse, t_b, p_b in reversed(_BASES):
        if p <= p_b or h_b == 0.0:
            if lapse == 0.0:
                return h_b + R_STAR * t_b / (G0 * MOLAR_MASS) * math.log(p_b / p)
            return h_b + t_b / lapse * ((p / p_b) ** (-R_STAR * lapse / (G0 * MOLAR_MASS)) - 1.0)
    raise AssertionError("unreachable")  # pragma: no cover - the sea-level layer takes every p


# Margins of plausible geopotential around the standard atmosphere, in height. The hypsometric
# equation H = (R T_mean / g0) ln(p_s / p) makes the height of a level proportional to the mean
# temperature of the column below it: real columns are at most about 20% colder (polar night) or
# 15% warmer (subtropics) than the standard's, hence the factors 0.75 and 1.2. The 1500 m covers the
# spread of the surface pressure (sea-level extremes 870..1085 hPa put 1000 hPa about -1200..+600 m
# high) and the extrapolation of levels below ground. ERA5 and the Held-Suarez record lie well inside
# (README "Faults caught"); geopotential *height* in metres mislabelled m**2 s**-2 is g0 = 9.8 times
# too small and falls below the lower bound at every level from about 730 hPa up.
_COLD, _WARM, _SLACK_M = 0.75, 1.2, 1500.0


def plausible_geopotential(level_hpa: float) -> tuple[float, float]:
    """(min, max) plausible geopotential (m**2 s**-2) at pressure ``level_hpa`` on an Earth-like planet.

    ``g0 * (0.75 H - 1500 m)`` to ``g0 * (1.2 H + 1500 m)`` around the standard
    height ``H`` (factors swapped where ``H < 0``); for Z500 (H = 5574 m) about
    2.6e4 to 8.0e4, where observed Z500 lies within 4.6e4 to 6.0e4.
    """
    h = standard_height(level_hpa)
    low, high = sorted((_COLD * h, _WARM * h))
    return G0 * (low - _SLACK_M), G0 * (high + _SLACK_M)


#: J kg-1 K-1, the specific gas constant of dry air (R* / M).
R_DRY = R_STAR / MOLAR_MASS


def layer_mean_temperature(thickness: np.ndarray, *, p_bottom_hpa: float, p_top_hpa: float) -> np.ndarray:
    """Mean virtual temperature (K) of the layer between two pressure levels with geopotential ``thickness``
    (``phi(p_top) - phi(p_bottom)``, m**2 s**-2), from the hypsometric equation
    ``phi(p_top) - phi(p_bottom) = R_d T_mean ln(p_bottom / p_top)``.

    Geopotential *height* in metres mislabelled as geopotential makes the thickness g0 = 9.8
    times too small, hence a layer "temperature" near 30 K at every level pair.
    """
    if not p_bottom_hpa > p_top_hpa > 0:
        raise ValueError(f"need p_bottom > p_top > 0, got {p_bottom_hpa} and {p_top_hpa} hPa")
    return np.asarray(thickness) / (R_DRY * math.log(p_bottom_hpa / p_top_hpa))
