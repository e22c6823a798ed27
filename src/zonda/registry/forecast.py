"""``zonda forecast``: run a registered model from an initial-state file and write the forecast.

::

    zonda forecast --model models:/zonda@champion --init init.zarr --lead 10d --out forecast.zarr

The initial-state file (zarr store or netCDF) holds the model's variables at
``T_in`` or more consecutive 6-hourly times; the last ``T_in`` are used and
only they are read. The forecast is written atomically (to a temporary
sibling, then moved into place) as zarr v3, or as netCDF when ``out_path``
ends in ``.nc``, in the WeatherBench2 layout: dims ``time`` (the
initialisation time), ``prediction_timedelta``, ``level``, ``latitude``,
``longitude``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from zonda.files import atomic_path
from zonda.registry.errors import RegistryError
from zonda.registry.inputs import open_initial_state, parse_lead
from zonda.registry.pyfunc_model import LEAD_PARAM
from zonda.zarr_files import consolidate_zarr

PathLike = str | os.PathLike[str]


def load_forecast_model(model_uri: str) -> Any:
    """``mlflow.pyfunc.load_model`` with a RegistryError naming the URI if it cannot be found."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"cannot load model {model_uri}: {exc.message}") from None


def predict_forecast(model: Any, initial_state: xr.Dataset, lead: str | None) -> xr.Dataset:
    """``model.predict`` (a loaded zonda pyfunc) on ``initial_state`` turned into the signature's input arrays;
    ``lead=None``: the model's default."""
    inputs = model.unwrap_python_model().model_input(initial_state)
    return model.predict(inputs, params={LEAD_PARAM: lead} if lead is not None else None)


def resolve_model_uri(model_uri: str) -> tuple[str, str | None]:
    """``models:/NAME@ALIAS`` -> (``models:/NAME/VERSION``, VERSION), so the alias cannot move mid-run.

    ``models:/NAME/VERSION`` gives its version; other URIs are returned as they are, with None.
    """
    from mlflow import MlflowClient

    rest = model_uri.removeprefix("models:/")
    if rest == model_uri:
        return model_uri, None
    if "@" in rest:
        name, alias = rest.split("@", 1)
        try:
            version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        except Exception as exc:  # noqa: BLE001 - MlflowException / RestException
            raise RegistryError(f"{model_uri}: registered model {name!r} has no alias {alias!r} ({exc})") from None
        return f"models:/{name}/{version}", version
    name, _, version = rest.rpartition("/")
    return model_uri, (version if name and version.isdigit() else None)


def write_atomic(ds: xr.Dataset, out_path: PathLike) -> Path:
    """Writes ``ds`` to a temporary sibling of ``out_path`` and moves it into place (zarr v3, or netCDF for ``.nc``)."""
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        if out_path.suffix.lower() == ".nc":
            ds.to_netcdf(tmp, engine="h5netcdf")
        else:
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
            consolidate_zarr(tmp)  # plain xr.open_zarr opens it without a warning
    return out_path


def forecast(model_uri: str, init_path: PathLike, lead: str | None, out_path: PathLike) -> Path:
    """Forecasts ``lead`` (``10d``, ``36h``, ``6h``) from ``init_path`` with ``model_uri``; returns ``out_path``.

    ``model_uri`` is any MLflow model URI, typically ``models:/NAME@champion``
    (an alias is resolved to its version first, recorded in the output's
    ``model_version`` attribute). ``lead=None`` uses the model's default, the
    ``evaluation.lead_days`` it was evaluated with.
    """
    if lead is not None:
        parse_lead(lead)  # fail on a bad lead before loading anything
    resolved, version = resolve_model_uri(model_uri)
    model = load_forecast_model(resolved)
    with open_initial_state(init_path) as initial_state:
        result = predict_forecast(model, initial_state, lead)
    result.attrs["model_uri"] = model_uri
    if version is not None:
        result.attrs["model_version"] = version
    result.attrs["initial_state"] = str(init_path)
    return write_atomic(result, out_path)
