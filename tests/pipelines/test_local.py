"""The KFP pipeline run end to end with the KFP local runner on params/ci.yaml, then run again."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import mlflow
import pytest

from pipelines.run import OUTPUT_NAMES, pin_run_inputs, resolved_for_run, run_local
from tests.support.dvc_data_repo import ZARR_PATH, make_data_repo
from tests.support.repo import REPO
from zonda.evaluation.per_init import read_per_init
from zonda.params import load_params
from zonda.registry.report import pipeline_report
from zonda.snapshot_store import fetch_snapshot

STAGES = ("snapshot", "statistics", "graph", "train", "evaluate", "register")


def _params(root: Path, tracking: str, *overrides: str):
    params = load_params(
        REPO / "params" / "ci.yaml",
        [f"runtime.output_root={root}", f"runtime.mlflow_tracking_uri={tracking}", *overrides],
    )
    return resolved_for_run(params, local=True)


@pytest.fixture(scope="module")
def first_run(shared_output_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """One pipeline run into a fresh output root (the session's Held-Suarez cache linked in); (params, result, seconds)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("KFP_HOST", raising=False)
    root = tmp_path_factory.mktemp("pipeline-root")
    (shared_output_root / "cache").mkdir(exist_ok=True)
    (root / "cache").symlink_to(shared_output_root / "cache")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    params = _params(root, tracking)
    started = time.perf_counter()
    result = run_local(params)
    yield params, result, time.perf_counter() - started
    mp.undo()


def _stage_runs(client: mlflow.MlflowClient, params, parent_id: str) -> dict[str, mlflow.entities.Run]:
    """The stage runs nested under the pipeline run ``parent_id``, by stage."""
    exp = client.get_experiment_by_name(params.runtime.mlflow_experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags["zonda.stage"]: r for r in runs}


def test_local_pipeline_runs_every_stage_and_logs_to_mlflow(first_run) -> None:
    ci_params, result, _ = first_run
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
    client = mlflow.MlflowClient()
    run = client.get_run(outputs["mlflow_run_id"])
    assert run.info.status == "FINISHED"  # ended when the last stage had ended, not by the first
    assert run.data.params["data.levels"] == "[500, 850]"
    assert run.data.params["training.optimizer._target_"] == "torch.optim.AdamW"
    stages = _stage_runs(client, ci_params, run.info.run_id)
    assert set(stages) == set(STAGES)
    assert {r.info.status for r in stages.values()} == {"FINISHED"}
    assert stages["snapshot"].data.tags["zonda.snapshot_id"] == manifest["snapshot_id"]
    assert stages["statistics"].data.tags["zonda.statistics_hash"] == stats_manifest["statistics_hash"]
    artifacts = {a.path for a in client.list_artifacts(stages["statistics"].info.run_id, "statistics")}
    assert {"statistics/manifest.json", "statistics/statistics.nc", "statistics/params.resolved.yaml"} <= artifacts

    graph = json.loads((Path(outputs["graph"]) / "manifest.json").read_text())
    assert graph["snapshot_id"] == manifest["snapshot_id"] and graph["counts"]["nodes"]["mesh"] == 162  # r=2
    model = json.loads((Path(outputs["model"]) / "manifest.json").read_text())
    assert model["snapshot_id"] == manifest["snapshot_id"] and model["graph_hash"] == graph["graph_hash"]
    assert (Path(outputs["model"]) / "weights.safetensors").is_file()
    train_id = stages["train"].info.run_id
    assert len(client.get_metric_history(train_id, "train/loss_step")) == model["global_step"]  # per step
    assert client.get_metric_history(train_id, "val/rmse/geopotential/500/24h")

    evaluation = json.loads((Path(outputs["evaluation"]) / "manifest.json").read_text())
    assert evaluation["init_times"]["count"] == 3 and evaluation["lead_steps"] == 8
    evaluate_id = stages["evaluate"].info.run_id
    headline = evaluation["headline"]["rmse.geopotential.500.1d"]
    assert stages["evaluate"].data.metrics["test/rmse/geopotential/500/1d"] == headline
    growth = {m.step: m.value for m in client.get_metric_history(evaluate_id, "test/rmse/geopotential/500")}
    assert sorted(growth) == list(range(6, 49, 6)) and growth[24] == headline  # step = lead hours
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

    # each task's whole log beside its output, the runner's (executor JSON and all) in <run>.log
    for name, stage in (("snapshot", "snapshot"), ("model", "train"), ("evaluation", "evaluate")):
        task_log = Path(outputs[name] + ".log").read_text()
        assert f"{stage}: started" in task_log and f"{stage}: done in" in task_log, name
    assert "DEBUG" in Path(outputs["model"] + ".log").read_text()
    assert "Got executor_input" in Path(result["log"]).read_text()

    # what a CI retraining job posts to its summary once the (remote) run has succeeded
    report = pipeline_report(ci_params, result["run_name"])
    assert "### Scorecard" in report and "| geopotential/500 [m**2 s**-2] | 1d |" in report
    assert f"version {registration['version']}: **{registration['decision']}**" in report


def test_a_rerun_with_nothing_changed_reuses_every_stage(first_run, capsys: pytest.CaptureFixture[str]) -> None:
    params, first, seconds = first_run
    started = time.perf_counter()
    again = run_local(params)
    rerun_seconds = time.perf_counter() - started
    print(f"first run {seconds:.1f} s, rerun {rerun_seconds:.1f} s")  # the benchmark's numbers; no timed assertion

    assert again["outputs"] | {"mlflow_run_id": None} == first["outputs"] | {"mlflow_run_id": None}
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"{stage}: reused " in out and f" from {first['outputs'][_output(stage)]}" in out
    mlflow.set_tracking_uri(params.runtime.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    stages = _stage_runs(client, params, again["outputs"]["mlflow_run_id"])
    assert {s: r.data.tags.get("zonda.reused_from") for s, r in stages.items()} == {
        s: first["outputs"][_output(s)] for s in STAGES
    }
    assert [str(v.version) for v in client.search_model_versions("name = 'zonda-ci'")] == ["1"]  # no version 2


@pytest.mark.slow
def test_changing_evaluation_reruns_only_evaluate_and_register(first_run) -> None:
    params, first, _ = first_run
    changed = _params(
        Path(params.runtime.output_root), params.runtime.mlflow_tracking_uri, "evaluation.init_every_hours=48"
    )
    result = run_local(changed)
    client = mlflow.MlflowClient()
    stages = _stage_runs(client, changed, result["outputs"]["mlflow_run_id"])
    reused = {s for s, r in stages.items() if "zonda.reused_from" in r.data.tags}
    assert reused == {"snapshot", "statistics", "graph", "train"}
    evaluation = json.loads((Path(result["outputs"]["evaluation"]) / "manifest.json").read_text())
    assert evaluation["init_times"]["count"] == 2


def _output(stage: str) -> str:
    return OUTPUT_NAMES[stage]


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
    run = _stage_runs(mlflow.MlflowClient(), params, result["outputs"]["mlflow_run_id"])["snapshot"]
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
