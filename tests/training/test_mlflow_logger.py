"""The training's MLflow logger keeps every metric value until the store has taken it.

A local sqlite store stands for the tracking server; its ``log_batch`` is made
to fail as an unreachable server's does (after MLflow's retries), or to fail
after the store took the batch (the answer lost). The killed-server cases, with
a real ``mlflow server`` and ``zonda train``, are tests/faults/test_mlflow_outage.py.
"""

from __future__ import annotations

import json

import pytest
from mlflow.exceptions import MlflowException

from tests.support import registry_builders as rf
from zonda.training.mlflow_logger import RetainingMLFlowLogger

LOSSES = [(step, 1.0 / (step + 1)) for step in range(5)]


def new_logger(tmp_path, run_id=None) -> RetainingMLFlowLogger:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if not (tmp_path / "mlflow.db").exists():
        rf.tracking_db(tmp_path / "mlflow.db")
    return RetainingMLFlowLogger(experiment_name="zonda-logger", tracking_uri=uri, run_id=run_id,
                                 artifact_location=(tmp_path / "artifacts").as_uri(), send_interval_s=3600)


def stored(logger) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in logger.experiment.get_metric_history(logger.run_id, "train/loss"))


def test_values_a_gone_server_did_not_take_are_kept_then_logged_once_by_the_resumed_run(tmp_path, monkeypatch):
    logger = new_logger(tmp_path)
    monkeypatch.setattr(logger.experiment, "log_batch", _refuse)
    for step, loss in LOSSES:
        logger.log_metrics({"train/loss": loss}, step=step)
    unsent = tmp_path / "unsent.json"

    assert logger.settle(unsent) == len(LOSSES)
    kept = json.loads(unsent.read_text())["metrics"]
    assert [(m["run_id"], m["key"], m["step"], m["value"]) for m in kept] == [
        (logger.run_id, "train/loss", step, loss) for step, loss in LOSSES
    ]
    monkeypatch.undo()
    assert stored(logger) == []

    resumed = new_logger(tmp_path, run_id=logger.run_id)
    assert resumed.restore(unsent) == len(LOSSES)
    assert resumed.settle(tmp_path / "unsent-of-the-resumed-run.json") == 0
    assert stored(resumed) == LOSSES
    assert not unsent.exists()


def test_a_batch_the_store_took_before_its_answer_was_lost_is_not_doubled(tmp_path, monkeypatch):
    logger = new_logger(tmp_path)
    real = logger.experiment.log_batch
    calls = []

    def answer_lost(*args, **kwargs):
        calls.append(1)
        real(*args, **kwargs)
        if len(calls) == 1:
            raise MlflowException("connection reset by peer")

    monkeypatch.setattr(logger.experiment, "log_batch", answer_lost)
    for step, loss in LOSSES[:3]:
        logger.log_metrics({"train/loss": loss}, step=step)
    assert logger.send_kept() is False and logger.kept() == 3  # kept: the client saw an error
    for step, loss in LOSSES[3:]:
        logger.log_metrics({"train/loss": loss}, step=step)

    assert logger.settle(tmp_path / "unsent.json") == 0
    assert len(calls) == 2 and stored(logger) == LOSSES  # the first three sent twice, stored once


def _refuse(*args, **kwargs):
    raise MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed: Connection refused")


@pytest.fixture(autouse=True)
def _restore_tracking_uri():
    with rf.preserved_tracking_uri():
        yield
