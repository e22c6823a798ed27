"""Component: open the pipeline run's MLflow run (every later stage logs into it)."""

from kfp import dsl


def open_mlflow_run(params_json: str, pipeline_run_name: str) -> str:
    """Creates the MLflow run for this pipeline run, logs the resolved params; returns the run id."""
    from zonda.params import params_from_json
    from zonda.tracking import start_pipeline_run

    params = params_from_json(params_json)
    return start_pipeline_run(params, run_name=pipeline_run_name or None, tags={"zonda.orchestrator": "kfp"})


__all__ = ["open_mlflow_run", "dsl"]
