"""The zonda pipeline: snapshot -> statistics -> ... wired as KFP v2 components.

Wiring and typing only: every component calls a `zonda.stages` function. The
pipeline takes one parameter, ``params_json`` (the fully resolved params), so
a run on a cluster and a local run see exactly the same settings; images come
from ``runtime.images``.

Each stage task is given only what it reads: its params sections
(:meth:`Params.for_stage`, fixed when the pipeline is built) and its upstream
artifacts, so KFP's cache skips a task whose inputs did not change. The MLflow
run is opened by an uncached task and closed by the exit handler's task (found
by the pipeline run's name), so a failed stage still closes it, as FAILED.
KFP allows no pipeline outputs from inside an exit handler: the tasks' outputs
are in the KFP UI, and a local run finds them with :func:`zonda.stage_cache.locate`.
"""


import json
from typing import Callable

from kfp import dsl

from components import make_component
from components.evaluate import evaluate
from components.graph import graph
from components.register import register
from components.snapshot import snapshot
from components.statistics import statistics
from components.tracking import close_mlflow_run, open_mlflow_run
from components.train import train
from pipelines.resources import apply_params_resources
from zonda.params import STAGE_SECTIONS, Params


def build_pipeline(params: Params) -> Callable:
    """The KFP pipeline function for these params (images and names come from ``params.runtime``)."""
    data_image = params.runtime.images.data
    open_run_op = make_component(open_mlflow_run, data_image)
    close_run_op = make_component(close_mlflow_run, data_image)
    stage_params = {stage: json.dumps(params.for_stage(stage), sort_keys=True) for stage in STAGE_SECTIONS}
    snapshot_op = make_component(snapshot, data_image)
    statistics_op = make_component(statistics, data_image)
    graph_op = make_component(graph, data_image)
    train_op = make_component(train, params.runtime.images.train)
    evaluate_op = make_component(evaluate, data_image)
    register_op = make_component(register, data_image)

    @dsl.pipeline(name=params.runtime.pipeline_name, description="zonda: snapshot -> statistics, graph -> train -> evaluate -> register")
    def zonda_pipeline(params_json: str, run_name: str = ""):
        close = close_run_op(params_json=stage_params["register"], pipeline_run_name=run_name).set_display_name("mlflow-close")
        apply_params_resources(close, params, "mlflow-run")
        with dsl.ExitHandler(close, name="stages"):
            run = open_run_op(params_json=params_json, pipeline_run_name=run_name).set_display_name("mlflow-run")
            apply_params_resources(run, params, "mlflow-run")
            snap = snapshot_op(params_json=stage_params["snapshot"]).set_display_name("snapshot").after(run)
            stats = statistics_op(
                params_json=stage_params["statistics"], snapshot=snap.outputs["snapshot"]
            ).set_display_name("statistics")
            mesh = graph_op(params_json=stage_params["graph"], snapshot=snap.outputs["snapshot"]).set_display_name("graph")
            inputs = {
                "snapshot": snap.outputs["snapshot"], "statistics": stats.outputs["statistics"],
                "graph": mesh.outputs["graph"],
            }
            fit = train_op(params_json=stage_params["train"], **inputs).set_display_name("train")
            scored = evaluate_op(
                params_json=stage_params["evaluate"], model=fit.outputs["model"], **inputs
            ).set_display_name("evaluate")
            registered = register_op(
                params_json=stage_params["register"], model=fit.outputs["model"],
                evaluation=scored.outputs["evaluation"], **inputs,
            ).set_display_name("register")
            for task, stage in (
                (snap, "snapshot"), (stats, "statistics"), (mesh, "graph"), (fit, "train"), (scored, "evaluate"),
                (registered, "register"),
            ):
                apply_params_resources(task, params, stage)

    return zonda_pipeline
