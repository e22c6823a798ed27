"""MLflow tracking: a parent run per pipeline run, a child run per stage.

The pipeline's run stays RUNNING while its stages run and ends FINISHED, or
FAILED when a stage failed (:func:`start_pipeline_run`, :func:`end_pipeline_run`).
Each stage logs into a run of its own, which ends with the stage; it is the
pipeline run's child (:func:`parent_run_id`): the run :data:`PARENT_RUN_ENV` names
(the local runner sets it), or on KFP the run tagged :data:`KFP_RUN_TAG` with the
KFP run id that the task's pod label gives it in :data:`KFP_RUN_ID_ENV` (no task
input, so KFP's cache keys do not change from one run to the next).

The tracking URI is, in order: ``MLFLOW_TRACKING_URI``, ``runtime.mlflow_tracking_uri``,
or a local sqlite store ``<runtime.output_root>/mlflow.db`` with artifacts in
``<runtime.output_root>/mlartifacts`` (MLflow 3's file store is off unless
opted into, so the local default is sqlite).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from zonda.params import RESOLVED_PARAMS_FILENAME, Params
from zonda.provenance import code_version

log = logging.getLogger(__name__)

_MAX_PARAM_LENGTH = 6000
#: Seconds to wait for the tracking server's answer before a stage gives up on it (MLflow's own client
#: retries an unreachable server for minutes).
REACHABLE_TIMEOUT_S = 5.0


class TrackingServerError(ValueError):
    """The MLflow tracking server does not answer: the message names the URI (credentials masked)."""


class TrackingServerLost(RuntimeError):
    """The MLflow tracking server stopped answering during a stage: the message names the URI and what is kept locally."""


PARENT_RUN_ENV = "ZONDA_MLFLOW_PARENT_RUN_ID"
#: The KFP run id of a task on a cluster, from its pod's ``pipeline/runid`` label (``pipelines.zonda_pipeline``).
KFP_RUN_ID_ENV = "ZONDA_KFP_RUN_ID"
#: The tag of the pipeline's MLflow run that holds the KFP run id, by which the stages find it.
KFP_RUN_TAG = "zonda.kfp_run_id"


def kfp_run_tags() -> dict[str, str]:
    """``{KFP_RUN_TAG: run id}`` in a KFP task on a cluster (:data:`KFP_RUN_ID_ENV` set), else ``{}``."""
    kfp_run = os.environ.get(KFP_RUN_ID_ENV)
    return {KFP_RUN_TAG: kfp_run} if kfp_run else {}


def parent_run_id(params: Params) -> str | None:
    """The pipeline's MLflow run a stage's run nests under, or None (a stage run alone).

    :data:`PARENT_RUN_ENV` when set; else, in a KFP task (:data:`KFP_RUN_ID_ENV` set), the newest
    pipeline run (stage runs excluded) of the experiment tagged :data:`KFP_RUN_TAG` with that KFP run id,
    which the pipeline's ``open_mlflow_run`` task created before any stage started.
    """
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        return parent
    kfp_run = os.environ.get(KFP_RUN_ID_ENV)
    if not kfp_run:
        return None
    import mlflow

    runs = mlflow.search_runs(
        [experiment_id(params)], filter_string=f"tags.`{KFP_RUN_TAG}` = '{kfp_run}'", output_format="list",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if "zonda.stage" not in r.data.tags]
    if not runs:
        log.warning("no MLflow run tagged %s=%s in %s: this stage's run is not nested", KFP_RUN_TAG, kfp_run,
                    params.runtime.mlflow_experiment)
        return None
    return runs[0].info.run_id


def parent_tags(params: Params) -> dict[str, str]:
    """The tag that nests a stage's run under the pipeline's run (MLflow's ``mlflow.parentRunId``), if there is one."""
    parent = parent_run_id(params)
    return {"mlflow.parentRunId": parent} if parent else {}


def local_store(params: Params) -> tuple[str, str]:
    """(tracking URI, artifact root URI) of the local sqlite default under runtime.output_root."""
    root = Path(params.runtime.output_root).resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


def tracking_uri(params: Params) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or params.runtime.mlflow_tracking_uri or local_store(params)[0]


def shown_uri(uri: str) -> str:
    """``uri`` without a password in its user-info part (``https://user:***@host``)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_reachable(params: Params, timeout_s: float = REACHABLE_TIMEOUT_S) -> str:
    """Raises TrackingServerError unless the tracking store of ``params`` answers; returns its URI.

    An ``http(s)://`` server gets one request to its ``/health`` endpoint; any HTTP answer (even an
    error status: the server is there) passes, no answer within ``timeout_s`` (refused, unknown host,
    timeout) fails. Local stores (sqlite, files) pass. Stages call this before any compute, so an
    unreachable server costs seconds, not the work of a stage and minutes of client retries.
    """
    uri = tracking_uri(params)
    if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
        return uri
    source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "runtime.mlflow_tracking_uri"
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        pass  # the server answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerError(
            f"MLflow tracking server {shown_uri(uri)} ({source}) does not answer ({reason}); start it, point "
            f"{source} at a running one, or run without MLflow (--no-mlflow)"
        ) from None
    return uri


def configure(params: Params) -> str:
    """Points the mlflow client at this params' tracking store; returns the URI."""
    import mlflow

    uri = tracking_uri(params)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which tracking_uri() honours as the user's
    # override: put the user's value back so the next params in this process pick their own store.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return uri


def experiment_id(params: Params) -> str:
    """The experiment's id, creating it (with a local artifact root for sqlite stores) if needed."""
    import mlflow

    configure(params)
    name = params.runtime.mlflow_experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if tracking_uri(params) == local_store(params)[0]:
        artifact_location = local_store(params)[1]
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # noqa: BLE001 - created concurrently by another stage
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Dotted-key flat view of nested params, for ``mlflow.log_params``."""
    out: dict[str, str] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        text = json.dumps(tree) if isinstance(tree, list) else str(tree)
        out[prefix.rstrip(".")] = text[:_MAX_PARAM_LENGTH]
    return out


def start_pipeline_run(params: Params, run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Creates the pipeline's MLflow run, logs the resolved params (flat and as YAML); returns its id.

    The run is left RUNNING: :func:`end_pipeline_run` ends it when the last stage has ended.
    """
    import mlflow

    check_reachable(params)
    exp = experiment_id(params)
    version = code_version()
    all_tags = {
        "zonda.preset": params.name,
        "zonda.version": str(version["zonda"]),
        "mlflow.source.git.commit": str(version["git_commit"] or "unknown"),
        **(tags or {}),
    }
    client = mlflow.MlflowClient()
    run_id = client.create_run(exp, run_name=run_name, tags=all_tags).info.run_id
    flat = list(flatten(params.public_dict()).items())
    for start in range(0, len(flat), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in flat[start:start + 100]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RESOLVED_PARAMS_FILENAME
        path.write_text(params.to_yaml())
        client.log_artifact(run_id, str(path))
    return run_id


def find_pipeline_run(params: Params, run_name: str) -> str | None:
    """The id of the newest RUNNING pipeline run named ``run_name`` (stage runs excluded), or None."""
    import mlflow

    exp = experiment_id(params)
    runs = mlflow.search_runs(
        [exp], filter_string=f"attributes.run_name = '{run_name}' and attributes.status = 'RUNNING'",
        output_format="list", order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if "zonda.stage" not in r.data.tags]
    return runs[0].info.run_id if runs else None


def end_pipeline_run(params: Params, run_id: str, *, failed: bool) -> None:
    """Ends the pipeline's MLflow run FAILED or FINISHED (a run already ended is left as it is)."""
    import mlflow

    configure(params)
    client = mlflow.MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


@contextlib.contextmanager
def stage_run(params: Params, run_id: str | None, stage: str) -> Iterator[Any]:
    """Resumes the pipeline's MLflow run (or, with ``run_id=None``, starts a run for this stage alone).

    Yields the active ``mlflow.ActiveRun``; the run is left open for later
    stages when it was resumed, ended when it was created here.
    """
    import mlflow

    configure(params)
    if run_id:
        with mlflow.start_run(run_id=run_id) as run:
            yield run
    else:
        exp = experiment_id(params)
        tags = {"zonda.stage": stage, **parent_tags(params)}
        with mlflow.start_run(experiment_id=exp, run_name=f"{params.name}-{stage}", tags=tags) as run:
            mlflow.log_params(flatten(params.public_dict()))
            yield run


def log_manifest(stage: str, manifest: dict[str, Any], directory: str | os.PathLike[str] | None = None) -> None:
    """Logs a stage's manifest (and its resolved params file, if present) as artifacts under ``stage/``."""
    import mlflow

    mlflow.log_dict(manifest, f"{stage}/manifest.json")
    if directory is not None:
        resolved = Path(directory) / RESOLVED_PARAMS_FILENAME
        if resolved.is_file():
            mlflow.log_artifact(str(resolved), artifact_path=stage)


def snapshot_lineage_tags(manifest: dict[str, Any]) -> dict[str, str]:
    """MLflow / registry tags of a snapshot manifest's DVC lineage: the source read and the snapshot pushed."""
    tags = {}
    source = (manifest.get("source") or {}).get("dvc")
    if source:
        tags |= {f"zonda.source.dvc.{key}": str(source[key]) for key in ("repo", "rev", "commit", "path", "md5")}
    pushed = manifest.get("dvc")
    if pushed:
        tags["zonda.snapshot.dvc_md5"] = str(pushed["md5"])
        tags |= {f"zonda.snapshot.dvc_{key}": str(pushed[key]) for key in ("remote", "dir_md5") if key in pushed}
    return tags
