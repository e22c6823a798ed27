"""The zonda pipeline: snapshot -> statistics -> ... wired as KFP v2 components.

Wiring and typing only: every component calls a `zonda.stages` function. The
pipeline takes one parameter, ``params_json`` (the fully resolved params), so
a run on a cluster and a local run see exactly the same settings; images come
from ``runtime.images``.
"""


from typing import Callable, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model

from components import make_component
from components.evaluate import evaluate
from components.graph import graph
from components.register import register
from components.snapshot import snapshot
from components.statistics import statistics
from components.tracking import open_mlflow_run
from components.train import train
from pipelines.resources import apply_params_resources
from zonda.params import Params


def build_pipeline(params: Params) -> Callable:
    """The KFP pipeline function for these params (images and names come from ``params.runtime``)."""
    data_image = params.runtime.images.data
    open_run_op = make_component(open_mlflow_run, data_image)
    snapshot_op = make_component(snapshot, data_image)
    statistics_op = make_component(statistics, data_image)
    graph_op = make_component(graph, data_image)
    train_op = make_component(train, params.runtime.images.train)
    evaluate_op = make_component(evaluate, data_image)
    register_op = make_component(register, data_image)

    @dsl.pipeline(name=params.runtime.pipeline_name, description="zonda: snapshot -> statistics, graph -> train -> evaluate -> register")
    def zonda_pipeline(params_json: str, run_name: str = "") -> NamedTuple(
        "Outputs", mlflow_run_id=str, snapshot=Dataset, statistics=Artifact, graph=Artifact, model=Model,
        evaluation=Artifact, registration=Artifact,
    ):
        run = open_run_op(params_json=params_json, pipeline_run_name=run_name).set_display_name("mlflow-run")
        apply_params_resources(run, params, "mlflow-run")
        snap = snapshot_op(params_json=params_json, mlflow_run_id=run.output).set_display_name("snapshot")
        stats = statistics_op(
            params_json=params_json, mlflow_run_id=run.output, snapshot=snap.outputs["snapshot"]
        ).set_display_name("statistics")
        mesh = graph_op(
            params_json=params_json, mlflow_run_id=run.output, snapshot=snap.outputs["snapshot"]
        ).set_display_name("graph")
        inputs = {
            "snapshot": snap.outputs["snapshot"], "statistics": stats.outputs["statistics"], "graph": mesh.outputs["graph"],
        }
        fit = train_op(params_json=params_json, mlflow_run_id=run.output, **inputs).set_display_name("train")
        scored = evaluate_op(
            params_json=params_json, mlflow_run_id=run.output, model=fit.outputs["model"], **inputs
        ).set_display_name("evaluate")
        registered = register_op(
            params_json=params_json, mlflow_run_id=run.output, model=fit.outputs["model"],
            evaluation=scored.outputs["evaluation"], **inputs,
        ).set_display_name("register")
        for task, stage in (
            (snap, "snapshot"), (stats, "statistics"), (mesh, "graph"), (fit, "train"), (scored, "evaluate"),
            (registered, "register"),
        ):
            apply_params_resources(task, params, stage)
        outputs = NamedTuple(
            "Outputs", mlflow_run_id=str, snapshot=Dataset, statistics=Artifact, graph=Artifact, model=Model,
            evaluation=Artifact, registration=Artifact,
        )
        return outputs(
            run.output, inputs["snapshot"], inputs["statistics"], inputs["graph"], fit.outputs["model"],
            scored.outputs["evaluation"], registered.outputs["registration"],
        )

    return zonda_pipeline
