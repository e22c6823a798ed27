"""Stage 6: log the trained forecaster as an MLflow pyfunc, register it, run the promotion gate.

:func:`register_model` checks that the stage outputs belong together,
bundles what a forecast needs (:mod:`zonda.registry.bundle`), checks that the
bundle loads, logs it as a pyfunc model with its signature
(:func:`~zonda.registry.pyfunc_model.forecast_signature`) into the register
stage's MLflow run, logs the evaluation's headline scores as metrics of that
logged model (MLflow 3 LoggedModel metrics, named as in the evaluate run:
``test/rmse/geopotential/500/5d``), registers it as ``registry.model_name``
with its lineage as version tags, gives it the ``challenger`` alias and runs the promotion
gate (:mod:`zonda.registry.promotion`), which re-scores the champion on this
evaluation's snapshot and init times (:mod:`zonda.registry.rescore`) and
promotes only on a significant improvement. A rejected challenger is a normal
outcome: the reason is returned and tagged, nothing is raised.

Registration is idempotent by model content: a model whose ``zonda.model_id``
(:func:`~zonda.models.saved.weights_content_id` of the weights file
being registered) is already a version of ``registry.model_name`` is not
logged or registered again (a retried or re-run task); that version goes
through the rest (alias, gate) and is returned. The look-up is repeated
under the promotion lock right before registering, so two concurrent
registrations of one model make one version.

Version tags::

    zonda.snapshot_id, zonda.statistics_hash, zonda.graph_hash   lineage (model card)
    zonda.params_hash        Params.section_hash() of the whole resolved params
    zonda.code_version       git commit (ZONDA_GIT_SHA in images), zonda.package_version
    zonda.mlflow_run_id      the pipeline's MLflow run
    zonda.model_id           the weights' content hash (the idempotency key)
    zonda.weights_sha256, zonda.preset
    zonda.source.dvc.*       a dvc source's repo, rev, commit, path and md5 (from the snapshot manifest)
    zonda.snapshot.dvc_*     the snapshot's DVC md5s and the remote it was pushed to
    zonda.promotion.*        the gate's decision, reason, time, previous champion, champion version
                             re-scored, n inits, test, and per metric (zonda.promotion.metric.<key>.<field>)
                             outcome, aggregates, mean improvement, CI, p-value, bootstrap fraction
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import zonda
from zonda import tracking
from zonda.models.saved import CheckpointError, load_weights, weights_content_id
from zonda.params import Params
from zonda.provenance import code_version, read_manifest
from zonda.registry.bundle import check_lineage, check_promotion_metrics, read_card, read_model_scores, stage_bundle
from zonda.registry.errors import RegistryError
from zonda.registry.lock import PromotionLock
from zonda.evaluation.headline import headline_metric_name
from zonda.registry.promotion import CHALLENGER, TAG_DECISION, TAG_MODEL_VERSION, TAG_REGISTERED_MODEL, gate
from zonda.registry.pyfunc_model import ZondaForecastModel, default_lead, forecast_signature
from zonda.registry.rescore import challenger_scores, rescore_champion
from zonda.tracking import snapshot_lineage_tags

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ARTIFACT_NAME = "forecaster"
TAG_MODEL_ID = "zonda.model_id"
ENTRY_FILE = Path(__file__).with_name("_pyfunc_entry.py")
#: Distributions the pyfunc imports at load time, pinned to the versions installed here.
RUNTIME_DISTRIBUTIONS = (
    "mlflow", "torch", "torch-geometric", "lightning", "numpy", "pandas", "xarray", "h5netcdf", "zarr",
    "safetensors", "pydantic", "PyYAML",
)


def pip_requirements() -> list[str]:
    """The model's requirements: zonda itself (from the zonda image) and its pinned runtime deps."""
    pins = [f"zonda=={zonda.__version__}"]
    for dist in RUNTIME_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            log.warning("%s is not installed; left out of the model's requirements", dist)
    return pins


def version_tags(
    params: Params,
    card: dict[str, Any],
    run_id: str,
    *,
    model_id: str,
    snapshot_manifest: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The lineage and provenance tags of a new model version (see the module docstring); scores are metrics of
    the logged model (:func:`model_metrics`), the gate's decision is tagged by the gate."""
    return {
        TAG_MODEL_ID: model_id,
        "zonda.snapshot_id": str(card.get("snapshot_id")),
        "zonda.statistics_hash": str(card.get("statistics_hash")),
        "zonda.graph_hash": str(card.get("graph_hash")),
        "zonda.params_hash": params.section_hash(),
        "zonda.code_version": str(code_version()["git_commit"] or "unknown"),
        "zonda.package_version": zonda.__version__,
        "zonda.mlflow_run_id": run_id,
        "zonda.weights_sha256": str(card["weights"]["sha256"]),
        "zonda.preset": params.name,
        **snapshot_lineage_tags(snapshot_manifest or {}),
    }


def model_metrics(scores: dict[str, float]) -> dict[str, float]:
    """The logged model's metrics: each headline score under its MLflow name (as the evaluate run has it)."""
    return {headline_metric_name(key): float(value) for key, value in scores.items()}


def registered_model_id(model_dir: PathLike, card: dict[str, Any]) -> str:
    """The model ID of the weights file that is registered, checked against ``model.json``'s ``model_id``."""
    path = Path(model_dir) / card["weights"]["file"]
    try:
        model_id = weights_content_id(load_weights(path))
    except CheckpointError as exc:
        raise RegistryError(str(exc)) from None
    if card.get("model_id") is not None and card["model_id"] != model_id:
        raise RegistryError(
            f"{path}: holds model {model_id}, but {Path(model_dir) / 'model.json'} says {card['model_id']} (modified weights?)"
        )
    return model_id


def find_version(client: Any, name: str, model_id: str) -> Any | None:
    """The earliest version of registered model ``name`` tagged with ``model_id``, or None."""
    versions = client.search_model_versions(f"name = '{name}' and tags.`{TAG_MODEL_ID}` = '{model_id}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def log_pyfunc(params: Params, card: dict[str, Any], artifacts: dict[str, str]) -> Any:
    """Logs the bundle as a models-from-code pyfunc with its signature into the active MLflow run; returns its
    ModelInfo."""
    import mlflow

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided.*", category=UserWarning)
        return mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=str(ENTRY_FILE),
            artifacts=artifacts,
            signature=forecast_signature(card, default_lead(params.evaluation.lead_days)),
            pip_requirements=pip_requirements(),
            metadata={"zonda": {k: str(card.get(k)) for k in ("snapshot_id", "statistics_hash", "graph_hash")}},
        )


def _verify_bundle(artifacts: dict[str, str]) -> None:
    """Loads the bundle as the pyfunc will, so a model that cannot load is never registered."""
    try:
        ZondaForecastModel.from_artifacts(
            artifacts["model"], artifacts["graph"], artifacts["statistics"], artifacts["static"], artifacts["params"]
        )
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise RegistryError(f"the model bundle does not load: {exc}") from exc


def _description(params: Params, card: dict[str, Any], scores: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={scores[k]:.4g}" for k in params.registry.promotion.metrics if k in scores)
    return (
        f"zonda forecaster, preset {params.name!r}: snapshot {card.get('snapshot_id')}, "
        f"{card['grid']['n_lat']}x{card['grid']['n_lon']} grid. Promotion metrics: {shown}."
    )


MANIFEST_KEYS = (
    "name", "version", "aliases", "decision", "promoted", "reason", "champion", "previous_champion",
    "model_uri", "logged_model_uri", "mlflow_run_id", "scores", "champion_rescored", "n_inits", "test", "confidence",
    "metrics",
)


def registration_manifest(result: dict[str, Any]) -> dict[str, Any]:
    """The register stage's ``manifest.json`` payload from :func:`register_model`'s result."""
    return {
        "kind": "zonda.registration",
        **{key: result.get(key) for key in MANIFEST_KEYS},
        "lineage": {key: result["tags"].get(f"zonda.{key}") for key in ("snapshot_id", "statistics_hash", "graph_hash")},
        "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def register_model(
    params: Params,
    model_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    evaluation_dir: PathLike,
    *,
    snapshot_dir: PathLike,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Registers the trained model and runs the promotion gate (see the module docstring).

    Args:
        params: the resolved params (``registry``, ``evaluation.lead_days``, ``runtime`` for tracking).
        model_dir: training output (``weights.safetensors`` + ``model.json``).
        statistics_dir, graph_dir: the statistics and graph stage outputs the model was trained with.
        evaluation_dir: evaluation output (``headline.json``, ``per_init.nc``, ``manifest.json``).
        snapshot_dir: the snapshot, for the static fields bundled with the model and the champion's re-score.
        mlflow_run_id: the pipeline's MLflow run; None logs into a run of this stage alone.

    Returns:
        ``name``, ``version``, ``aliases``, ``decision`` (``promoted``/``rejected``),
        ``promoted``, ``reason``, ``champion``, ``previous_champion``, ``champion_rescored``,
        ``n_inits``, ``metrics`` (per metric: the paired test),
        ``model_uri`` (``models:/name/version``), ``logged_model_uri``,
        ``mlflow_run_id``, ``scores`` and ``tags``.
    """
    import mlflow

    card = read_card(model_dir)
    scores = read_model_scores(evaluation_dir)
    check_promotion_metrics(scores, params.registry.promotion.metrics, evaluation_dir)
    paired = challenger_scores(evaluation_dir, params.registry.promotion.metrics)
    check_lineage(card, snapshot_dir, statistics_dir, graph_dir, evaluation_dir)
    model_id = registered_model_id(model_dir, card)
    name = params.registry.model_name
    tracking.configure(params)
    client = mlflow.MlflowClient()
    existing = find_version(client, name, model_id)
    if existing is None:
        with tempfile.TemporaryDirectory(prefix="zonda-register-") as tmp:
            artifacts = stage_bundle(params, card, model_dir, statistics_dir, graph_dir, snapshot_dir, tmp)
            _verify_bundle(artifacts)
            run_id, logged_uri, tags, version = _log_and_register(
                params, card, scores, artifacts, mlflow_run_id, model_id=model_id,
                snapshot_manifest=read_manifest(snapshot_dir),
            )
    else:
        run_id, logged_uri, tags, version = _existing(existing, mlflow_run_id)
        log.info("%s: model %s already is %s version %s; not registered again", model_dir, model_id, name, version)
    client.update_model_version(name, version, description=_description(params, card, scores))
    client.set_registered_model_alias(name, CHALLENGER, version)

    def rescore(champion: Any) -> Any:
        return rescore_champion(f"models:/{name}/{champion.version}", snapshot_dir, paired, params)

    decision = gate(name, version, params.registry.promotion, challenger_scores=paired, rescore=rescore, client=client)
    for key, value in {TAG_REGISTERED_MODEL: name, TAG_MODEL_VERSION: version, TAG_DECISION: decision["decision"]}.items():
        client.set_tag(run_id, key, value)
    return {
        **decision,
        "aliases": sorted(client.get_model_version(name, version).aliases),
        "model_uri": f"models:/{name}/{version}",
        "logged_model_uri": logged_uri,
        "mlflow_run_id": run_id,
        "scores": scores,
        "tags": tags,
    }


def _existing(version: Any, mlflow_run_id: str | None) -> tuple[str, str, dict[str, str], str]:
    """(run id, logged model URI, tags, version) of an already registered version (the pipeline's run if given)."""
    return mlflow_run_id or version.run_id, version.source, dict(version.tags), str(version.version)


def _log_and_register(
    params: Params,
    card: dict[str, Any],
    scores: dict[str, float],
    artifacts: dict[str, str],
    mlflow_run_id: str | None,
    *,
    model_id: str,
    snapshot_manifest: dict[str, Any] | None = None,
) -> tuple[str, str, dict[str, str], str]:
    """Logs the pyfunc into the stage's MLflow run and registers it (unless a concurrent registration of the
    same model won the race); (run id, logged model URI, tags, version)."""
    import mlflow

    name = params.registry.model_name
    with tracking.stage_run(params, mlflow_run_id, "register") as run:
        run_id = run.info.run_id
        info = log_pyfunc(params, card, artifacts)
        mlflow.log_metrics(model_metrics(scores), model_id=info.model_id)
        tags = version_tags(params, card, run_id, model_id=model_id, snapshot_manifest=snapshot_manifest)
        client = mlflow.MlflowClient()
        with PromotionLock(client, name):
            existing = find_version(client, name, model_id)
            if existing is not None:
                return _existing(existing, mlflow_run_id)
            version = str(mlflow.register_model(info.model_uri, name, tags=tags).version)
    return run_id, info.model_uri, tags, version
