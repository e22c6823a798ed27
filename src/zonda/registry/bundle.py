"""The files a registered model carries, gathered from the pipeline's stage outputs.

:func:`stage_bundle` copies into a fresh directory only what a forecast needs::

    model/weights.safetensors, model/model.json     (training output; no checkpoints)
    graph/graph.safetensors, graph/graph.json       (graph stage; no plots)
    statistics/statistics.nc, statistics/manifest.json
    static.nc                                        (the model's static fields, from the snapshot)
    params.resolved.yaml                             (the params the pipeline ran with)

and :func:`check_lineage` makes sure the pieces belong together (the model
card's snapshot ID, statistics hash and graph hash against the other stages'
manifests, and the evaluation's recorded lineage) before anything is logged.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from zonda.evaluation.run import HEADLINE_FILE, read_headline
from zonda.graph.io import read_manifest as read_graph_manifest
from zonda.models.saved import read_model_card
from zonda.params import Params, write_resolved
from zonda.provenance import read_manifest, sha256_id
from zonda.registry.errors import RegistryError
from zonda.registry.pyfunc_model import (
    ARTIFACT_GRAPH,
    ARTIFACT_MODEL,
    ARTIFACT_PARAMS,
    ARTIFACT_STATIC,
    ARTIFACT_STATISTICS,
    LINEAGE_KEYS,
    STATIC_FILE,
)
from zonda.snapshot import open_snapshot, verify_snapshot
from zonda.statistics import load_statistics

PathLike = str | os.PathLike[str]
_GRAPH_FILES = ("graph.safetensors", "graph.json")
_STATISTICS_FILES = ("statistics.nc", "manifest.json")


def read_card(model_dir: PathLike) -> dict[str, Any]:
    """The training output's ``model.json`` (RegistryError naming the file if absent or unreadable)."""
    try:
        return read_model_card(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise RegistryError(str(exc)) from None


def read_model_scores(evaluation_dir: PathLike) -> dict[str, float]:
    """The model's headline scores from an evaluation's ``headline.json`` (``{"model": {key: value}}``)."""
    path = Path(evaluation_dir) / HEADLINE_FILE
    try:
        headline = read_headline(evaluation_dir)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    model = headline.get("model") if isinstance(headline, dict) else None
    if not isinstance(model, dict) or not model:
        raise RegistryError(f"{path}: has no 'model' scores (keys: {sorted(headline) if isinstance(headline, dict) else []})")
    try:
        return {str(k): float(v) for k, v in model.items()}
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{path}: a model score is not a number: {exc}") from None


def check_promotion_metrics(scores: dict[str, float], metrics: list[str], evaluation_dir: PathLike) -> None:
    """Every ``registry.promotion.metrics`` key must be among the evaluation's model scores."""
    missing = [m for m in metrics if m not in scores]
    if missing:
        raise RegistryError(
            f"{Path(evaluation_dir) / HEADLINE_FILE}: registry.promotion.metrics {missing} are not among the "
            f"model's headline scores {sorted(scores)} (check evaluation.headline_variables/headline_lead_days)"
        )
    nan = [m for m in metrics if not math.isfinite(scores[m])]
    if nan:
        raise RegistryError(f"{Path(evaluation_dir) / HEADLINE_FILE}: promotion metrics {nan} are not finite")


def check_lineage(
    card: dict[str, Any], snapshot_dir: PathLike, statistics_dir: PathLike, graph_dir: PathLike, evaluation_dir: PathLike
) -> None:
    """The model card's lineage must match the snapshot, statistics, graph and evaluation outputs,
    and the snapshot's chunks and ``statistics.nc`` the digests recorded when they were written."""
    found = {
        "snapshot_id": ((read_manifest(snapshot_dir) or {}).get("snapshot_id"), Path(snapshot_dir) / "manifest.json"),
        "statistics_hash": (
            (read_manifest(statistics_dir) or {}).get("statistics_hash"), Path(statistics_dir) / "manifest.json"
        ),
        "graph_hash": (_graph_hash(graph_dir, read_graph_manifest), Path(graph_dir) / "graph.json"),
    }
    for key, (value, source) in found.items():
        if not same_id(value, card.get(key)):
            raise RegistryError(
                f"{source}: {key} {value} is not the model's ({card.get(key)}); these outputs come from different pipeline runs"
            )
    verify_snapshot(snapshot_dir)
    load_statistics(statistics_dir)  # checks the file and its values against the manifest
    evaluated = (read_manifest(evaluation_dir) or {}).get("model_lineage")
    if evaluated is not None:
        for key in LINEAGE_KEYS:
            if not same_id(evaluated.get(key), card.get(key)):
                raise RegistryError(
                    f"{Path(evaluation_dir) / 'manifest.json'}: evaluated a model with {key} {evaluated.get(key)}, "
                    f"not this one ({card.get(key)})"
                )


def same_id(a: Any, b: Any) -> bool:
    """Whether two content IDs are equal, written with or without the ``sha256:`` prefix."""
    if a is None or b is None:
        return False
    return sha256_id(a) == sha256_id(b)


def _graph_hash(graph_dir: PathLike, reader: Any) -> str | None:
    try:
        return reader(Path(graph_dir)).get("graph_hash")
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def write_static(snapshot_dir: PathLike, names: list[str], card: dict[str, Any], path: Path) -> Path:
    """``static.nc``: the model's static fields taken from the snapshot, on the model card's grid."""
    lat = np.asarray(card["grid"]["latitudes"], dtype=np.float64)
    lon = np.asarray(card["grid"]["longitudes"], dtype=np.float64)
    ds = open_snapshot(snapshot_dir)
    try:
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise RegistryError(f"{snapshot_dir}: static field(s) {missing} of the model are not in the snapshot")
        if not (_same_axis(ds["latitude"].values, lat) and _same_axis(ds["longitude"].values, lon)):
            raise RegistryError(
                f"{snapshot_dir}: the snapshot's {ds.sizes['latitude']}x{ds.sizes['longitude']} grid is not the "
                f"model card's {lat.size}x{lon.size} grid"
            )
        static = ds[names].load() if names else xr.Dataset(coords={"latitude": lat, "longitude": lon})
    finally:
        ds.close()
    static = static.drop_vars([c for c in static.coords if c not in ("latitude", "longitude")])
    static.attrs = {"title": "zonda static fields", "snapshot_id": str(card.get("snapshot_id"))}
    static.to_netcdf(path, engine="h5netcdf")
    return path


def _same_axis(a: np.ndarray, b: np.ndarray) -> bool:
    return np.shape(a) == np.shape(b) and bool(np.allclose(a, b, atol=1e-6))


def stage_bundle(
    params: Params,
    card: dict[str, Any],
    model_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    snapshot_dir: PathLike,
    dest: PathLike,
) -> dict[str, str]:
    """Copies the bundle into ``dest`` (an empty directory); returns the pyfunc ``artifacts`` mapping."""
    dest = Path(dest)
    model = _copy(Path(model_dir), dest / ARTIFACT_MODEL, ("model.json", card["weights"]["file"]))
    graph = _copy(Path(graph_dir), dest / ARTIFACT_GRAPH, _GRAPH_FILES)
    statistics = _copy(Path(statistics_dir), dest / ARTIFACT_STATISTICS, _STATISTICS_FILES)
    static = write_static(snapshot_dir, list(card["static"]), card, dest / STATIC_FILE)
    resolved = write_resolved(params, dest)  # dest / RESOLVED_PARAMS_FILENAME
    return {
        ARTIFACT_MODEL: str(model),
        ARTIFACT_GRAPH: str(graph),
        ARTIFACT_STATISTICS: str(statistics),
        ARTIFACT_STATIC: str(static),
        ARTIFACT_PARAMS: str(resolved),
    }


def _copy(src: Path, dest: Path, names: tuple[str, ...]) -> Path:
    dest.mkdir(parents=True)
    for name in names:
        if not (src / name).is_file():
            raise RegistryError(f"{src / name}: not found")
        shutil.copy2(src / name, dest / name)
    return dest
