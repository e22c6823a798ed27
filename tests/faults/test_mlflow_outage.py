"""Service faults: the MLflow tracking server killed (kill -9) while ``zonda train`` runs.

A real ``mlflow server`` (sqlite store, :mod:`tests.support.mlflow_server`) tracks
``zonda train`` of the deterministic CPU run the kill -9 trials use (6 steps,
2 epochs, a validation after each). MLflow's own retries are cut to well under a
second, so the outage (the server's restart alone takes seconds) outlasts them:
what is kept is kept by zonda, not by MLflow's retry budget. Each case compares
with the same training run untracked: the weights bit for bit, and the MLflow
run against that run's ``history.json``, every step's loss and every validation.
"""

from __future__ import annotations

import functools
import importlib
import json

import lightning as L
import pytest
from mlflow import MlflowClient

from tests.support import training_builders as support
from tests.support.mlflow_server import MlflowServer
from zonda.cli import EXIT_FAULT, main
from zonda.console import log_path
from zonda.params import load_params
from zonda.stage_cache import REUSE_ENV
from zonda.training.mlflow_logger import UNSENT_FILE

pytestmark = pytest.mark.faults
train_module = importlib.import_module("zonda.training.train")  # the module (the package exports the function too)
TRAIN = train_module.train

SETTINGS = (*support.MULTI_STEP, "training.limit_train_batches=3", "training.limit_val_batches=1",
            "training.checkpoint.every_n_train_steps=1", "training.checkpoint.top_k=1")
STEPS = 6  # 2 epochs of 3 batches
#: MLflow's client retries: two, at once (its defaults retry for about 4 minutes, backoff factor 2).
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Outage(L.Callback):
    """Kills the server (SIGKILL to its process group) at the end of step ``kill_at`` and starts it again at
    once on the same port and store; at the end of step ``back_by`` waits until it answers (None: never
    started again)."""

    def __init__(self, server: MlflowServer, kill_at: int, back_by: int | None) -> None:
        self.server, self.kill_at, self.back_by = server, kill_at, back_by

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.kill_at:
            self.server.kill()
            if self.back_by is not None:
                self.server.start()
        if trainer.global_step == self.back_by:
            self.server.wait_healthy()


@pytest.fixture(scope="module")
def reference():
    """The params file and the untracked, uninterrupted run of the same training."""
    params_file = support.new_dir("outage-params") / "params.yaml"
    params_file.write_text(support.params(*SETTINGS).to_yaml())
    a = support.artifacts()
    out = support.new_dir("outage-reference")
    TRAIN(load_params(params_file), a["snapshot"], a["statistics"], a["graph"], out, progress=False,
                       track=False)
    return params_file, out


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = MlflowServer(tmp_path / "mlflow")
    srv.start()
    srv.wait_healthy()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
    monkeypatch.setenv(REUSE_ENV, "0")  # every case trains (no earlier case's output reused)
    for name, value in SHORT_RETRIES.items():
        monkeypatch.setenv(name, value)
    yield srv
    srv.stop()


def zonda_train(params_file, out, *overrides, monkeypatch, callbacks=()) -> int:
    """``zonda train`` on the shared stage 1-3 artifacts, in this process, with ``callbacks`` added to its Trainer's."""
    monkeypatch.setattr(train_module, "train", functools.partial(TRAIN, callbacks=list(callbacks)))
    a = support.artifacts()
    return main(["train", "--params", str(params_file), *(f"--{k}={a[k]}" for k in ("snapshot", "statistics", "graph")),
                 "--out", str(out), *overrides])


def tracked_run(url: str, out) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """(status, {metric: [(step, value), ...]}) of the MLflow run the training's manifest names (read back over HTTP)."""
    run_id = json.loads((out / "manifest.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    keys = ("train/loss_step", "val/loss")
    return run.info.status, {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def assert_weights_equal(out, ref_out) -> None:
    """The trained weights bit for bit."""
    a, b = support.weights(out), support.weights(ref_out)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equal(b[k]), k


def assert_nothing_lost(metrics, ref_out, *, final_rescored: bool = False) -> None:
    """Every step's loss and every validation's loss of the reference run, once each, equal.

    ``final_rescored``: a run resumed from its final checkpoint scores the final weights again, which
    Lightning logs at the same step with the same value (a repeat, not a new validation).
    """
    ref = support.history(ref_out)
    assert len(ref["steps"]) == STEPS
    assert metrics["train/loss_step"] == [(s["global_step"], s["loss"]) for s in ref["steps"]]
    vals = sorted(set(metrics["val/loss"])) if final_rescored else metrics["val/loss"]
    # Lightning logs a validation at the step before the one it scored (history: weights after global_step steps)
    assert vals == [(v["global_step"] - 1, v["val/loss"]) for v in ref["validations"]]


def test_a_server_killed_and_back_mid_training_loses_nothing(reference, server, monkeypatch, capsys):
    params_file, ref_out = reference
    out = support.new_dir("outage-short")

    rc = zonda_train(params_file, out, monkeypatch=monkeypatch, callbacks=[Outage(server, kill_at=2, back_by=5)])

    assert rc == 0, capsys.readouterr().err[-3000:]
    stage_log = log_path(out).read_text()
    assert f"MLflow tracking server {server.url} does not answer" in stage_log  # the outage outlasted MLflow's retries
    assert f"MLflow tracking server {server.url} answers again" in stage_log
    assert_weights_equal(out, ref_out)
    status, metrics = tracked_run(server.url, out)
    assert status == "FINISHED"
    assert_nothing_lost(metrics, ref_out)
    assert not (out / "checkpoints" / UNSENT_FILE).exists()


def test_a_server_that_never_returns_fails_in_one_line_and_resume_logs_what_was_kept(reference, server, monkeypatch,
                                                                                        capsys):
    params_file, ref_out = reference
    out = support.new_dir("outage-never")

    rc = zonda_train(params_file, out, monkeypatch=monkeypatch, callbacks=[Outage(server, kill_at=2, back_by=None)])

    err = capsys.readouterr().err.strip().splitlines()
    assert rc == EXIT_FAULT
    assert err[-1].startswith(f"zonda train: error: MLflow tracking server {server.url} stopped answering during training")
    assert not any("Traceback" in line for line in err)
    last = out / "checkpoints" / "last.ckpt"
    assert f"training.resume_from={last}" in err[-1]
    assert not (out / "manifest.json").exists() and not (out / "weights.safetensors").exists()  # no model claimed
    unsent = json.loads((out / "checkpoints" / UNSENT_FILE).read_text())["metrics"]
    assert {m["key"] for m in unsent} >= {"train/loss_step", "val/loss"}
    kept, final = support.checkpoint_weights(last), support.checkpoint_weights(ref_out / "checkpoints" / "last.ckpt")
    assert kept.keys() == final.keys() and all(kept[k].equal(final[k]) for k in kept)  # last.ckpt: the final state

    server.start()  # the server back, on its old store: resume
    server.wait_healthy()
    rc = zonda_train(params_file, out, f"training.resume_from={last}", monkeypatch=monkeypatch)

    assert rc == 0, capsys.readouterr().err[-3000:]
    assert_weights_equal(out, ref_out)
    status, metrics = tracked_run(server.url, out)
    assert status == "FINISHED"
    assert_nothing_lost(metrics, ref_out, final_rescored=True)
    assert not (out / "checkpoints" / UNSENT_FILE).exists()
