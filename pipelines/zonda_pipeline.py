"""The zonda pipeline: snapshot -> statistics, graph -> train -> evaluate -> register, as KFP v2 tasks.

Wiring only: every component (:mod:`pipelines.components`) calls a `zonda.stages`
function. The pipeline takes one parameter, ``params_json`` (the fully resolved
params), so a run on a cluster and a local run see exactly the same settings;
images come from ``runtime.images``, each task's Kubernetes settings from
``runtime.resources`` (:mod:`pipelines.resources`, applied where the task is made).

Each stage task is given only what it reads: its params sections
(:meth:`Params.for_stage`, fixed when the pipeline is built) and its upstream
artifacts, so KFP's cache skips a task whose inputs did not change. The MLflow
run is opened by an uncached task and closed by the exit handler's task (found
by the pipeline run's name), so a failed stage still closes it, as FAILED.
KFP allows no pipeline outputs from inside an exit handler: the tasks' outputs
are in the KFP UI, and a local run finds them with :func:`zonda.stage_cache.locate`.
"""

import json
from pathlib import Path
from typing import Callable

from kfp import compiler, dsl
from kfp.dsl import PipelineTask

from pipelines import components
from pipelines.components import make_component
from pipelines.resources import apply_params_resources
from zonda.params import STAGE_SECTIONS, Params


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
    graph_op = make_component(components.graph, data_image)
    train_op = make_component(components.train, train_image)
    evaluate_op = make_component(components.evaluate, data_image)
    register_op = make_component(components.register, data_image)
    close_run_op = make_component(components.close_mlflow_run, data_image)
    section = {stage: json.dumps(params.for_stage(stage), sort_keys=True) for stage in STAGE_SECTIONS}

    def made(task: PipelineTask, resources: str, display_name: str | None = None) -> PipelineTask:
        """``task`` named in the UI and given ``runtime.resources`` of ``resources`` (a stage or ``mlflow-run``)."""
        task.set_display_name(display_name or resources)
        return apply_params_resources(task, params, resources)

    @dsl.pipeline(name=params.runtime.pipeline_name, description="zonda: snapshot -> statistics, graph -> train -> evaluate -> register")
    def zonda_pipeline(params_json: str, run_name: str = ""):
        close = made(close_run_op(params_json=section["register"], pipeline_run_name=run_name), "mlflow-run", "mlflow-close")
        with dsl.ExitHandler(close, name="stages"):
            run = made(open_run_op(params_json=params_json, pipeline_run_name=run_name), "mlflow-run")
            snapshot = made(snapshot_op(params_json=section["snapshot"]), "snapshot").after(run)
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


def compile_pipeline(params: Params, out: Path) -> Path:
    """Compiles the pipeline for ``params`` to ``out`` (IR YAML); returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params), package_path=str(out))
    return out
