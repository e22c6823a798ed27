"""The zonda pipeline: snapshot -> statistics, graph -> train -> evaluate -> register, as KFP v2 tasks.

Wiring only: every component (:mod:`pipelines.components`) calls a `zonda.stages`
function. The pipeline takes one parameter, ``params_json`` (the fully resolved
params), so a run on a cluster and a local run see exactly the same settings;
images come from ``runtime.images``, each task's Kubernetes settings from
``runtime.resources`` (:mod:`pipelines.resources`, applied where the task is made).

Each stage task is given only what it reads: its params sections
(:meth:`Params.for_stage`, fixed when the pipeline is built) and its upstream
artifacts, so KFP's cache skips a task whose inputs did not change. The
snapshot task also takes the pipeline parameter ``source_fingerprint``, the
source's fingerprint digest taken when the run starts (:func:`run_arguments`),
so a changed source (ERA5T grows daily) changes its cache key and an unchanged
one keeps it. The MLflow
run is opened by an uncached task and closed by the exit handler's task (found
by the pipeline run's name), so a failed stage still closes it, as FAILED.
Every task has the KFP run id in its environment (from its pod's label, not an
input), by which the stages find that run and nest theirs under it.
KFP allows no pipeline outputs from inside an exit handler: the tasks' outputs
are in the KFP UI, and a local run finds them with :func:`zonda.stage_cache.locate`.
"""

import json
from pathlib import Path
from typing import Any, Callable

from kfp import compiler, dsl, kubernetes
from kfp.dsl import PipelineTask

from pipelines import components
from pipelines.components import make_component
from pipelines.resources import apply_params_resources
from zonda.data.fingerprint import source_fingerprint
from zonda.params import STAGE_SECTIONS, Params
from zonda.tracking import KFP_RUN_ID_ENV


# The pod label KFP's API server puts on every pod of a run (backend/src/apiserver/template/argo_template.go:
# SetPodMetadataLabels("pipeline/runid", RunID)). A task's environment is not part of KFP's cache key (the
# driver's getFingerPrint hashes the inputs, outputs, image, command, args and PVC names: backend/src/v2/driver/
# cache.go), so every task learns the run id without a cache key that changes from one run to the next.
KFP_RUN_ID_FIELD = "metadata.labels['pipeline/runid']"


def build_pipeline(params: Params) -> Callable:
    """The KFP pipeline function for these params (images and names come from ``params.runtime``).

    A credential in clear is never built in: each stage's params (fixed in the pipeline) carry it as a
    ``${env:ZONDA_SECRET_...}`` reference (:meth:`Params.with_secret_references`) that the stage resolves from
    its environment; :func:`pipelines.run.run_local` sets those variables, a cluster run refuses such params.
    """
    params, _ = params.with_secret_references()
    data_image, train_image = params.runtime.images.data, params.runtime.images.train
    open_run_op = make_component(components.open_mlflow_run, data_image)
    snapshot_op = make_component(components.snapshot, data_image)
    statistics_op = make_component(components.statistics, data_image)
    graph_op = make_component(components.graph, train_image)
    train_op = make_component(components.train, train_image)
    evaluate_op = make_component(components.evaluate, train_image)
    register_op = make_component(components.register, train_image)
    close_run_op = make_component(components.close_mlflow_run, data_image)
    section = {stage: json.dumps(params.for_stage(stage), sort_keys=True) for stage in STAGE_SECTIONS}

    def made(task: PipelineTask, resources: str, display_name: str | None = None) -> PipelineTask:
        """``task`` named in the UI, given ``runtime.resources`` of ``resources`` (a stage or ``mlflow-run``)
        and the KFP run id in its environment (:data:`KFP_RUN_ID_FIELD`)."""
        task.set_display_name(display_name or resources)
        kubernetes.use_field_path_as_env(task, env_name=KFP_RUN_ID_ENV, field_path=KFP_RUN_ID_FIELD)
        return apply_params_resources(task, params, resources)

    @dsl.pipeline(name=params.runtime.pipeline_name, description="zonda: snapshot -> statistics, graph -> train -> evaluate -> register")
    def zonda_pipeline(params_json: str, source_fingerprint: str, run_name: str = ""):
        close = made(close_run_op(params_json=section["register"], pipeline_run_name=run_name), "mlflow-run", "mlflow-close")
        with dsl.ExitHandler(close, name="stages"):
            run = made(open_run_op(params_json=params_json, pipeline_run_name=run_name), "mlflow-run")
            snapshot = made(snapshot_op(params_json=section["snapshot"], source_fingerprint=source_fingerprint), "snapshot").after(run)
            statistics = made(
                statistics_op(params_json=section["statistics"], snapshot=snapshot.outputs["snapshot"]), "statistics"
            )
            graph = made(graph_op(params_json=section["graph"], snapshot=snapshot.outputs["snapshot"]), "graph")
            train = made(
                train_op(
                    params_json=section["train"], snapshot=snapshot.outputs["snapshot"],
                    statistics=statistics.outputs["statistics"], graph=graph.outputs["graph"],
                ),
                "train",
            )
            evaluate = made(
                evaluate_op(
                    params_json=section["evaluate"], snapshot=snapshot.outputs["snapshot"],
                    statistics=statistics.outputs["statistics"], graph=graph.outputs["graph"], model=train.outputs["model"],
                ),
                "evaluate",
            )
            made(
                register_op(
                    params_json=section["register"], snapshot=snapshot.outputs["snapshot"],
                    statistics=statistics.outputs["statistics"], graph=graph.outputs["graph"], model=train.outputs["model"],
                    evaluation=evaluate.outputs["evaluation"],
                ),
                "register",
            )

    return zonda_pipeline


def run_arguments(params: Params, run_name: str, *, fingerprint: dict[str, Any] | None = None) -> dict[str, str]:
    """The pipeline's arguments for one run of ``params`` (what the local runner and a KFP host are given).

    ``source_fingerprint`` is the digest of ``fingerprint`` (the source's, taken here when not given:
    :func:`zonda.data.fingerprint.source_fingerprint`), taken before the pipeline starts; the snapshot
    task checks that the source still has it.
    """
    fingerprint = fingerprint or source_fingerprint(params.data)
    return {"params_json": json.dumps(params.resolved_dict()), "source_fingerprint": fingerprint["digest"], "run_name": run_name}


def compile_pipeline(params: Params, out: Path) -> Path:
    """Compiles the pipeline for ``params`` to ``out`` (IR YAML); returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params), package_path=str(out))
    return out
