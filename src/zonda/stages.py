"""The six stages: one function each, ``inputs + out_dir -> manifest``, recorded in MLflow.

=============  ==========================================  ==============================
stage          inputs (upstream output directories)        output (``out_dir``)
=============  ==========================================  ==============================
snapshot       (params.data)                               zarr v3 store, ``snapshot_id``
statistics     snapshot                                    ``statistics_hash``
graph          snapshot                                    ``graph_hash``
train          snapshot, statistics, graph                 weights, ``model_id``
evaluate       snapshot, statistics, graph, model          scores, ``stage_key``
register       snapshot, statistics, graph, model, eval    registry decision
=============  ==========================================  ==============================

The KFP components (``pipelines/components.py``), the DVC stages (``dvc.yaml``)
and the ``zonda`` CLI all call these functions, so a stage behaves the same
whichever way it is started. Every stage runs inside :func:`zonda.console.stage_log`
(:func:`_logged`): its whole log goes to ``<out_dir>.log`` beside its output, the
console gets one line when it starts and one when it ends. Every stage has the same shape:

1. :func:`_check_tracking` — before any compute, an MLflow server that does not answer fails at once;
2. :func:`_run_or_reuse` — the earlier output with the same input key (its params
   sections, its upstream outputs' IDs and the code; :mod:`zonda.stage_cache`)
   under ``runtime.output_root`` is reused, else ``compute()`` writes the output
   through :func:`zonda.outputs.write_output` (one temporary directory renamed onto
   ``out_dir``, the resolved params beside, ``manifest.json`` last) and the key is recorded;
3. :func:`_record` — the manifest (and the stage's tags, metrics, artifacts) is
   recorded in the MLflow run ``mlflow_run_id`` when given, otherwise in a run of
   its own (a child of the pipeline's run when ``ZONDA_MLFLOW_PARENT_RUN_ID`` is
   set), or not at all with ``track=False``; a reused output's run is tagged
   ``zonda.reused_from`` (:func:`zonda.stage_cache.record_reuse`).

A seventh stage copies :func:`graph_stage`: its library function writes into
the temporary directory it is given and returns the manifest; the stage passes
it to ``write_output`` inside ``compute`` and names its upstream outputs.
Training is launched by :mod:`zonda.launch` (in this process, a ``zonda train``
child process for DDP, or a TrainJob/PyTorchJob), chosen by ``launch``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from zonda import snapshot_store, stage_cache, tracking
from zonda.console import adopt_library_loggers, bars, stage_log
from zonda.data import dvc_source
from zonda.data.fingerprint import source_fingerprint, submitted_fingerprint
from zonda.launch import LAUNCHES, Launch
from zonda.outputs import write_output
from zonda.params import Params
from zonda.provenance import code_version, read_manifest, sha256_id
from zonda.snapshot import build_snapshot, open_snapshot
from zonda.statistics import STATISTICS_FILENAME, build_statistics

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
StageFunction = TypeVar("StageFunction", bound=Callable[..., dict[str, Any]])


def _logged(stage: str) -> Callable[[StageFunction], StageFunction]:
    """Runs the stage inside :func:`zonda.console.stage_log` (its log file beside ``out_dir``, one console
    line at start and end) with ``progress`` narrowed to :func:`zonda.console.bars` (bars on a terminal only)."""

    def wrap(func: StageFunction) -> StageFunction:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with stage_log(stage, bound.arguments["out_dir"]):
                bound.arguments["progress"] = bars(bound.arguments["progress"])
                return func(*bound.args, **bound.kwargs)

        return run  # type: ignore[return-value]

    return wrap


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
    import mlflow  # MLflow boundary

    adopt_library_loggers()
    with tracking.stage_run(params, mlflow_run_id, stage) as run:
        if lead_metrics is not None:
            from zonda.evaluation.lead_metrics import log_lead_metrics  # torch boundary (see graph_stage)

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
        tracking.check_reachable(params)
        adopt_library_loggers()  # MLflow's own handler, if it was imported just now


def _run_or_reuse(
    params: Params,
    stage: str,
    out_dir: PathLike,
    upstream: dict[str, PathLike],
    compute: Callable[[], dict[str, Any]],
    *,
    fingerprint: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """(manifest, where it was reused from or None): the earlier output with this input key, or ``compute()``'s.

    ``fingerprint``: the snapshot's source fingerprint, taken once for the key and the manifest.
    """
    key = stage_cache.input_key(params, stage, upstream, fingerprint=fingerprint)
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


@_logged("snapshot")
def snapshot_stage(
    params: Params,
    out_dir: PathLike,
    *,
    submitted_digest: str | None = None,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 1: builds (or finds) the snapshot of ``params.data`` at ``out_dir``.

    ``submitted_digest``: the source's fingerprint digest taken when the pipeline was submitted (the
    snapshot task's input, so KFP's cache key follows the source); the source must still have it
    (:class:`zonda.data.fingerprint.SourceChangedError` otherwise, before anything is read or written)
    and the manifest records it (``source.fingerprint.submitted_digest``).

    With ``runtime.dvc_remote`` set, the snapshot is then pushed to that DVC
    remote by content (:mod:`zonda.snapshot_store`); the manifest returned
    carries its DVC hashes (``dvc``) and a dvc source's lineage (``source.dvc``).
    """
    _check_tracking(params, track)
    params = snapshot_store.pin(dvc_source.pin(params))
    # before any read: what the key says is what was read
    if submitted_digest is None:
        fingerprint = source_fingerprint(params.data)
    else:
        fingerprint = submitted_fingerprint(params.data, submitted_digest)

    def compute() -> dict[str, Any]:
        return build_snapshot(params, out_dir, progress=progress, fingerprint=fingerprint).manifest

    manifest, reused = _run_or_reuse(params, "snapshot", out_dir, {}, compute, fingerprint=fingerprint)
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


@_logged("statistics")
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
    _check_tracking(params, track)
    manifest, reused = _run_or_reuse(
        params, "statistics", out_dir, {"snapshot": snapshot_dir},
        lambda: build_statistics(params, snapshot_dir, out_dir, progress=progress),
    )
    if track and reused:
        stage_cache.record_reuse(params, "statistics", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    elif track:
        _record(
            params, "statistics", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.statistics_hash": manifest["statistics_hash"]},
            artifacts=[Path(out_dir) / STATISTICS_FILENAME],
        )
    return manifest


@_logged("graph")
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
    # Torch boundary: the graph is PyTorch Geometric tensors, and the zonda-data image that runs
    # snapshot and statistics carries no torch; graph, train, evaluate and register run in zonda-train.
    from zonda.graph import build_graph, graph_summary, load_graph, save_graph

    _check_tracking(params, track)
    out_dir = Path(out_dir)

    def write(tmp: Path) -> dict[str, Any]:
        snapshot_manifest = read_manifest(snapshot_dir) or {}
        ds = open_snapshot(snapshot_dir)
        graph_manifest = save_graph(build_graph(params.graph, ds["latitude"].values, ds["longitude"].values), tmp)
        return {
            "kind": "zonda.graph",
            "graph_hash": sha256_id(graph_manifest["graph_hash"]),
            "snapshot_id": snapshot_manifest.get("snapshot_id"),
            "counts": graph_manifest["counts"],
            "code_version": code_version(),
        }

    manifest, reused = _run_or_reuse(
        params, "graph", out_dir, {"snapshot": snapshot_dir}, lambda: write_output(params, out_dir, write)
    )
    if track and reused:
        stage_cache.record_reuse(params, "graph", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    elif track:
        summary = graph_summary(load_graph(out_dir))
        _record(
            params, "graph", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.graph_hash": manifest["graph_hash"]},
            metrics={f"graph/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))},
            artifacts=[out_dir / "mesh.png", out_dir / "edge_lengths.png", out_dir / "graph.json"],
        )
    return manifest


@_logged("train")
def train_stage(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    launch: Launch = "in_process",
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 4: trains the forecaster (Lightning; DDP from ``training.devices/num_nodes/strategy``).

    ``launch`` says where (:data:`zonda.launch.LAUNCHES`): ``in_process`` (``zonda train``),
    ``child_process`` or ``cluster`` (the pipeline's train task picks with
    :func:`zonda.launch.pipeline_task_launch`). Lightning's MLflow logger writes
    into the pipeline's run itself (curves, lineage, checkpoint), so nothing more
    is recorded here unless the output is reused.
    """
    _check_tracking(params, track)
    manifest, reused = _run_or_reuse(
        params, "train", out_dir, {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir},
        lambda: LAUNCHES[launch](
            params, snapshot_dir, statistics_dir, graph_dir, out_dir, mlflow_run_id=mlflow_run_id, track=track,
            progress=progress,
        ),
    )
    if track and reused:
        stage_cache.record_reuse(params, "train", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    return manifest


@_logged("evaluate")
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
    # Torch boundary (see graph_stage).
    from zonda.evaluation.headline import headline_metric_name
    from zonda.evaluation.run import HEADLINE_FILE, RESULTS_FILE, SUMMARY_FILE, run_evaluation

    _check_tracking(params, track)
    out_dir = Path(out_dir)

    def write(tmp: Path) -> dict[str, Any]:
        return run_evaluation(params, snapshot_dir, statistics_dir, graph_dir, model_dir, tmp, progress=progress)

    upstream = {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir, "train": model_dir}
    manifest, reused = _run_or_reuse(params, "evaluate", out_dir, upstream, lambda: write_output(params, out_dir, write))
    if track and reused:
        stage_cache.record_reuse(params, "evaluate", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
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


@_logged("register")
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
    if not track:
        raise ValueError("the register stage writes to the MLflow Model Registry; it cannot run without MLflow (--no-mlflow)")
    from zonda.registry.register import register_model, registration_manifest  # torch boundary (see graph_stage)

    _check_tracking(params, track)
    out_dir = Path(out_dir)
    run_ids: list[str] = []

    def compute() -> dict[str, Any]:
        result = register_model(
            params, model_dir, statistics_dir, graph_dir, evaluation_dir, snapshot_dir=snapshot_dir, mlflow_run_id=mlflow_run_id
        )
        run_ids.append(result["mlflow_run_id"])
        return write_output(params, out_dir, lambda tmp: registration_manifest(result))

    upstream = {"snapshot": snapshot_dir, "statistics": statistics_dir, "graph": graph_dir, "train": model_dir,
                "evaluate": evaluation_dir}
    manifest, reused = _run_or_reuse(params, "register", out_dir, upstream, compute)
    if reused:  # the model version registered then is the one these inputs give: none is added
        stage_cache.record_reuse(params, "register", manifest, out_dir, reused, mlflow_run_id=mlflow_run_id)
    else:
        _record(params, "register", manifest, out_dir, mlflow_run_id=run_ids[0])  # register_model set the tags
    return manifest
