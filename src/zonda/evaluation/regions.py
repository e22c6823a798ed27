"""WeatherBench2's latitude-band regions for spatially averaged scores.

Each region is a union of closed latitude bands, as WB2 defines its default
regions (``scripts/evaluate.py``, ``SliceRegion`` with label slices, which
include both ends): ``global``, ``tropics`` (-20..20), ``extra-tropics``
(|lat| >= 20), ``northern-hemisphere`` (lat >= 20), ``southern-hemisphere``
(lat <= -20). A grid row at exactly +-20 belongs to the tropics and the
extra-tropics, as in WB2.

A regional spatial mean keeps the global area weights of the rows in the
region and renormalises them to sum 1 (WB2's ``weighted(...).mean`` over the
sliced field), so the global region reproduces the global weights exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGION_DIM = "region"
GLOBAL = "global"


@dataclass(frozen=True)
class Region:
    """A named union of closed latitude bands ``[(south, north), ...]`` in degrees."""

    name: str
    bands: tuple[tuple[float, float], ...]

    def mask(self, latitude: np.ndarray) -> np.ndarray:
        """``(lat,)`` bool: which grid rows lie in the region (band ends included)."""
        lat = np.asarray(latitude, dtype=np.float64)
        inside = np.zeros(lat.shape, dtype=bool)
        for south, north in self.bands:
            inside |= (lat >= south) & (lat <= north)
        return inside

    def weights(self, global_weights: np.ndarray, latitude: np.ndarray) -> np.ndarray:
        """``(lat,)`` the global area weights restricted to the region, summing to 1.

        Raises ValueError when no grid row lies in the region."""
        w = np.where(self.mask(latitude), np.asarray(global_weights, dtype=np.float64), 0.0)
        if not w.any():
            raise ValueError(f"region {self.name!r} (latitude bands {list(self.bands)}) holds no row of the grid")
        return w / w.sum()


#: WB2's default latitude regions (names as WB2 writes them in results files).
WB2_REGIONS: tuple[Region, ...] = (
    Region(GLOBAL, ((-90.0, 90.0),)),
    Region("tropics", ((-20.0, 20.0),)),
    Region("extra-tropics", ((-90.0, -20.0), (20.0, 90.0))),
    Region("northern-hemisphere", ((20.0, 90.0),)),
    Region("southern-hemisphere", ((-90.0, -20.0),)),
)

__all__ = ["GLOBAL", "REGION_DIM", "Region", "WB2_REGIONS"]
