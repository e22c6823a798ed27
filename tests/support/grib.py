"""A GRIB2 file written with ecCodes from a WB2-like Dataset (ERA5's layout: north-to-south rows)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import xarray as xr


def write_grib(ds: xr.Dataset, path: Path) -> Path:
    """Encodes ``ds`` (WB2 names, latitude ascending) as GRIB2 with ecCodes, north-to-south rows.

    Pressure-level fields get ecCodes' ``t/z/u/v`` short names, surface
    pressure ``sp``; IEEE packing keeps the float32 values exact.
    """
    eccodes = pytest.importorskip("eccodes")
    short = {"temperature": "t", "geopotential": "z", "u_component_of_wind": "u",
             "v_component_of_wind": "v", "surface_pressure": "sp"}
    lat, lon = ds["latitude"].values, ds["longitude"].values
    with open(path, "wb") as out:
        for time in ds["time"].values:
            stamp = pd.Timestamp(time)
            for name, code in short.items():
                field = ds[name].sel(time=time)
                levels = field["level"].values if "level" in field.dims else [None]
                for level in levels:
                    values = (field.sel(level=level) if level is not None else field).values[::-1]
                    sample = "regular_ll_pl_grib2" if level is not None else "regular_ll_sfc_grib2"
                    h = eccodes.codes_grib_new_from_samples(sample)
                    try:
                        for key, value in [
                            ("Ni", len(lon)), ("Nj", len(lat)),
                            ("latitudeOfFirstGridPointInDegrees", float(lat[-1])),
                            ("latitudeOfLastGridPointInDegrees", float(lat[0])),
                            ("longitudeOfFirstGridPointInDegrees", float(lon[0])),
                            ("longitudeOfLastGridPointInDegrees", float(lon[-1])),
                            ("iDirectionIncrementInDegrees", float(lon[1] - lon[0])),
                            ("jDirectionIncrementInDegrees", float(lat[1] - lat[0])),
                            ("dataDate", int(stamp.strftime("%Y%m%d"))), ("dataTime", stamp.hour * 100),
                            ("shortName", code), ("packingType", "grid_ieee"),
                        ]:
                            eccodes.codes_set(h, key, value)
                        if level is not None:
                            eccodes.codes_set(h, "level", int(level))
                        eccodes.codes_set_values(h, values.astype("f8").ravel())
                        eccodes.codes_write(h, out)
                    finally:
                        eccodes.codes_release(h)
    return path
