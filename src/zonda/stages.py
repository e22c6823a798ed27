"""One entry point per pipeline stage: run the library function, record it in MLflow.

The KFP components (``components/``), the DVC stages (``dvc.yaml``) and the
``zonda`` CLI all call these functions, so a stage behaves the same whichever
way it is started. Each writes its outputs atomically to ``out_dir`` with a
``manifest.json`` and the resolved params beside them, then records the
manifest in MLflow: in the run ``mlflow_run_id`` when given, otherwise in a run
of its own (a child of the pipeline's run when ``ZONDA_MLFLOW_PARENT_RUN_ID`` is
set), or not at all with ``track=False``.

A stage whose input key (its params sections, its upstream outputs' IDs and the
code; :mod:`zonda.stage_cache`) matches an earlier output under
``runtime.output_root`` reuses that output instead of running again.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from zonda import stage_cache
from zonda.files import atomic_dir, atomic_path
from zonda.params import Params

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _record(
    params: Params,
    stage: str,
    manifest: dict[str, Any],
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] | None = None,
    lead_metrics: Path | None = None,
) -> None:
    import mlflow

    from zonda import tracking
    from zonda.evaluation.lead_metrics import log_lead_metrics

    with tracking.stage_run(params, mlflow_run_id, stage) as run:
        if lead_metrics is not None:
            log_lead_metrics(lead_metrics, run.info.run_id)
        if tags:
            mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics(metrics)
        tracking.log_manifest(stage, manifest, out_dir)
        for path in artifacts or []:
            mlflow.log_artifact(str(path), artifact_path=stage)


def _check_tracking(params: Params, track: bool) -> None:
    """Before any compute: a stage that logs to MLflow fails at once, naming the URI, if the server does not answer."""
    if track:
        from zonda.tracking import check_reachable

        check_reachable(params)


def _run_or_reuse(
    params: Params, stage: str, out_dir: PathLike, upstream: dict[str, PathLike], compute: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], Path | None]:
    """(manifest, where it was reused from or None): the earlier output with this input key, or ``compute()``'s."""
    key = stage_cache.input_key(params, stage, upstream)
    found = stage_cache.find(params, stage, key) if stage_cache.reuse_enabled() else None
    if found is not None and stage_cache.reuse(params, stage, key, out_dir) is not None:
        return found[1], found[0]
    started = time.monotonic()
    log.info("%s: running (input key %s)", stage, key[:12])
    manifest = compute()
    if "model_id" not in manifest and stage == "train":  # a DDP rank other than 0 wrote nothing
        return manifest, None
    manifest = stage_cache.record(params, stage, key, out_dir, manifest)
    log.info("%s: %s written to %s in %.0f s", stage, stage_cache.output_id(stage, manifest), out_dir, time.monotonic() - started)
    return manifest, None


def record_reuse(params: Params, stage: str, manifest: dict[str, Any], out_dir: PathLike, source: Path, *, mlflow_run_id: str | None) -> None:
    """The MLflow record of a reused output (a stage run tagged ``zonda.reused_from``): nothing is recomputed."""
    _record(params, stage, manifest, out_dir, mlflow_run_id=mlflow_run_id, tags={"zonda.reused_from": str(source)})


def headline_metric_name(key: str) -> str:
    """MLflow name of a headline score: ``rmse.geopotential.500.1d`` -> ``test/rmse/geopotential/500/1d``."""
    return "test/" + key.replace(".", "/")


def snapshot_stage(
    params: Params, out_dir: PathLike, *, mlflow_run_id: str | None = None, track: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Stage 1: builds (or finds) the snapshot of ``params.data`` at ``out_dir``.

    With ``runtime.dvc_remote`` set, the snapshot is then pushed to that DVC
    remote by content (:mod:`zonda.snapshot_store`); the manifest returned
    carries its DVC hashes (``dvc``) and a dvc source's lineage (``source.dvc``).
    """
    from zonda import snapshot_store, tracking
    from zonda.data import dvc_source
    from zonda.snapshot import build_snapshot

    _check_tracking(params, track)
    params = snapshot_store.pin(dvc_source.pin(params))

    def compute() -> dict[str, Any]:
        return build_snapshot(params, out_dir, progress=progress).manifest

    manifest, reused = _run_or_reuse(params, "snapshot", out_dir, {}, compute)
    if params.runtime.dvc_remote:  # after the stage key is in manifest.json, so the pushed copy is the local one
        manifest = snapshot_store.push_snapshot(out_dir, params.runtime.dvc_remote)
    if track:  # a reused snapshot's run carries its lineage too (and says where it came from)
        reuse_tag = {"zonda.reused_from": str(reused)} if reused else {}
        _record(
            params, "snapshot", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.snapshot_id": manifest["snapshot_id"], **tracking.snapshot_lineage_tags(manifest), **reuse_tag},
            metrics={"snapshot/time_steps": manifest["time_range"]["steps"]},
        )
    return manifest


def statistics_stage(
    params: Params,
    snapshot_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 2: normalisation statistics of the snapshot at ``snapshot_dir``."""
    from zonda.statistics import STATISTICS_FILENAME, build_statistics

    _check_tracking(params, track)
    manifest, reused = _run_or_reuse(
        params, "statistics", out_dir, {"snapshot": snapshot_dir},
        lambda: build_statistics(params, snapshot_dir, out_dir, progress=progress),
    )
    if track and reused:
        record_reuse(params, "statistics", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    elif track:
        _record(
            params, "statistics", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.statistics_hash": manifest["statistics_hash"]},
            artifacts=[Path(out_dir) / STATISTICS_FILENAME],
        )
    return manifest


def graph_stage(
    params: Params,
    snapshot_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 3: icosahedral multi-mesh and grid<->mesh edges for the snapshot's grid."""
    from zonda.graph import build_graph, graph_summary, load_graph, save_graph
    from zonda.params import write_resolved
    from zonda.provenance import code_version, read_manifest, sha256_id, write_manifest
    from zonda.snapshot import open_snapshot

    _check_tracking(params, track)
    out_dir = Path(out_dir)

    def compute() -> dict[str, Any]:
        snapshot_manifest = read_manifest(snapshot_dir) or {}
        ds = open_snapshot(snapshot_dir)
        data = build_graph(params.graph, ds["latitude"].values, ds["longitude"].values)
        with atomic_dir(out_dir) as tmp:
            graph_manifest = save_graph(data, tmp)
            manifest = {
                "kind": "zonda.graph",
                "graph_hash": sha256_id(graph_manifest["graph_hash"]),
                "snapshot_id": snapshot_manifest.get("snapshot_id"),
                "counts": graph_manifest["counts"],
                "code_version": code_version(),
            }
            write_resolved(params, tmp)
            write_manifest(tmp, manifest)
        return manifest

    manifest, reused = _run_or_reuse(params, "graph", out_dir, {"snapshot": snapshot_dir}, compute)
    if track and reused:
        record_reuse(params, "graph", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    elif track:
        summary = graph_summary(load_graph(out_dir))
        _record(
            params, "graph", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.graph_hash": manifest["graph_hash"]},
            metrics={f"graph/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))},
            artifacts=[out_dir / "mesh.png", out_dir / "edge_lengths.png", out_dir / "graph.json"],
        )
    return manifest


def train_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 4: trains the forecaster (Lightning; DDP from ``training.devices/num_nodes/strategy``).

    Lightning's MLflow logger writes into the pipeline's run itself (curves,
    lineage, checkpoint), so nothing more is recorded here.
    """
    from zonda.training.train import train

    _check_tracking(params, track)
    manifest, reused = _run_or_reuse(
        params, "train", out_dir, {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir},
        lambda: train(
            params, snapshot_dir, statistics_dir, graph_dir, out_dir,
            mlflow_run_id=mlflow_run_id, progress=progress, track=track,
        ),
    )
    if track and reused:
        record_reuse(params, "train", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    return manifest


def train_command_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Stage 4 as a ``zonda train`` child process (what the KFP train task runs on one node).

    Lightning's DDP starts its extra processes by re-running the current
    command, which must therefore be ``zonda train`` itself, not the KFP executor.
    """
    import subprocess
    import tempfile

    from zonda.params import write_resolved

    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "zonda.cli"] + _train_arguments(
            write_resolved(params, tmp), snapshot_dir, statistics_dir, graph_dir, out_dir, mlflow_run_id
        )
        subprocess.run(command, check=True)
    return _training_manifest(out_dir, "zonda train finished")


def _train_arguments(
    params_file: PathLike, snapshot: PathLike, statistics: PathLike, graph: PathLike, out: PathLike, mlflow_run_id: str | None
) -> list[str]:
    """The ``zonda train ...`` arguments (after the program) for these inputs."""
    arguments = ["train", "--params", str(params_file), "--snapshot", str(snapshot), "--statistics", str(statistics),
                 "--graph", str(graph), "--out", str(out)]
    return arguments + (["--mlflow-run-id", mlflow_run_id] if mlflow_run_id else [])


def _training_manifest(model_dir: PathLike, what: str) -> dict[str, Any]:
    """The training artifact's manifest, or RuntimeError saying ``what`` happened without one."""
    from zonda.provenance import read_manifest

    manifest = read_manifest(model_dir)
    if manifest is None:
        raise RuntimeError(f"{model_dir}: {what} but wrote no manifest.json")
    return manifest


def train_task_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    launcher: Any = None,
) -> dict[str, Any]:
    """Stage 4 as the pipeline's train task runs it: a TrainJob/PyTorchJob when
    ``training.num_nodes > 1`` (``launcher``: see :func:`distributed_train_stage`),
    otherwise a ``zonda train`` child process in this pod."""

    def compute() -> dict[str, Any]:
        if params.training.num_nodes > 1:
            return distributed_train_stage(
                params, snapshot_dir, statistics_dir, graph_dir, out_dir, mlflow_run_id=mlflow_run_id, launcher=launcher
            )
        return train_command_stage(params, snapshot_dir, statistics_dir, graph_dir, out_dir, mlflow_run_id=mlflow_run_id)

    manifest, reused = _run_or_reuse(
        params, "train", out_dir, {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir}, compute
    )
    if reused:
        record_reuse(params, "train", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    return manifest


def evaluate_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    model_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 5: 10-day forecasts on the test split, WB2 metrics against persistence and climatology."""
    from zonda.evaluation.run import HEADLINE_FILE, RESULTS_FILE, SUMMARY_FILE, run_evaluation

    _check_tracking(params, track)
    out_dir = Path(out_dir)

    def compute() -> dict[str, Any]:
        with atomic_dir(out_dir) as tmp:
            return run_evaluation(params, snapshot_dir, statistics_dir, graph_dir, model_dir, tmp, progress=progress)

    upstream = {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir, "train": model_dir}
    manifest, reused = _run_or_reuse(params, "evaluate", out_dir, upstream, compute)
    if track and reused:
        record_reuse(params, "evaluate", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    elif track:
        plots = sorted(out_dir.glob("*.png"))
        _record(
            params, "evaluate", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            metrics={headline_metric_name(k): float(v) for k, v in manifest["headline"].items()},
            tags={f"zonda.beats_persistence.{k}": str(v) for k, v in manifest["beats_persistence"].items()},
            artifacts=[out_dir / RESULTS_FILE, out_dir / SUMMARY_FILE, out_dir / HEADLINE_FILE, *plots],
            lead_metrics=out_dir / RESULTS_FILE,
        )
    return manifest


def distributed_train_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    launcher: Any = None,
) -> dict[str, Any]:
    """Stage 4 on several nodes: runs ``zonda train`` as a Kubeflow TrainJob / PyTorchJob and waits.

    The job's pods mount the data PVC, so the inputs are staged under
    ``runtime.output_root`` (which must lie on that PVC, e.g. ``/data/zonda``),
    the job trains into it, and the result is copied to ``out_dir``. A failed
    job raises with its pods' logs (``zonda.k8s.JobFailed``).
    """
    from zonda.k8s import distributed_job_manifest, job_name_for, launch
    from zonda.params import write_resolved

    job_name = job_name_for(f"{params.name}-train", mlflow_run_id or uuid.uuid4().hex)
    shared = Path(params.runtime.output_root) / "train-jobs" / job_name
    staged = {}
    for name, src in (("snapshot", snapshot_dir), ("statistics", statistics_dir), ("graph", graph_dir)):
        staged[name] = shared / name
        if not staged[name].exists():  # a retried task reuses what an earlier attempt staged completely
            with atomic_path(staged[name]) as tmp:
                shutil.copytree(src, tmp)
    command = ["zonda"] + _train_arguments(
        write_resolved(params, shared), staged["snapshot"], staged["statistics"], staged["graph"], shared / "model",
        mlflow_run_id,
    ) + ["-q"]
    manifest = distributed_job_manifest(params, job_name=job_name, command=command)
    (launcher or launch)(manifest, timeout_s=params.runtime.distributed.timeout_minutes * 60)
    trained = _training_manifest(shared / "model", "the training job finished")
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(shared / "model", tmp, dirs_exist_ok=True)
    return trained


def register_stage(
    params: Params,
    model_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    evaluation_dir: PathLike,
    out_dir: PathLike,
    *,
    snapshot_dir: PathLike,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 6: registers the model as ``registry.model_name`` and runs the promotion gate.

    A rejected challenger is a normal outcome: ``manifest.json`` in ``out_dir``
    records the decision and its reason. Registering writes to MLflow, so
    ``track=False`` is refused.
    """
    from zonda.params import write_resolved
    from zonda.provenance import write_manifest
    from zonda.registry.register import register_model, registration_manifest

    if not track:
        raise ValueError("the register stage writes to the MLflow Model Registry; it cannot run without MLflow (--no-mlflow)")
    _check_tracking(params, track)
    out_dir = Path(out_dir)
    run_ids: list[str] = []

    def compute() -> dict[str, Any]:
        result = register_model(
            params, model_dir, statistics_dir, graph_dir, evaluation_dir, snapshot_dir=snapshot_dir, mlflow_run_id=mlflow_run_id
        )
        run_ids.append(result["mlflow_run_id"])
        manifest = registration_manifest(result)
        with atomic_dir(out_dir) as tmp:
            write_resolved(params, tmp)
            write_manifest(tmp, manifest)
        return manifest

    upstream = {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir, "train": model_dir,
                "evaluate": evaluation_dir}
    manifest, reused = _run_or_reuse(params, "register", out_dir, upstream, compute)
    if reused:  # the model version registered then is the one these inputs give: none is added
        record_reuse(params, "register", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    else:
        _record(params, "register", manifest, out_dir, mlflow_run_id=run_ids[0])  # register_model set the tags
    return manifest
