"""The 1976 standard atmosphere's pressure-level heights and the plausible geopotential derived from them."""

from __future__ import annotations

import pytest

from zonda.standard_atmosphere import G0, plausible_geopotential, standard_height

# Geopotential heights (m) of the standard pressure levels in the ICAO / US 1976 standard atmosphere,
# as tabulated (e.g. WMO-No. 49 / aviation pressure-altitude tables).
PUBLISHED_HEIGHTS_M = {1000: 111, 850: 1457, 700: 3012, 500: 5574, 300: 9164, 250: 10363, 200: 11784,
                       150: 13608, 100: 16180, 50: 20576, 30: 23849, 10: 31055}


@pytest.mark.parametrize("level, height", sorted(PUBLISHED_HEIGHTS_M.items()))
def test_standard_heights_match_the_published_table(level: int, height: int) -> None:
    assert standard_height(level) == pytest.approx(height, abs=1.0)


@pytest.mark.parametrize(
    "level, observed_m",
    [
        (1000, (-1200.0, 600.0)),  # sea-level pressure extremes 870 hPa (Typhoon Tip) .. 1084 hPa (Siberian high)
        (500, (4600.0, 6000.0)),  # Z500 in deep polar lows .. subtropical highs
        (50, (18800.0, 21500.0)),  # polar-night vortex .. summer stratosphere
        (1, (42000.0, 50000.0)),  # stratopause region
    ],
)
def test_observed_geopotential_is_plausible_and_its_height_in_metres_is_not(level, observed_m) -> None:
    low, high = plausible_geopotential(level)
    assert low <= G0 * observed_m[0] and G0 * observed_m[1] <= high
    if level <= 700:  # geopotential height in metres, mislabelled m**2 s**-2, is far below the range
        assert observed_m[1] < low


def test_pressures_above_the_top_of_the_standard_are_refused() -> None:
    with pytest.raises(ValueError, match="above the 1976 standard atmosphere's top"):
        standard_height(0.001)
