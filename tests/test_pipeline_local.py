"""The KFP pipeline run end to end with the KFP local runner on params/ci.yaml."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlflow
import pytest
from dvc_fixtures import ZARR_PATH, make_data_repo

from pipelines.run import pin_run_inputs, resolved_for_run, run_local
from zonda.evaluation.per_init import read_per_init
from zonda.params import load_params
from zonda.snapshot_store import fetch_snapshot
from zonda.tracking import pipeline_report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ci_params(shared_output_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("KFP_HOST", raising=False)
    params = load_params(
        REPO / "params" / "ci.yaml",
        [f"runtime.output_root={shared_output_root}", f"runtime.mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
    )
    return resolved_for_run(params, local=True)


def test_local_pipeline_runs_every_stage_and_logs_to_mlflow(ci_params) -> None:
    result = run_local(ci_params)
    outputs = result["outputs"]

    snapshot = Path(outputs["snapshot"])
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "heldsuarez"
    assert manifest["time_range"]["steps"] == 14 * 4
    assert (snapshot / "data.zarr" / "zarr.json").is_file()
    assert (snapshot / "params.resolved.yaml").is_file()

    stats = Path(outputs["statistics"])
    stats_manifest = json.loads((stats / "manifest.json").read_text())
    assert stats_manifest["snapshot_id"] == manifest["snapshot_id"]
    assert (stats / "statistics.nc").is_file()

    mlflow.set_tracking_uri(ci_params.runtime.mlflow_tracking_uri)
    run = mlflow.get_run(outputs["mlflow_run_id"])
    assert run.data.params["data.levels"] == "[500, 850]"
    assert run.data.params["training.optimizer._target_"] == "torch.optim.AdamW"
    assert run.data.tags["zonda.snapshot_id"] == manifest["snapshot_id"]
    assert run.data.tags["zonda.statistics_hash"] == stats_manifest["statistics_hash"]
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "statistics")}
    assert {"statistics/manifest.json", "statistics/statistics.nc", "statistics/params.resolved.yaml"} <= artifacts

    graph = json.loads((Path(outputs["graph"]) / "manifest.json").read_text())
    assert graph["snapshot_id"] == manifest["snapshot_id"] and graph["counts"]["nodes"]["mesh"] == 162  # r=2
    model = json.loads((Path(outputs["model"]) / "manifest.json").read_text())
    assert model["snapshot_id"] == manifest["snapshot_id"] and model["graph_hash"] == graph["graph_hash"]
    assert (Path(outputs["model"]) / "weights.safetensors").is_file()
    assert len(client.get_metric_history(run.info.run_id, "train/loss_step")) == model["global_step"]  # per step
    assert client.get_metric_history(run.info.run_id, "val/rmse/geopotential/500/24h")

    evaluation = json.loads((Path(outputs["evaluation"]) / "manifest.json").read_text())
    assert evaluation["init_times"]["count"] == 3 and evaluation["lead_steps"] == 8
    assert run_metric(client, run.info.run_id, "test.rmse.geopotential.500.1d") == evaluation["headline"]["rmse.geopotential.500.1d"]
    assert (Path(outputs["evaluation"]) / "summary.md").read_text().startswith("# Evaluation summary")
    per_init = read_per_init(Path(outputs["evaluation"]) / "per_init.nc").sel(key="rmse.geopotential.500.1d")
    assert per_init.sizes["time"] == 3
    assert per_init.attrs["snapshot_id"].removeprefix("sha256:") == manifest["snapshot_id"].removeprefix("sha256:")
    assert math.sqrt(float((per_init**2).mean())) == pytest.approx(evaluation["headline"]["rmse.geopotential.500.1d"], rel=1e-9)

    registration = json.loads((Path(outputs["registration"]) / "manifest.json").read_text())
    assert registration["name"] == "zonda-ci" and registration["version"] is not None
    version = client.get_model_version_by_alias("zonda-ci", "challenger")
    assert str(version.version) == str(registration["version"])
    assert version.tags["zonda.snapshot_id"].removeprefix("sha256:") == manifest["snapshot_id"].removeprefix("sha256:")

    # what a CI retraining job posts to its summary once the (remote) run has succeeded
    report = pipeline_report(ci_params, result["run_name"])
    assert "### Scorecard" in report and "| geopotential/500 [m**2 s**-2] | 1d |" in report
    assert f"version {registration['version']}: **{registration['decision']}**" in report


def run_metric(client, run_id: str, key: str) -> float:
    return client.get_run(run_id).data.metrics[key]


@pytest.mark.slow
def test_local_pipeline_on_a_dvc_source_pushes_its_snapshot_and_fetch_brings_it_back(
    shared_output_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """params/ci.yaml on a zarr tracked in a DVC repository: lineage in the manifest, MLflow and the registry;
    the snapshot pushed to the DVC remote comes back byte-identical after the local copy is deleted."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("KFP_HOST", raising=False)
    data = make_data_repo(tmp_path)
    remote = tmp_path / "snapshots"
    params = load_params(
        REPO / "params" / "ci.yaml",
        ["data.source.kind=dvc", f"data.source.repo={data.root}", f"data.source.path={ZARR_PATH}", "data.source.rev=v1",
         f"runtime.output_root={shared_output_root}", f"runtime.mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
         f"runtime.dvc_remote={remote}"],
    )
    result = run_local(resolved_for_run(pin_run_inputs(params, cluster=False), local=True))

    snapshot = Path(result["outputs"]["snapshot"])
    manifest = json.loads((snapshot / "manifest.json").read_text())
    lineage = manifest["source"]["dvc"]
    assert lineage["commit"] == data.commit_of("v1") and lineage["md5"] == data.tracked_md5("v1", ZARR_PATH)
    mlflow.set_tracking_uri(params.runtime.mlflow_tracking_uri)
    run = mlflow.get_run(result["outputs"]["mlflow_run_id"])
    assert run.data.tags["zonda.source.dvc.commit"] == lineage["commit"] and run.data.tags["zonda.source.dvc.rev"] == "v1"
    version = mlflow.MlflowClient().get_model_version_by_alias("zonda-ci", "challenger")
    assert version.tags["zonda.source.dvc.md5"] == lineage["md5"]
    assert version.tags["zonda.snapshot.dvc_md5"] == manifest["dvc"]["md5"]

    original = {p.relative_to(snapshot).as_posix(): p.read_bytes() for p in snapshot.rglob("*") if p.is_file()}
    shutil.rmtree(snapshot)
    back = fetch_snapshot(manifest["snapshot_id"], tmp_path / "fetched", str(remote))
    assert back["snapshot_id"] == manifest["snapshot_id"]
    fetched = {p.relative_to(tmp_path / "fetched").as_posix(): p.read_bytes() for p in (tmp_path / "fetched").rglob("*")
               if p.is_file()}
    assert fetched == original
