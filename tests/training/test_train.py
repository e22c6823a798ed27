"""The training stage end to end: outputs, MLflow records, fake dataloading, resume/fork runs."""

from __future__ import annotations

import json
import math
import shutil
import time

import lightning as L
import mlflow
import numpy as np
import pytest
import torch
import yaml

from tests.support import training_builders as support
from zonda import tracking
from zonda.files import file_sha256
from zonda.grid import grid_area_weights
from zonda.models.saved import load_forecaster
from zonda.provenance import read_manifest
from zonda.training.checkpoints import digest_path
from zonda.training.data import SnapshotDataModule


def client():
    tracking.configure(support.params())
    return mlflow.MlflowClient()


def test_outputs_are_complete_and_consistent():
    out, manifest = support.tracked_run()
    a = support.artifacts()
    for name in ("weights.safetensors", "model.json", "manifest.json", "history.json", "params.resolved.yaml"):
        assert (out / name).is_file(), name
    assert manifest == json.loads((out / "manifest.json").read_text())
    # model_id is the tensors' content hash (checked independently in tests/faults/test_mismatched_artifacts.py)
    assert manifest["model_id"] == json.loads((out / "model.json").read_text())["model_id"]
    assert manifest["snapshot_id"] == read_manifest(a["snapshot"])["snapshot_id"]
    assert manifest["statistics_hash"] == read_manifest(a["statistics"])["statistics_hash"]
    assert manifest["graph_hash"] == "sha256:" + json.loads((a["graph"] / "graph.json").read_text())["graph_hash"]
    card = json.loads((out / "model.json").read_text())
    assert card["weights"]["sha256"] == file_sha256(out / "weights.safetensors")
    assert card["layout"]["channels"][:2] == ["temperature/500", "temperature/850"] and card["input_steps"] == 2
    assert card["training"]["precision"] == "32-true"  # what evaluation and the registered model forecast in (auto)
    for ckpt in (out / "checkpoints").glob("*.ckpt"):
        assert digest_path(ckpt).read_text().split()[0] == file_sha256(ckpt)
    resolved = yaml.safe_load((out / "params.resolved.yaml").read_text())
    assert resolved["training"]["rollout"] == {
        "start": 2, "end": 2, "increase_every_epochs": 1, "hold_epochs": 0, "schedule": None,
    }
    assert manifest["global_step"] == 1 and manifest["throughput"]["batches"] == 1


def test_validation_rmse_matches_an_independent_computation_with_the_saved_model():
    out, manifest = support.tracked_run()
    a = support.artifacts()
    forecaster = load_forecaster(out, a["graph"], a["statistics"])
    dm = SnapshotDataModule(support.params(), a["snapshot"])
    val = dm.dataset("validation", 4)
    batch = [val[i] for i in range(2)]  # limit_val_batches=1, batch_size=2, unshuffled
    states = torch.stack([b["states"] for b in batch]).double()
    forcings = torch.stack([b["forcings"] for b in batch]).double()
    targets = torch.stack([b["targets"] for b in batch]).double().numpy()
    with torch.no_grad():
        preds = forecaster.double().rollout(states, forcings, dm.static.double(), 4).numpy()
    area = grid_area_weights(dm.latitudes, dm.longitudes.size)
    area = area / area.sum()
    for lead, step in (("6h", 1), ("24h", 4)):
        for c, (name, level) in enumerate(dm.layout.entries):
            mse = ((preds[:, step - 1, :, c] - targets[:, step - 1, :, c]) ** 2 * area).sum(-1).mean()
            key = f"val/rmse/{name}/{level}/{lead}" if level is not None else f"val/rmse/{name}/{lead}"
            assert manifest["metrics"][key] == pytest.approx(math.sqrt(mse), rel=1e-4), key


def test_mlflow_run_holds_params_metrics_lineage_and_artifacts():
    out, manifest = support.tracked_run()
    c = client()
    run = c.get_run(manifest["mlflow_run_id"])
    assert run.data.params["training.rollout.end"] == "2"
    assert run.data.params["model.hidden_dim"] == "8"
    assert run.data.tags["zonda.stage"] == "train"
    assert run.data.tags["zonda.snapshot_id"] == manifest["snapshot_id"]
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/loss_step")] == [0]
    assert c.get_metric_history(run.info.run_id, "train/lr")[0].value == pytest.approx(1e-3)
    for key in ("val/loss", "val/rmse/geopotential/500/6h", "val/rmse/geopotential/500/24h", "val/rmse/surface_pressure/24h"):
        assert run.data.metrics[key] == pytest.approx(manifest["metrics"][key]), key
    (dataset_input,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    for key in ("snapshot_id", "statistics_hash", "graph_hash"):
        assert tags[f"zonda.{key}"] == manifest[key]
    artifacts = {f.path for f in c.list_artifacts(run.info.run_id, "train")}
    assert {"train/weights.safetensors", "train/model.json", "train/manifest.json", "train/params.resolved.yaml"} <= artifacts
    # A run shorter than the 10 s sampling interval still gets the last sample, logged when training ends.
    assert len(c.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")) >= 1


class SlowSteps(L.Callback):
    """Makes each training step last ``seconds`` (so a run spans several sampling intervals whatever the load) and
    records the MLflow run's status after each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.statuses: list[str] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.statuses.append(trainer.logger.experiment.get_run(trainer.logger.run_id).info.status)
        time.sleep(self.seconds)


def test_training_run_records_system_metrics_every_interval():
    manifest = support.run_training(support.new_dir("sysmetrics"), *support.MULTI_STEP, "training.max_epochs=1",
                                    "training.max_steps=4", "training.system_metrics_interval_s=0.1", track=True,
                                    callbacks=[slow := SlowSteps(0.5)])  # 2 s of training: many 0.1 s intervals
    assert slow.statuses == ["RUNNING"] * 4  # the monitor stops once the run is not RUNNING
    c = client()
    run_id = manifest["mlflow_run_id"]
    names = {k for k in c.get_run(run_id).data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= names, names
    cpu = c.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and sorted(m.step for m in cpu) == list(range(len(cpu)))  # a row per interval: steps 0, 1, ...
    assert all(0.0 <= m.value <= 100.0 for m in cpu)
    off = support.run_training(support.new_dir("nosysmetrics"), "training.system_metrics_interval_s=null", track=True)
    assert not [k for k in c.get_run(off["mlflow_run_id"]).data.metrics if k.startswith("system/")]


def test_the_loss_of_each_rollout_step_is_logged_by_lead_and_averages_to_the_loss():
    """rollout_loss is the mean of its steps' losses, so the logged steps must average to train/loss at every step."""
    out, manifest = support.tracked_run()
    c = client()
    run_id = manifest["mlflow_run_id"]
    total = {m.step: m.value for m in c.get_metric_history(run_id, "train/loss_step")}
    per_lead = [{m.step: m.value for m in c.get_metric_history(run_id, f"train/loss/{h}h")} for h in (6, 12)]  # R = 2
    assert total and all(set(lead) == set(total) for lead in per_lead)
    for step, value in total.items():
        assert (per_lead[0][step] + per_lead[1][step]) / 2 == pytest.approx(value, rel=1e-5), step
        assert per_lead[0][step] != pytest.approx(per_lead[1][step], rel=1e-3)  # two losses, not one copied
    assert c.get_metric_history(run_id, "train/loss/18h") == []  # no third step in a 2-step rollout


def test_resume_continues_the_mlflow_run_and_fork_starts_a_new_one():
    out, manifest = support.tracked_run()
    last = out / "checkpoints" / "last.ckpt"
    resumed = support.run_training(support.new_dir("resume-tracked"), "training.max_epochs=2", "training.max_steps=2",
                                   f"training.resume_from={last}", track=True)
    forked = support.run_training(support.new_dir("fork-tracked"), "training.max_epochs=2", "training.max_steps=2",
                                  f"training.fork_from={last}", track=True)
    assert resumed["global_step"] == forked["global_step"] == 2  # both continue from step 1
    assert resumed["mlflow_run_id"] == manifest["mlflow_run_id"]
    assert forked["mlflow_run_id"] != manifest["mlflow_run_id"]
    tags = client().get_run(forked["mlflow_run_id"]).data.tags
    assert tags["zonda.forked_from"] == str(last) and tags["zonda.parent_run_id"] == manifest["mlflow_run_id"]
    # The resumed run's system metrics continue the earlier steps instead of overwriting them.
    cpu = client().get_metric_history(manifest["mlflow_run_id"], "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and sorted(m.step for m in cpu) == list(range(len(cpu)))


class RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch)


def test_fake_dataloading_trains_on_the_first_batch_forever():
    rec = RecordBatches()
    out = support.new_dir("fake")
    manifest = support.run_training(out, *support.MULTI_STEP, "training.max_epochs=1", "training.max_steps=4",
                                    "training.fake_dataloading=true", callbacks=[rec])
    assert len(rec.batches) == 4
    first_ptrs = {k: v.data_ptr() for k, v in rec.batches[0].items()}
    assert all({k: v.data_ptr() for k, v in b.items()} == first_ptrs for b in rec.batches)  # the same memory
    # It is the real first batch of the epoch-0 order.
    dm = SnapshotDataModule(support.params(*support.MULTI_STEP), support.artifacts()["snapshot"])
    first = next(iter(dm.train_dataloader()))
    torch.testing.assert_close(rec.batches[0]["targets"], first["targets"], rtol=0, atol=0)
    steps = support.history(out)["steps"]
    assert len(steps) == 4 and all(np.isfinite([s["loss"] for s in steps])) and manifest["global_step"] == 4
    # The cosine schedule got the run's 4 steps as total_steps (warmup 0, lr 1e-3, min 1e-5).
    expected = [1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert [s["lr"] for s in steps] == pytest.approx(expected, rel=1e-6)


def test_the_saved_model_refuses_a_graph_it_was_not_trained_on(tmp_path):
    out, _ = support.tracked_run()
    a = support.artifacts()
    other = tmp_path / "graph"
    shutil.copytree(a["graph"], other)
    manifest = json.loads((other / "graph.json").read_text())
    manifest["graph_hash"] = "0" * 64
    (other / "graph.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"{other / 'graph.json'}: graph_hash .* is not the model's"):
        load_forecaster(out, other, a["statistics"])
