"""Components: open and close the pipeline run's MLflow run (each stage logs into a child run of its own).

Neither is cached: opening makes a new RUNNING run per pipeline run; closing,
the exit handler's task, finds it by the pipeline run's name and ends it
FINISHED or FAILED from the pipeline's final status. No stage takes the run's id as an input, so the stages' KFP cache keys
do not change from one pipeline run to the next.
"""

from kfp import dsl


def open_mlflow_run(params_json: str, pipeline_run_name: str) -> str:
    """The MLflow run of this pipeline run: the one ``ZONDA_MLFLOW_PARENT_RUN_ID`` names (the local runner
    creates it first), else a new one with the resolved params; returns its id."""
    import os

    from zonda.params import params_from_json
    from zonda.tracking import PARENT_RUN_ENV, start_pipeline_run

    existing = os.environ.get(PARENT_RUN_ENV)
    if existing:
        return existing
    params = params_from_json(params_json)
    return start_pipeline_run(params, run_name=pipeline_run_name or None, tags={"zonda.orchestrator": "kfp"})


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


__all__ = ["open_mlflow_run", "close_mlflow_run", "dsl"]
