"""Zonal power spectra of forecasts and truth, as WeatherBench2 defines them, and their ratio.

Per latitude circle (WB2 ``ZonalEnergySpectrum``): with ``f[l]``, ``l = 0..L-1``,
the values along a circle of circumference ``C = 2 pi R cos(lat)`` (R = 6371 km)
and ``F[k] = (1/L) sum_l f[l] exp(-2 pi i k l / L)`` (``numpy.fft.rfft``,
``norm="forward"``), the energy at zonal wavenumber ``k = 0..L//2`` is::

    S[0] = C |F[0]|^2,   S[k] = 2 C |F[k]|^2  (0 < k < L/2),   S[L/2] = C |F[L/2]|^2  (L even)

so that Parseval holds exactly: ``sum_k S[k] = (C / L) sum_l f[l]^2``, the
discrete integral of ``f^2`` around the circle (units: m x units^2).
WB2 also doubles the Nyquist bin of an even ``L``; that differs only at the
last wavenumber and cancels in every forecast / truth ratio.

:func:`forecast_spectra` then averages the per-latitude spectra, at fixed
wavenumber, over the latitudes with ``|lat| <= 60`` (area-weighted, the
weights of :func:`zonda.evaluation.metrics.latitude_weights`: the polar
circles are short and oversampled by a regular grid) and over the init times.
The grid-scale check of issue 14 is :func:`max_spectral_ratio`: the largest
``forecast / truth`` over wavenumbers ``>= 1`` at a lead; speckle (grid-scale
noise) pushes it above 2. Blurring pulls the high wavenumbers below 1:
:func:`small_scale_ratio` is the geometric-mean ratio over the upper half of
the wavenumbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from zonda.evaluation.alignment import INIT_DIM, LEAD_DIM, forecast_axes, time_positions, truth_for_lead
from zonda.evaluation.headline import find_lead, headline_key, parse_headline
from zonda.evaluation.metrics import latitude_weights
from zonda.files import write_netcdf_atomic
from zonda.graph.spherical import EARTH_RADIUS_KM
from zonda.grid import check_full_circle

WAVENUMBER = "zonal_wavenumber"
MODEL_DIM = "model"
LEAD_TIME = "lead_time"
TRUTH = "truth"
#: Latitudes averaged by :func:`band_mean` by default: ``|lat| <= 60`` degrees.
MAX_ABS_LATITUDE = 60.0
#: Issue 14's limit on :func:`max_spectral_ratio` (drawn on the ratio panels).
SPECTRAL_RATIO_LIMIT = 2.0
_EQUATOR_M = 2.0 * np.pi * EARTH_RADIUS_KM * 1e3


def spectrum_name(spec: str) -> str:
    """Data-variable name of a headline spec: ``geopotential/500`` -> ``geopotential_500``."""
    name, level = parse_headline(spec)
    return name if level is None else f"{name}_{level}"


def zonal_spectrum(da: xr.DataArray) -> xr.DataArray:
    """Zonal power spectrum per latitude circle (module docstring), ``longitude`` -> ``zonal_wavenumber``.

    Args:
      da: ``(..., longitude)`` with ``longitude`` ascending, uniformly spaced,
        covering 360 degrees; with a ``latitude`` dim or scalar coordinate (the
        circumference); values in some unit ``u``.

    Returns:
      ``(..., zonal_wavenumber)`` float64 in ``m u^2``, ``zonal_wavenumber = 0..L//2``,
      with coords ``wavelength`` (m, per latitude; ``inf`` at ``k = 0``). NaN in
      a circle gives NaN at every wavenumber of it.
    """
    if "longitude" not in da.dims:
        raise ValueError(f"{da.name!r} has no longitude dim (dims {da.dims})")
    if "latitude" not in da.coords:
        raise ValueError(f"{da.name!r} has no latitude coordinate (needed for the circumference)")
    check_full_circle(da["longitude"].values, what=f"zonal spectrum of {da.name!r}")
    n_lon = da.sizes["longitude"]
    values = da.transpose(..., "longitude").values.astype(np.float64)  # (..., L)
    f_k = np.fft.rfft(values, axis=-1, norm="forward")  # (..., L//2 + 1)
    factor = np.full(f_k.shape[-1], 2.0)
    factor[0] = 1.0
    if n_lon % 2 == 0:
        factor[-1] = 1.0  # Nyquist: its own mirror image
    power = (f_k.real**2 + f_k.imag**2) * factor  # (..., K)
    dims = [d for d in da.transpose(..., "longitude").dims[:-1]] + [WAVENUMBER]
    coords = {k: v for k, v in da.coords.items() if "longitude" not in v.dims}
    out = xr.DataArray(power, dims=dims, coords=coords, name=da.name)
    out = out.assign_coords({WAVENUMBER: np.arange(f_k.shape[-1])})
    circumference = _EQUATOR_M * np.cos(np.deg2rad(da["latitude"]))  # ([latitude],) m
    with np.errstate(divide="ignore"):
        wavelength = circumference / out[WAVENUMBER]
    units = str(da.attrs.get("units", ""))
    out = (out * circumference).assign_coords(wavelength=wavelength.assign_attrs(units="m"))
    return out.assign_attrs(units=f"m ({units})**2" if units else "m", long_name=f"zonal power spectrum of {da.name}")


def band_mean(spectrum: xr.DataArray, *, max_abs_latitude: float = MAX_ABS_LATITUDE) -> xr.DataArray:
    """Area-weighted mean over the latitudes with ``|lat| <= max_abs_latitude``, at fixed wavenumber.

    Drops the per-latitude ``wavelength`` coordinate (it differs between circles).
    """
    lat = spectrum["latitude"]
    inside = np.abs(lat.values) <= max_abs_latitude
    if not inside.any():
        raise ValueError(f"no latitude within +-{max_abs_latitude} deg (latitudes {lat.values.tolist()})")
    weights = latitude_weights(lat.values)[inside]  # (n_band,)
    band = spectrum.drop_vars("wavelength", errors="ignore").isel(latitude=np.flatnonzero(inside))
    return band.weighted(weights.assign_coords(latitude=band["latitude"])).mean("latitude", skipna=False).assign_attrs(spectrum.attrs)


def _field(ds: xr.Dataset, spec: str, what: str) -> xr.DataArray:
    name, level = parse_headline(spec)
    if name not in ds.data_vars:
        raise KeyError(f"{what} has no variable {name!r} (variables {list(ds.data_vars)})")
    da = ds[name]
    if level is None:
        if "level" in da.dims:
            raise ValueError(f"{what}: {name!r} has levels; name one as '{name}/<level>'")
        return da
    if "level" not in da.dims or level not in da["level"].values:
        raise KeyError(f"{what}: {name!r} has no level {level}")
    return da.sel(level=level, drop=True)


def _mean_spectrum(da: xr.DataArray, max_abs_latitude: float) -> np.ndarray:
    """``(K,)`` band- and init-mean spectrum of a ``(time, latitude, longitude)`` field."""
    return band_mean(zonal_spectrum(da), max_abs_latitude=max_abs_latitude).mean(INIT_DIM, skipna=False).values


def forecast_spectra(
    forecasts: Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    *,
    variables: Sequence[str],
    lead_days: Sequence[float],
    max_abs_latitude: float = MAX_ABS_LATITUDE,
) -> xr.Dataset:
    """Mean zonal spectra of each forecast and of the truth at the same valid times.

    Args:
      forecasts: ``{name: (time=init, prediction_timedelta, [level], latitude, longitude)}``
        (WB2 layout); all on the truth's longitudes. ``"truth"`` is reserved.
      truth: ``(time, [level], latitude, longitude)`` covering every valid time.
      variables: headline specs, ``name/level`` or surface ``name``.
      lead_days: leads in days; each must be a lead of every forecast.
      max_abs_latitude: latitude band of :func:`band_mean`.

    Returns:
      One variable per spec (:func:`spectrum_name`), dims ``(model, lead_time,
      zonal_wavenumber)`` float64 in ``m u^2``: ``model`` = the forecasts' names
      then ``"truth"`` (the truth valid at each forecast's ``init + lead``, over
      the first forecast's init times; every forecast must share them), means
      over init times and the latitude band.
    """
    if not forecasts:
        raise ValueError("no forecasts given")
    if TRUTH in forecasts:
        raise ValueError(f"{TRUTH!r} is reserved for the truth's spectrum; rename that forecast")
    if not variables or not lead_days:
        raise ValueError("need at least one variable and one lead")
    names = list(forecasts)
    check_full_circle(truth["longitude"].values, what="truth")
    axes = {}
    for key, fc in forecasts.items():
        axes[key] = forecast_axes(fc)
        if not np.array_equal(fc["longitude"].values, truth["longitude"].values) or not np.array_equal(
            fc["latitude"].values, truth["latitude"].values
        ):
            raise ValueError(f"forecast {key!r} is not on the truth's latitude/longitude grid")
        if not np.array_equal(axes[key][0], axes[names[0]][0]):
            raise ValueError(f"forecast {key!r} has other init times than {names[0]!r}; spectra must average the same ones")
        for spec in variables:
            _field(fc.isel({INIT_DIM: [0], LEAD_DIM: [0]}), spec, f"forecast {key!r}")
        for days in lead_days:
            find_lead(axes[key][1], days)  # KeyError listing the leads
    init = axes[names[0]][0]
    leads = np.array([axes[names[0]][1][find_lead(axes[names[0]][1], d)] for d in lead_days])
    for spec in variables:  # the truth: every variable and valid time, before any FFT
        _field(truth.isel({INIT_DIM: [0]}), spec, "truth")
    for lead in leads:
        time_positions(truth[INIT_DIM].values, init + lead, f"truth for the spectra at lead {pd.Timedelta(lead)}")
    out = {}
    for spec in variables:
        truth_field = _field(truth, spec, "truth")
        per_model = [[None] * len(leads) for _ in range(len(names) + 1)]  # [model][lead] -> (K,)
        for j, lead in enumerate(leads):
            for m, key in enumerate(names):
                fc = _field(forecasts[key], spec, f"forecast {key!r}")
                f = fc.isel({LEAD_DIM: find_lead(axes[key][1], lead_days[j])}, drop=True).transpose(INIT_DIM, "latitude", "longitude")
                per_model[m][j] = _mean_spectrum(f, max_abs_latitude)
            o = truth_for_lead(truth_field, init, lead, spec).transpose(INIT_DIM, "latitude", "longitude")
            per_model[-1][j] = _mean_spectrum(o, max_abs_latitude)
        values = np.array(per_model, dtype=np.float64)  # (model, lead, K)
        units = str(truth_field.attrs.get("units", ""))
        out[spectrum_name(spec)] = xr.DataArray(
            values,
            dims=[MODEL_DIM, LEAD_TIME, WAVENUMBER],
            attrs={"units": f"m ({units})**2" if units else "m", "headline_variable": spec},
        )
    coords = {
        MODEL_DIM: np.array([*names, TRUTH], dtype=str),
        LEAD_TIME: pd.to_timedelta(leads).values.astype("timedelta64[ns]"),
        WAVENUMBER: np.arange(truth.sizes["longitude"] // 2 + 1),
    }
    attrs = {
        "definition": "WeatherBench2 zonal power spectrum per latitude circle (Nyquist not doubled), "
        f"area-weighted mean over |lat| <= {max_abs_latitude:g} deg, mean over init times",
        "max_abs_latitude": float(max_abs_latitude),
        "n_init_times": int(len(init)),
    }
    return xr.Dataset(out, coords=coords, attrs=attrs)


def spectral_ratio(spectra: xr.Dataset, *, model: str = "model") -> xr.Dataset:
    """``model / truth`` per variable, lead and wavenumber (dims ``(lead_time, zonal_wavenumber)``).

    Where both have zero power the ratio is 1 (no excess, no deficit); where
    only the truth has none it is ``inf``; NaN in the model's spectrum stays NaN.
    """
    have = [str(m) for m in spectra[MODEL_DIM].values]
    for key in (model, TRUTH):
        if key not in have:
            raise KeyError(f"spectra have no {key!r} (models {have})")
    f = spectra.sel({MODEL_DIM: model}, drop=True)
    o = spectra.sel({MODEL_DIM: TRUTH}, drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = f / o
    ratio = xr.where((f == 0) & (o == 0), 1.0, ratio)
    for name in ratio.data_vars:
        spec = spectra[name].attrs.get("headline_variable", name)
        ratio[name].attrs = {"units": "1", "long_name": f"{model} / truth zonal power", "headline_variable": spec}
    return ratio.assign_attrs(spectra.attrs)


def max_spectral_ratio(spectra: xr.Dataset, *, model: str = "model", min_wavenumber: int = 1) -> xr.Dataset:
    """Largest ``model / truth`` over wavenumbers ``>= min_wavenumber``, per variable: dims ``(lead_time,)``.

    Issue 14's grid-scale check is ``max_spectral_ratio(...) <= 2`` at 5 days.
    NaN where the model's spectrum has NaN (a blown-up forecast does not pass).
    """
    ratio = spectral_ratio(spectra, model=model)
    return ratio.sel({WAVENUMBER: ratio[WAVENUMBER] >= min_wavenumber}).max(WAVENUMBER, skipna=False)


def small_scale_ratio(spectra: xr.Dataset, *, model: str = "model", from_fraction: float = 0.5) -> xr.Dataset:
    """Geometric mean of ``model / truth`` over the small scales, wavenumbers ``>= from_fraction * K``
    (``K`` the largest), per variable: dims ``(lead_time,)``.

    The blurring number: well below 1 where the model has lost small-scale
    variance (typical of long leads), above 1 with grid-scale noise.
    """
    if not 0 < from_fraction <= 1:
        raise ValueError(f"from_fraction must be in (0, 1], got {from_fraction}")
    ratio = spectral_ratio(spectra, model=model)
    k = ratio[WAVENUMBER]
    small = ratio.sel({WAVENUMBER: k >= max(1.0, from_fraction * float(k.max()))})
    with np.errstate(divide="ignore"):
        return np.exp(np.log(small).mean(WAVENUMBER, skipna=False))


def spectral_headline(
    spectra: xr.Dataset, lead_days: Sequence[float], *, model: str = "model", min_wavenumber: int = 1
) -> dict[str, float]:
    """``{"max_spectral_ratio.<variable>[.<level>].<lead>": ..., "small_scale_ratio....": ...}``
    (:func:`max_spectral_ratio`, :func:`small_scale_ratio`; keys as :func:`headline_key`).

    Both are "closer to 1 is better", not "lower is better": a registry gate
    must not rank them as losses.
    """
    scores = {
        "max_spectral_ratio": max_spectral_ratio(spectra, model=model, min_wavenumber=min_wavenumber),
        "small_scale_ratio": small_scale_ratio(spectra, model=model),
    }
    out = {}
    for metric, values in scores.items():
        leads = values[LEAD_TIME].values
        for name in values.data_vars:
            spec = str(spectra[name].attrs.get("headline_variable", name))
            for days in lead_days:
                out[headline_key(metric, spec, days)] = float(values[name].isel({LEAD_TIME: find_lead(leads, days)}))
    return out


def write_spectra(spectra: xr.Dataset, path: str | os.PathLike) -> Path:
    """Writes spectra (from :func:`forecast_spectra`) to netCDF atomically (``spectra.nc``)."""
    return write_netcdf_atomic(spectra, path)


def read_spectra(path: str | os.PathLike) -> xr.Dataset:
    """Reads :func:`write_spectra`'s file into memory (lead_time timedelta64, ``model`` as str)."""
    with xr.open_dataset(path, engine="h5netcdf", decode_timedelta=True) as ds:
        ds = ds.load()
    return ds.assign_coords({MODEL_DIM: ds[MODEL_DIM].values.astype(str)})
