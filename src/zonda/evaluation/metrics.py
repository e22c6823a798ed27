"""Deterministic verification metrics with WeatherBench2 definitions.

All metrics take ``xarray.DataArray`` fields with ``latitude`` and
``longitude`` dims (degrees; latitude ascending or descending) plus any other
dims (``time``, ``level``, ...), and reduce over space with area weights:

* spatial mean  ``<x> = mean_{lat,lon}(w(lat) * x)`` with ``w`` from
  :func:`latitude_weights` (mean 1 over latitude);
* ``mse``   = ``mean_t <(f - o)^2>``;
* ``rmse``  = ``sqrt(mean_t <(f - o)^2>)`` -- the time mean is taken *before*
  the square root (WB2's default, ``rmse_sqrt_before_time_avg=False``);
* ``bias``  = ``mean_t <f - o>``;
* ``acc``   = ``mean_t [<f' o'> / sqrt(<f'^2> <o'^2>)]`` with anomalies
  ``f' = f - c``, ``o' = o - c`` against a climatology ``c`` (WB2's ACC: no
  removal of the spatial-mean anomaly, correlation per time then averaged).

``t`` runs over ``time_dim`` (the initialisation times of a forecast);
``time_dim=None`` returns the per-time values. Everything is computed in
float64; NaNs propagate (no ``skipna``), as in WB2. Results carry the units
of the inputs (``mse``: units squared; ``acc``: dimensionless).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from zonda.evaluation.regions import REGION_DIM, Region
from zonda.grid import cell_area_weights

SPATIAL_DIMS = ("latitude", "longitude")


def latitude_weights(latitude: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Area weights per latitude, normalised to mean 1, as a ``(latitude,)`` DataArray.

    Args:
      latitude: latitudes in degrees, strictly monotonic (ascending or descending).

    Returns:
      Weights proportional to the area of each latitude band (see
      :func:`zonda.grid.cell_area_weights`), ``mean == 1``; dimensionless.
    """
    lat = np.asarray(latitude, dtype=np.float64)
    if lat.ndim != 1:
        raise ValueError(f"latitude must be 1-D, got shape {lat.shape}")
    step = np.diff(lat)
    if lat.size > 1 and not ((step > 0).all() or (step < 0).all()):
        raise ValueError("latitude must be strictly monotonic")
    return xr.DataArray(cell_area_weights(lat), dims=["latitude"], coords={"latitude": lat}, name="latitude_weights")


def _require_dims(da: xr.DataArray, dims: tuple[str, ...], what: str) -> None:
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ValueError(f"{what} {da.name!r} lacks dims {missing}; it has {list(da.dims)}")


# ------------------------------------------------------------ numpy kernels
# Arrays are (..., lat, lon); ``w`` is (lat,) and sums to 1.


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Area-weighted spatial mean over the last two axes; NaNs propagate."""
    return x.mean(axis=-1) @ w


def _mse_kernel(f: np.ndarray, o: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _wmean((f - o) ** 2, w)


def _bias_kernel(f: np.ndarray, o: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _wmean(f - o, w)


def _acc_kernel(fa: np.ndarray, oa: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-sample ACC of anomalies; 0 where the forecast anomaly is identically 0 (see anomaly_correlation)."""
    return _correlation(_wmean(fa * oa, w), _wmean(fa**2, w), _wmean(oa**2, w))


def _correlation(cov: np.ndarray, var_f: np.ndarray, var_o: np.ndarray) -> np.ndarray:
    """``cov / sqrt(var_f var_o)``; 0 where the forecast anomaly is identically 0 and the truth's is not."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(var_f * var_o)
    return np.where((var_f == 0) & (var_o > 0), 0.0, corr)


# ----------------------------------------------------------- xarray layer


def _normalised_weights(latitude: xr.DataArray) -> np.ndarray:
    w = latitude_weights(latitude).values
    return w / w.sum()


def _wrap(values: np.ndarray, template: xr.DataArray) -> xr.DataArray:
    """DataArray of ``values`` with ``template``'s dims and coords minus latitude/longitude."""
    reduced = template.isel(latitude=0, longitude=0, drop=True)
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=reduced.dims, coords=reduced.coords)


def spatial_mean(field: xr.DataArray, weights: xr.DataArray | None = None) -> xr.DataArray:
    """Area-weighted mean over ``latitude`` and ``longitude``; other dims are kept.

    Args:
      field: ``(..., latitude, longitude)`` in any units.
      weights: ``(latitude,)`` weights; default :func:`latitude_weights` of ``field``.

    Returns:
      ``(...)`` float64 DataArray, units of ``field``. NaNs propagate.
    """
    _require_dims(field, SPATIAL_DIMS, "field")
    x = field.transpose(..., *SPATIAL_DIMS)
    w = latitude_weights(x["latitude"]).values if weights is None else np.asarray(weights.sel(latitude=x["latitude"]))
    return _wrap(_wmean(x.values.astype(np.float64), w / w.sum()), x)


def _check_same_coords(a: xr.DataArray, b: xr.DataArray, what: str) -> None:
    """Raises ValueError naming the first shared dim whose coordinate labels differ."""
    for dim in a.dims:
        if dim in b.dims and dim in a.indexes and dim in b.indexes and not a.indexes[dim].equals(b.indexes[dim]):
            raise ValueError(f"{what} are on different coordinates along {dim!r}: {a[dim].values[:4]}... vs {b[dim].values[:4]}...")
        if dim in b.dims and a.sizes[dim] != b.sizes[dim]:
            raise ValueError(f"{what} differ in size along {dim!r}: {a.sizes[dim]} vs {b.sizes[dim]}")


def _prepared(forecast: xr.DataArray, truth: xr.DataArray, climatology: xr.DataArray | None = None):
    """Exact-coordinate check, then float64 numpy arrays ``(..., lat, lon)`` in the forecast's dim order.

    Returns ``(template, f, o, c_or_None, w)``.
    """
    _require_dims(forecast, SPATIAL_DIMS, "forecast")
    _require_dims(truth, SPATIAL_DIMS, "truth")
    if set(truth.dims) != set(forecast.dims):
        raise ValueError(f"forecast {forecast.name!r} dims {list(forecast.dims)} differ from truth {truth.name!r} dims {list(truth.dims)}")
    _check_same_coords(forecast, truth, f"forecast {forecast.name!r} and truth {truth.name!r}")
    template = forecast.transpose(..., *SPATIAL_DIMS)
    f = template.values.astype(np.float64)
    o = truth.transpose(*template.dims).values.astype(np.float64)
    c = None
    if climatology is not None:
        _require_dims(climatology, SPATIAL_DIMS, "climatology")
        extra = sorted(set(climatology.dims) - set(template.dims))
        if extra:
            raise ValueError(f"climatology {climatology.name!r} has dims {extra} that the forecast lacks")
        _check_same_coords(template, climatology, f"forecast {forecast.name!r} and climatology {climatology.name!r}")
        order = [d for d in template.dims if d in climatology.dims]
        c_arr = climatology.transpose(*order).values.astype(np.float64)
        shape = [template.sizes[d] if d in climatology.dims else 1 for d in template.dims]
        c = np.broadcast_to(c_arr.reshape(shape), f.shape)
    return template, f, o, c, _normalised_weights(template["latitude"])


def _time_mean(per_time: xr.DataArray, time_dim: str | None) -> xr.DataArray:
    if time_dim is None:
        return per_time
    if time_dim not in per_time.dims:
        raise ValueError(f"time_dim {time_dim!r} is not a dim of the metric input (dims {list(per_time.dims)})")
    return per_time.mean(time_dim, skipna=False)


def mse(forecast: xr.DataArray, truth: xr.DataArray, *, time_dim: str | None = "time") -> xr.DataArray:
    """Mean squared error ``mean_t <(f - o)^2>`` (units squared)."""
    template, f, o, _, w = _prepared(forecast, truth)
    return _time_mean(_wrap(_mse_kernel(f, o, w), template), time_dim)


def rmse(forecast: xr.DataArray, truth: xr.DataArray, *, time_dim: str | None = "time") -> xr.DataArray:
    """Root mean squared error ``sqrt(mean_t <(f - o)^2>)`` (units of the inputs)."""
    return np.sqrt(mse(forecast, truth, time_dim=time_dim))


def bias(forecast: xr.DataArray, truth: xr.DataArray, *, time_dim: str | None = "time") -> xr.DataArray:
    """Mean error ``mean_t <f - o>`` (units of the inputs; positive: forecast too high)."""
    template, f, o, _, w = _prepared(forecast, truth)
    return _time_mean(_wrap(_bias_kernel(f, o, w), template), time_dim)


def anomaly_correlation(forecast_anomaly: xr.DataArray, truth_anomaly: xr.DataArray) -> xr.DataArray:
    """Per-sample ACC ``<f' o'> / sqrt(<f'^2> <o'^2>)`` of anomalies (dimensionless).

    Convention for the undefined case: where the forecast anomaly is exactly 0
    everywhere (a climatology forecast) and the truth anomaly is not, the ACC
    is 0 -- such a forecast carries no anomaly information. Where the truth
    anomaly is 0 everywhere the ACC is NaN.
    """
    template, fa, oa, _, w = _prepared(forecast_anomaly, truth_anomaly)
    return _wrap(_acc_kernel(fa, oa, w), template)


def acc(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    climatology: xr.DataArray,
    *,
    time_dim: str | None = "time",
) -> xr.DataArray:
    """Anomaly correlation coefficient, per time then averaged over ``time_dim``.

    Args:
      forecast, truth: ``(time, ..., latitude, longitude)``.
      climatology: the climatology at the same valid times as ``truth``,
        broadcastable against it (e.g. ``(time, ..., latitude, longitude)`` or,
        for a time-mean climatology, ``(..., latitude, longitude)``).

    Returns:
      ``(...)`` dimensionless ACC in [-1, 1]; see :func:`anomaly_correlation`
      for forecasts with zero anomaly.
    """
    template, f, o, c, w = _prepared(forecast, truth, climatology)
    return _time_mean(_wrap(_acc_kernel(f - c, o - c, w), template), time_dim)


def scores(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    climatology: xr.DataArray,
    *,
    time_dim: str | None = "time",
    regions: Sequence[Region] | None = None,
) -> dict[str, xr.DataArray]:
    """``{"rmse", "mse", "bias", "acc"}`` in one pass (one alignment, one float64 copy).

    Same definitions as :func:`rmse`, :func:`mse`, :func:`bias`, :func:`acc`.
    With ``regions`` (e.g. :data:`zonda.evaluation.regions.WB2_REGIONS`) every
    score gains a leading ``region`` dim, one entry per region in order: the
    spatial means use the global area weights restricted to the region's rows
    and renormalised (WB2's regional scores); the global region's values are
    identical to those without ``regions``.
    """
    template, f, o, c, w = _prepared(forecast, truth, climatology)
    if regions is None:
        mse_t = _time_mean(_wrap(_mse_kernel(f, o, w), template), time_dim)
        return {
            "rmse": np.sqrt(mse_t),
            "mse": mse_t,
            "bias": _time_mean(_wrap(_bias_kernel(f, o, w), template), time_dim),
            "acc": _time_mean(_wrap(_acc_kernel(f - c, o - c, w), template), time_dim),
        }
    lat = template["latitude"].values
    area = latitude_weights(lat).values
    fa, oa = f - c, o - c
    # zonal means once, (..., lat); each region is then one (lat,) dot product, as _wmean does
    zonal = {
        "sq": ((f - o) ** 2).mean(axis=-1), "err": (f - o).mean(axis=-1),
        "cov": (fa * oa).mean(axis=-1), "var_f": (fa**2).mean(axis=-1), "var_o": (oa**2).mean(axis=-1),
    }
    # one (lat,) dot product per region, as _wmean does: the global region is bitwise the unregioned score
    m = {k: np.stack([v @ region.weights(area, lat) for region in regions], axis=-1) for k, v in zonal.items()}  # (..., R)
    per_time = {"mse": m["sq"], "bias": m["err"], "acc": _correlation(m["cov"], m["var_f"], m["var_o"])}
    reduced = template.isel(latitude=0, longitude=0, drop=True)
    names = np.array([r.name for r in regions], dtype=str)
    out = {
        k: _time_mean(
            xr.DataArray(np.moveaxis(v, -1, 0), dims=(REGION_DIM, *reduced.dims), coords=reduced.coords)
            .assign_coords({REGION_DIM: names}),
            time_dim,
        )
        for k, v in per_time.items()
    }  # each (region, ...) without the time dim
    return {"rmse": np.sqrt(out["mse"]), **out}
