"""The pipeline's KFP v2 components, in DAG order: typed wiring around :mod:`zonda.stages`, no science.

    open_mlflow_run -> snapshot -> statistics, graph -> train -> evaluate -> register; close_mlflow_run (exit handler)

Each is a plain Python function whose body imports zonda and calls the stage's
function; :func:`make_component` turns it into a lightweight KFP component
running in the image the params name. The bodies must stay self-contained: KFP
ships each function's source into the container, so their imports are inside them.

The MLflow run components are not cached: opening makes a new RUNNING run per
pipeline run, tagged with the KFP run id; closing, the exit handler's task, finds
it by the pipeline run's name and ends it FINISHED or FAILED from the pipeline's
final status. No stage takes the run's id as an input, so the stages' KFP cache
keys do not change from one pipeline run to the next: each stage finds the run by
the KFP run id in its environment (:func:`zonda.tracking.parent_run_id`).
"""

from typing import Callable

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def make_component(func: Callable, image: str) -> Callable:
    """A KFP lightweight component of ``func`` that runs in ``image`` (which already has zonda and kfp)."""
    return dsl.component(func, base_image=image, install_kfp_package=False)


def open_mlflow_run(params_json: str, pipeline_run_name: str) -> str:
    """The MLflow run of this pipeline run: the one ``ZONDA_MLFLOW_PARENT_RUN_ID`` names (the local runner
    creates it first), else a new one with the resolved params; returns its id."""
    import os

    from zonda.params import params_from_json
    from zonda.tracking import PARENT_RUN_ENV, kfp_run_tags, start_pipeline_run

    existing = os.environ.get(PARENT_RUN_ENV)
    if existing:
        return existing
    params = params_from_json(params_json)
    # tagged with the KFP run id (from the pod's label), by which each stage finds it and nests its run
    tags = {"zonda.orchestrator": "kfp", **kfp_run_tags()}
    return start_pipeline_run(params, run_name=pipeline_run_name or None, tags=tags)


def snapshot(params_json: str, source_fingerprint: str, snapshot: Output[Dataset], metrics: Output[Metrics]) -> str:
    """Stage 1: builds the validated, content-hashed zarr v3 snapshot; returns its snapshot ID.

    ``source_fingerprint`` is the source's fingerprint digest taken when the run was submitted (so this
    task's cache key changes when the source does); the stage fails, naming the source, if it changed since.
    """
    from zonda.params import params_from_json
    from zonda.stages import snapshot_stage

    manifest = snapshot_stage(params_from_json(params_json), snapshot.path, submitted_digest=source_fingerprint)
    snapshot.metadata.update(
        {"snapshot_id": manifest["snapshot_id"], "time_range": manifest["time_range"], "grid": manifest["grid"]}
    )
    lineage = {"dvc": manifest.get("dvc"), "source_dvc": manifest["source"].get("dvc")}
    snapshot.metadata.update({k: v for k, v in lineage.items() if v})  # where it was pushed, what it read
    metrics.log_metric("time_steps", manifest["time_range"]["steps"])
    return manifest["snapshot_id"]


def statistics(params_json: str, snapshot: Input[Dataset], statistics: Output[Artifact]) -> str:
    """Stage 2: streams over the snapshot once for the normalisation statistics; returns their hash."""
    from zonda.params import params_from_json
    from zonda.stages import statistics_stage

    manifest = statistics_stage(params_from_json(params_json), snapshot.path, statistics.path)
    statistics.metadata.update(
        {"statistics_hash": manifest["statistics_hash"], "snapshot_id": manifest["snapshot_id"], "period": manifest["period"]}
    )
    return manifest["statistics_hash"]


def graph(params_json: str, snapshot: Input[Dataset], graph: Output[Artifact]) -> str:
    """Stage 3: builds the multi-mesh and grid<->mesh edges for the snapshot's grid; returns the graph hash."""
    from zonda.params import params_from_json
    from zonda.stages import graph_stage

    manifest = graph_stage(params_from_json(params_json), snapshot.path, graph.path)
    graph.metadata.update({"graph_hash": manifest["graph_hash"], "counts": manifest["counts"]})
    return manifest["graph_hash"]


def train(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Output[Model],
) -> str:
    """Stage 4: trains the forecaster (on the GPU node pool); returns the model ID (sha256 of the weights).

    Where it trains is :func:`zonda.launch.pipeline_task_launch`: with ``training.num_nodes > 1``
    a Kubeflow Trainer TrainJob (or a PyTorchJob) running ``zonda train`` on every node, waited on
    (its logs on failure); with several devices a ``zonda train`` child process in this pod (so
    Lightning's DDP can start one per GPU); otherwise in this task's process.
    """
    from zonda.launch import pipeline_task_launch
    from zonda.params import params_from_json
    from zonda.stages import train_stage

    params = params_from_json(params_json)
    manifest = train_stage(
        params, snapshot.path, statistics.path, graph.path, model.path, launch=pipeline_task_launch(params)
    )
    model.metadata.update({k: manifest.get(k) for k in ("model_id", "snapshot_id", "statistics_hash", "graph_hash")})
    return str(manifest["model_id"])


def evaluate(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Input[Model],
    evaluation: Output[Artifact],
    scores: Output[Metrics],
    summary: Output[Markdown],
) -> str:
    """Stage 5: scores 10-day forecasts against persistence and climatology; headline scores become KFP
    Metrics, the summary a Markdown artifact; returns whether the model beats persistence everywhere."""
    from zonda.evaluation.run import read_summary
    from zonda.params import params_from_json
    from zonda.stages import evaluate_stage

    manifest = evaluate_stage(
        params_from_json(params_json), snapshot.path, statistics.path, graph.path, model.path, evaluation.path,
    )
    for name, value in manifest["headline"].items():
        scores.log_metric(name, float(value))
    with open(summary.path, "w") as f:
        f.write(read_summary(evaluation.path))
    evaluation.metadata.update({"beats_persistence": manifest["beats_persistence"]})
    return str(all(manifest["beats_persistence"].values()))


def register(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
) -> str:
    """Stage 6: registers the trained model in the MLflow Model Registry and runs the promotion gate;
    returns the decision. A rejected challenger is reported (metadata, manifest, version tags), not raised."""
    from zonda.params import params_from_json
    from zonda.stages import register_stage

    manifest = register_stage(
        params_from_json(params_json), model.path, statistics.path, graph.path, evaluation.path, registration.path,
        snapshot_dir=snapshot.path,
    )
    registration.metadata.update({k: manifest[k] for k in ("name", "version", "decision", "reason", "champion", "model_uri")})
    return manifest["decision"]


def close_mlflow_run(params_json: str, pipeline_run_name: str, status: dsl.PipelineTaskFinalStatus) -> str:
    """Ends the pipeline's MLflow run (the RUNNING run named ``pipeline_run_name``): FINISHED when every
    task succeeded, FAILED otherwise; returns what it did."""
    from zonda.params import params_from_json
    from zonda.tracking import end_pipeline_run, find_pipeline_run

    params = params_from_json(params_json)
    run_id = find_pipeline_run(params, pipeline_run_name) if pipeline_run_name else None
    if run_id is None:
        return f"no running MLflow run named {pipeline_run_name!r}"
    failed = status.state != "SUCCEEDED"
    end_pipeline_run(params, run_id, failed=failed)
    return f"{run_id}: {'FAILED' if failed else 'FINISHED'}"
