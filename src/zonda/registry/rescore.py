"""Re-scoring a registered model on a challenger's evaluation data, for the promotion gate.

:func:`challenger_scores` reads the challenger's ``per_init.nc`` (written by
the evaluation beside ``results.nc``) and checks it holds the gate's metrics.
:func:`rescore_champion` loads another registered version (the champion) as
its pyfunc, forecasts from the challenger's snapshot at the challenger's init
times to the leads of the gate's metrics, and scores the forecasts with
:func:`zonda.evaluation.per_init.per_init_scores` against the same truth:
same snapshot, same init times, same leads, same metric code. Climatology
(for ``acc.*`` metrics) is recomputed from the snapshot's training split with
``evaluation.climatology``, as the evaluation does.

A champion that does not load, or whose inputs the snapshot cannot provide
(variables, levels, grid, enough earlier times), raises
:class:`~zonda.registry.errors.ChampionIncomparable` naming the cause.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from zonda.evaluation.climatology import compute_climatology
from zonda.evaluation.per_init import PER_INIT_FILE, parse_key, per_init_scores, read_per_init
from zonda.params import Params
from zonda.provenance import read_manifest
from zonda.registry.bundle import same_id
from zonda.registry.errors import ChampionIncomparable, RegistryError
from zonda.registry.forecast import load_forecast_model, predict_forecast
from zonda.registry.inputs import format_lead
from zonda.snapshot import open_snapshot
from zonda.variables import TIME_STEP_HOURS

PathLike = str | os.PathLike[str]


def challenger_scores(evaluation_dir: PathLike, metrics: list[str]) -> xr.DataArray:
    """The ``(key, time)`` per-init scores of ``metrics`` from ``evaluation_dir/per_init.nc``.

    Raises RegistryError naming the file if it is absent, lacks a metric, holds
    no init time or non-finite scores.
    """
    path = Path(evaluation_dir) / PER_INIT_FILE
    try:
        scores = read_per_init(path)
    except (FileNotFoundError, ValueError) as exc:
        raise RegistryError(str(exc)) from None
    keys = [str(k) for k in scores["key"].values]
    missing = [m for m in metrics if m not in keys]
    if missing:
        raise RegistryError(f"{path}: registry.promotion.metrics {missing} have no per-init scores (keys {keys})")
    if scores.sizes["time"] == 0:
        raise RegistryError(f"{path}: holds no init time")
    scores = scores.sel(key=list(metrics))
    bad = [m for m in metrics if not np.isfinite(scores.sel(key=m).values).all()]
    if bad:
        raise RegistryError(f"{path}: per-init scores of {bad} are not finite")
    return scores


def _lead_steps(keys: list[str]) -> int:
    days = max(parse_key(k)[2] for k in keys)
    return int(round(days * 24 / TIME_STEP_HOURS))


def rescore_champion(model_uri: str, snapshot_dir: PathLike, reference: xr.DataArray, params: Params) -> xr.DataArray:
    """``(key, time)`` scores of ``model_uri`` on ``reference``'s keys and init times (see the module docstring).

    Args:
      model_uri: the champion, ``models:/NAME/VERSION``.
      snapshot_dir: the challenger's snapshot (its ID must be ``reference.attrs["snapshot_id"]``).
      reference: the challenger's per-init scores (:func:`challenger_scores`).
      params: the challenger's resolved params (the training split and climatology mode, for ``acc.*``).
    """
    snapshot_id = (read_manifest(snapshot_dir) or {}).get("snapshot_id")
    if not same_id(snapshot_id, reference.attrs.get("snapshot_id")):
        raise RegistryError(
            f"{snapshot_dir}: snapshot {snapshot_id} is not the one the challenger was evaluated on "
            f"({reference.attrs.get('snapshot_id')}); the champion must be scored on the same data"
        )
    keys = [str(k) for k in reference["key"].values]
    inits = np.asarray(reference["time"].values, dtype="datetime64[ns]")  # (n,)
    lead = format_lead(_lead_steps(keys))
    what = f"{model_uri} on snapshot {snapshot_id} ({inits.size} init times, lead {lead})"
    try:
        model = load_forecast_model(model_uri)
    except RegistryError as exc:
        raise ChampionIncomparable(f"{what}: {exc}") from None
    snapshot = open_snapshot(snapshot_dir)
    try:
        forecasts = []
        for init in inits:
            try:
                state = snapshot.sel(time=slice(None, init))
                forecasts.append(predict_forecast(model, state, lead))
            except (RegistryError, KeyError, ValueError) as exc:  # InitialStateError is a RegistryError
                raise ChampionIncomparable(f"{what}: cannot forecast from {pd.Timestamp(init)}: {exc}") from None
        forecast = xr.concat(forecasts, dim="time")  # (time, prediction_timedelta, [level], lat, lon)
        names = sorted({parse_key(k)[1].partition("/")[0] for k in keys})
        missing = [n for n in names if n not in snapshot.data_vars]
        if missing:
            raise ChampionIncomparable(f"{what}: the snapshot has no {missing} to score against")
        climatology = None
        if any(k.startswith("acc.") for k in keys):
            train = params.data.splits.train
            period = snapshot[names].sel(time=slice(np.datetime64(train.start), np.datetime64(train.end))).load()
            climatology = compute_climatology(period, params.evaluation.climatology)
        try:
            scores = per_init_scores(forecast, snapshot[names], climatology, keys)
        except (KeyError, ValueError) as exc:
            raise ChampionIncomparable(f"{what}: {exc}") from None
    finally:
        snapshot.close()
    return scores.assign_attrs(snapshot_id=str(snapshot_id), model_uri=model_uri)
