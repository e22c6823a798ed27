"""A stage's MLflow run nests under the pipeline's run, found on KFP by the KFP run id in the task's environment."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from tests.support.registry_builders import preserved_tracking_uri
from tests.support.repo import REPO
from zonda import tracking
from zonda.params import load_params

KFP_RUN = "5d2c6b1e-0f4a-4a53-9d8e-7f9a1c2b3d4e"


@pytest.fixture
def params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for variable in ("MLFLOW_TRACKING_URI", tracking.PARENT_RUN_ENV, tracking.KFP_RUN_ID_ENV):
        monkeypatch.delenv(variable, raising=False)
    with preserved_tracking_uri():
        yield load_params(
            REPO / "params" / "ci.yaml",
            [f"runtime.output_root={tmp_path}", f"runtime.mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
        )


def _pipeline_run(params, monkeypatch: pytest.MonkeyPatch, kfp_run: str, name: str) -> str:
    """The pipeline's run as the KFP open_mlflow_run task creates it: in a pod whose label gives ``kfp_run``."""
    monkeypatch.setenv(tracking.KFP_RUN_ID_ENV, kfp_run)
    run_id = tracking.start_pipeline_run(params, run_name=name, tags={"zonda.orchestrator": "kfp", **tracking.kfp_run_tags()})
    monkeypatch.delenv(tracking.KFP_RUN_ID_ENV)
    return run_id


def _stage_parent(params, stage: str) -> str | None:
    with tracking.stage_run(params, None, stage) as run:
        run_id = run.info.run_id
    return mlflow.MlflowClient().get_run(run_id).data.tags.get("mlflow.parentRunId")


def test_a_kfp_stage_nests_its_run_under_the_pipeline_run_of_its_kfp_run(params, monkeypatch) -> None:
    parent = _pipeline_run(params, monkeypatch, KFP_RUN, "ci-20261206-100000")
    other = _pipeline_run(params, monkeypatch, "0" * 8 + KFP_RUN[8:], "ci-20261206-100001")  # another run, started later
    assert mlflow.MlflowClient().get_run(parent).data.tags[tracking.KFP_RUN_TAG] == KFP_RUN

    monkeypatch.setenv(tracking.KFP_RUN_ID_ENV, KFP_RUN)  # what the stage's pod label gives
    assert tracking.parent_run_id(params) == parent
    assert _stage_parent(params, "graph") == parent
    # the stage run just made carries no KFP run tag of its own, so the next stage still finds the pipeline's run
    assert _stage_parent(params, "train") == parent != other


def test_the_local_runners_parent_wins_and_without_either_a_stage_run_stands_alone(params, monkeypatch) -> None:
    parent = _pipeline_run(params, monkeypatch, KFP_RUN, "ci-local")
    assert tracking.parent_run_id(params) is None
    assert _stage_parent(params, "graph") is None

    monkeypatch.setenv(tracking.KFP_RUN_ID_ENV, "no-such-kfp-run")  # a pipeline run that was never opened
    assert _stage_parent(params, "graph") is None

    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent)  # the local runner names its run directly
    assert _stage_parent(params, "statistics") == parent
