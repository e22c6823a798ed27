"""The registered model: an MLflow pyfunc that turns an initial state into a forecast Dataset.

Usage::

    model = mlflow.pyfunc.load_model("models:/zonda@champion")
    inputs = model.unwrap_python_model().model_input(initial_state)  # Dataset -> arrays
    forecast = model.predict(inputs, params={"lead": "10d"})

(``zonda.registry.forecast.predict_forecast`` does both.) The model's
signature (:func:`forecast_signature`) declares the input: one tensor per
model variable, ``(time, level, latitude, longitude)`` (surface variables
without ``level``) float32 on the model's grid and levels in the model card's
order, at ``T_in`` or more consecutive 6-hourly times, and ``time``
(``datetime64[ns]``, ``(time,)``); the last ``T_in`` times are used and the
last one is the initialisation time. :meth:`ZondaForecastModel.model_input`
makes that input from an initial-state :class:`xarray.Dataset` (see
:mod:`zonda.registry.inputs`: it selects the variables, levels and times and
checks the grid). ``lead`` defaults to the ``evaluation.lead_days`` the model
was evaluated with.

The forecast is a Dataset in the WeatherBench2 forecast layout: dims ``time``
(one initialisation time, the last input time), ``prediction_timedelta``
(6 h, 12 h, ..., lead), ``level``, ``latitude``, ``longitude``; physical units
in each variable's ``units`` attribute; the model's lineage in ``attrs``. The
signature's outputs are its data variables: float32
``(1, lead steps, level, latitude, longitude)`` per model variable.

The output is a Dataset, not JSON: serve the model in Python (``load_model``,
``zonda forecast``), not through ``mlflow models serve``'s REST scoring server.

Nothing is pickled: MLflow loads this class through the models-from-code
entry file ``_pyfunc_entry.py`` and :meth:`ZondaForecastModel.load_context`
rebuilds the Forecaster from the bundled artifacts (safetensors weights,
``model.json``, the statistics and graph directories, ``static.nc``, the
resolved params).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import yaml
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from zonda.channels import ChannelLayout
from zonda.models.forecaster import inference_device
from zonda.models.precision import AUTO, autocast, inference_precision, trained_precision
from zonda.models.saved import load_forecaster, read_model_card
from zonda.registry.errors import InitialStateError
from zonda.registry.inputs import (
    format_lead,
    forcing_array,
    parse_lead,
    prepare_initial_state,
    static_array,
)
from zonda.variables import forecast_cf_attrs, lead_timedeltas, variable

#: Artifact keys of the bundle (``context.artifacts``) and the files/dirs they point to.
ARTIFACT_MODEL = "model"  # weights.safetensors + model.json
ARTIFACT_GRAPH = "graph"  # graph.safetensors + graph.json
ARTIFACT_STATISTICS = "statistics"  # statistics.nc + manifest.json
ARTIFACT_STATIC = "static"  # static.nc
ARTIFACT_PARAMS = "params"  # params.resolved.yaml
STATIC_FILE = "static.nc"
LEAD_PARAM = "lead"
LINEAGE_KEYS = ("snapshot_id", "statistics_hash", "graph_hash")
#: The input tensor holding the initial state's times (``datetime64[ns]``, ``(time,)``).
TIME_INPUT = "time"
FIELD_DTYPE = np.dtype("float32")
TIME_DTYPE = np.dtype("datetime64[ns]")


def default_lead(lead_days: float) -> str:
    """The ``lead`` parameter's default for ``evaluation.lead_days`` (e.g. ``"10d"``)."""
    return format_lead(parse_lead(f"{int(round(float(lead_days) * 24))}h"))


def _field_dims(name: str) -> tuple[str, ...]:
    return ("level", "latitude", "longitude") if variable(name).has_levels else ("latitude", "longitude")


def forecast_signature(card: dict[str, Any], lead: str) -> ModelSignature:
    """The pyfunc's signature for the model card ``card`` (see the module docstring); ``lead``: the param's default."""
    n_level, n_lat, n_lon = len(card["layout"]["levels"]), len(card["grid"]["latitudes"]), len(card["grid"]["longitudes"])

    def shape(name: str) -> tuple[int, ...]:  # the field dims' sizes
        return (n_level, n_lat, n_lon) if variable(name).has_levels else (n_lat, n_lon)

    names = list(card["layout"]["variables"])
    inputs = [TensorSpec(TIME_DTYPE, (-1,), TIME_INPUT)]
    inputs += [TensorSpec(FIELD_DTYPE, (-1, *shape(n)), n) for n in names]  # (time, [level,] lat, lon)
    outputs = [TensorSpec(FIELD_DTYPE, (1, -1, *shape(n)), n) for n in names]  # (time, lead, [level,] lat, lon)
    return ModelSignature(
        inputs=Schema(inputs), outputs=Schema(outputs), params=ParamSchema([ParamSpec(LEAD_PARAM, "string", lead)])
    )


class ZondaForecastModel(PythonModel):
    """MLflow pyfunc wrapper of a trained :class:`zonda.models.Forecaster` (see the module docstring)."""

    # MLflow would wrap `predict` for type-hint validation and warn that it has
    # no type hints; the input is checked against the explicit tensor signature.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Rebuilds the Forecaster from the model's artifacts (called by ``mlflow.pyfunc.load_model``)."""
        a = context.artifacts
        self._load(a[ARTIFACT_MODEL], a[ARTIFACT_GRAPH], a[ARTIFACT_STATISTICS], a[ARTIFACT_STATIC], a[ARTIFACT_PARAMS])

    @classmethod
    def from_artifacts(
        cls,
        model_dir: str | os.PathLike[str],
        graph_dir: str | os.PathLike[str],
        statistics_dir: str | os.PathLike[str],
        static_path: str | os.PathLike[str],
        params_path: str | os.PathLike[str],
    ) -> "ZondaForecastModel":
        """The model built from local files, without MLflow (what ``load_context`` does)."""
        model = cls()
        model._load(model_dir, graph_dir, statistics_dir, static_path, params_path)
        return model

    def _load(self, model_dir: Any, graph_dir: Any, statistics_dir: Any, static_path: Any, params_path: Any) -> None:
        self.device = inference_device()
        self.card = read_model_card(model_dir)
        self.forecaster = load_forecaster(model_dir, graph_dir, statistics_dir, map_location=self.device)
        self.layout = ChannelLayout(tuple(self.card["layout"]["variables"]), tuple(self.card["layout"]["levels"]))
        self.latitudes = np.asarray(self.card["grid"]["latitudes"], dtype=np.float64)
        self.longitudes = np.asarray(self.card["grid"]["longitudes"], dtype=np.float64)
        with xr.open_dataset(static_path, engine="h5netcdf") as static:
            fields = static_array(static.load(), list(self.card["static"]), self.latitudes, self.longitudes)
        self.static = torch.from_numpy(fields).to(self.device)
        resolved = yaml.safe_load(Path(params_path).read_text()) or {}
        self.default_lead = default_lead(resolved.get("evaluation", {}).get("lead_days", 10.0))
        # resolved as the evaluation that scored the model did, so the served forecasts are the scored ones
        self.precision = inference_precision(
            resolved.get("evaluation", {}).get("precision", AUTO), trained=trained_precision(self.card), device=self.device
        )

    @property
    def input_steps(self) -> int:
        """``T_in``: how many consecutive 6-hourly states a forecast starts from."""
        return int(self.forecaster.input_steps)

    def model_input(self, initial_state: xr.Dataset) -> dict[str, np.ndarray]:
        """The signature's input from an initial-state Dataset: its last ``input_steps`` times of the model's
        variables and levels on the model's grid (InitialStateError naming what does not fit)."""
        states, times = prepare_initial_state(
            initial_state, self.layout, self.latitudes, self.longitudes, self.input_steps
        )  # (T_in, G, C), (T_in,)
        ds = self.layout.unstack(states, self.latitudes, self.longitudes, {"time": times})
        return {TIME_INPUT: times.astype(TIME_DTYPE), **{n: ds[n].values.astype(FIELD_DTYPE) for n in self.layout.variables}}

    def initial_state(self, model_input: dict[str, np.ndarray]) -> xr.Dataset:
        """The initial-state Dataset on the model's grid and levels from the signature's input."""
        if not isinstance(model_input, dict):
            raise InitialStateError(
                f"the model takes a dict of arrays (its signature's inputs; model_input() makes it from a Dataset), "
                f"got {type(model_input).__name__}"
            )
        coords = {"time": np.asarray(model_input[TIME_INPUT], dtype=TIME_DTYPE), "latitude": self.latitudes,
                  "longitude": self.longitudes, "level": np.asarray(self.layout.levels, dtype=np.int32)}
        fields = {n: (("time", *_field_dims(n)), np.asarray(model_input[n])) for n in self.layout.variables}
        return xr.Dataset(fields, coords=coords if self.layout.levels else {k: v for k, v in coords.items() if k != "level"})

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would validate against them
        """Forecast (Dataset) from ``model_input`` (the signature's dict of arrays) to ``params["lead"]``."""
        lead = (params or {}).get(LEAD_PARAM) or self.default_lead
        return self.forecast(self.initial_state(model_input), lead)

    def forecast(self, initial_state: xr.Dataset, lead: str | Any) -> xr.Dataset:
        """The forecast Dataset (WB2 layout) from the last ``input_steps`` times of ``initial_state``."""
        steps = parse_lead(lead)
        states, times = prepare_initial_state(
            initial_state, self.layout, self.latitudes, self.longitudes, self.input_steps
        )
        leads = lead_timedeltas(steps)
        all_times = np.concatenate([times, times[-1] + leads])
        forcings = forcing_array(list(self.card["forcings"]), all_times, self.latitudes, self.longitudes)
        with torch.inference_mode(), autocast(self.precision, self.device):
            out = self.forecaster.rollout(
                torch.from_numpy(states)[None].to(self.device),
                torch.from_numpy(forcings)[None].to(self.device),
                self.static,
                steps,
            )
        values = out.float().cpu().numpy()
        ds = self.layout.unstack(
            values, self.latitudes, self.longitudes, {"time": times[-1:], "prediction_timedelta": leads}
        )
        return self._describe(ds, steps)

    def _describe(self, ds: xr.Dataset, steps: int) -> xr.Dataset:
        ds = forecast_cf_attrs(ds)  # CF coordinate attributes and Conventions, as forecast.zarr has them
        ds.attrs.update(
            title="zonda forecast",
            lead=format_lead(steps),
            input_steps=self.input_steps,
            weights_sha256=str(self.card["weights"]["sha256"]),
            inference_precision=self.precision,
            **{k: str(self.card.get(k)) for k in LINEAGE_KEYS},
        )
        return ds
