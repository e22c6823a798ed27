"""What a pipeline run produced, read back from MLflow: its scorecard and its promotion decision.

Reads the evaluate stage's ``summary.md`` artifact and the register stage's
decision tags (:mod:`zonda.registry.promotion`), so it sits above both
evaluation and the registry; :mod:`zonda.tracking` below knows neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from zonda.evaluation.run import SUMMARY_FILE
from zonda.evaluation.summary import SUMMARY_TITLE
from zonda.params import Params
from zonda.registry.promotion import TAG_DECISION, TAG_MODEL_VERSION
from zonda.tracking import configure, tracking_uri

log = logging.getLogger(__name__)


def pipeline_report(params: Params, run_name: str) -> str | None:
    """Markdown scorecard and promotion decision of the pipeline run named ``run_name``, from MLflow
    (its evaluate and register child runs; on KFP the stage runs are not nested under the pipeline's
    run, so there the report finds neither).

    None when the run is not found (or MLflow is unreachable): the caller reports what it has.
    The report is best effort, so an unreachable server is given up on after
    :data:`REPORT_HTTP_SETTINGS` (seconds, not MLflow's default minutes of retries)
    unless the user set those variables.
    """
    import mlflow

    try:
        with _environment_defaults(REPORT_HTTP_SETTINGS):
            return _pipeline_report(params, run_name, mlflow)
    except Exception as exc:  # noqa: BLE001 - a report must never fail the submission
        log.warning("could not read the MLflow report of %s: %s", run_name, exc)
        return None


# MLflow client settings while reading the best-effort report (MLflow's defaults: 7 retries, 2 s backoff, 120 s).
REPORT_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


@contextlib.contextmanager
def _environment_defaults(defaults: dict[str, str]) -> Iterator[None]:
    """Sets the environment variables of ``defaults`` that are unset, for the duration of the block."""
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _pipeline_report(params: Params, run_name: str, mlflow: Any) -> str | None:
    """The report itself (see :func:`pipeline_report`); raises when MLflow cannot answer."""
    configure(params)
    exp = mlflow.get_experiment_by_name(params.runtime.mlflow_experiment)
    if exp is None:
        return None
    runs = mlflow.search_runs(
        [exp.experiment_id], filter_string=f"attributes.run_name = '{run_name}'", output_format="list", max_results=1
    )
    if not runs:
        return None
    run = runs[0]
    client = mlflow.MlflowClient()
    children = {
        r.data.tags.get("zonda.stage"): r
        for r in mlflow.search_runs(
            [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'", output_format="list"
        )
    }
    lines = [f"MLflow run `{run.info.run_id}` ({tracking_uri(params)})", ""]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_run = children.get("evaluate", run)  # the stage's child run; runs before those: the run itself
            path = client.download_artifacts(evaluate_run.info.run_id, f"evaluate/{SUMMARY_FILE}", tmp)
            lines += [Path(path).read_text().replace(f"# {SUMMARY_TITLE}", "### Scorecard"), ""]
    except Exception:  # noqa: BLE001 - no evaluation (failed earlier): report the rest
        lines.append("(no evaluation summary in the run)")
    tags = children.get("register", run).data.tags
    if TAG_DECISION in tags:
        lines += [
            "### Promotion",
            "",
            f"- model `{params.registry.model_name}` version "
            f"{tags.get(TAG_MODEL_VERSION)}: **{tags[TAG_DECISION]}**",
        ]
    return "\n".join(lines) + "\n"
