"""The KFP pipeline run end to end with the KFP local runner on params/ci.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from pipelines.run import resolved_for_run, run_local
from zonda.params import load_params

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
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "statistics")}
    assert {"statistics/manifest.json", "statistics/statistics.nc", "statistics/params.resolved.yaml"} <= artifacts
