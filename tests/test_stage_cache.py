"""Stage reuse: each stage's inputs are only what it reads, and unchanged inputs reuse the earlier output.

KFP side: the compiled IR's per-task inputs (so KFP's cache can hit). Local side:
the stage layer's input keys and reuse (``zonda.stage_cache``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from pipelines.zonda_pipeline import compile_pipeline
from tests.support.pipeline_ir import pipeline_tasks
from tests.support.repo import REPO
from zonda import stage_cache
from zonda.params import STAGE_SECTIONS, ParamsError, load_params, params_from_json, write_resolved
from zonda.stages import graph_stage, snapshot_stage, statistics_stage

UPSTREAM_ARTIFACTS = {
    "snapshot": set(),
    "statistics": {"snapshot"},
    "graph": {"snapshot"},
    "train": {"snapshot", "statistics", "graph"},
    "evaluate": {"snapshot", "statistics", "graph", "model"},
    "register": {"snapshot", "statistics", "graph", "model", "evaluation"},
}


def _compiled_tasks(tmp_path: Path, *overrides: str) -> dict[str, dict]:
    params = load_params(REPO / "params" / "ci.yaml", list(overrides))
    out = compile_pipeline(params, tmp_path / f"pipeline-{len(overrides)}.yaml")
    return pipeline_tasks(next(yaml.safe_load_all(out.read_text())))  # the pipeline spec, not the platform config


def _constant_params(task: dict) -> dict:
    return json.loads(task["inputs"]["parameters"]["params_json"]["runtimeValue"]["constant"])


def test_each_stage_task_gets_only_its_params_sections_and_upstream_artifacts(tmp_path: Path) -> None:
    tasks = _compiled_tasks(tmp_path)
    for stage, artifacts in UPSTREAM_ARTIFACTS.items():
        task = tasks[stage]
        # no MLflow run id, no run name; the snapshot's source fingerprint (tests/pipelines/test_source_fingerprint.py)
        fingerprint = {"source_fingerprint"} if stage == "snapshot" else set()
        assert set(task["inputs"].get("parameters", {})) == {"params_json", *fingerprint}, stage
        assert set(task["inputs"].get("artifacts", {})) == artifacts, stage
        given = _constant_params(task)
        assert set(given) == {"name", "stage", "runtime", *STAGE_SECTIONS[stage]}, stage
        assert "resources" not in given["runtime"] or stage == "train"
        assert task.get("cachingOptions", {}).get("enableCache") is True, stage
    # the MLflow run is opened and closed by uncached tasks no stage takes an input from
    assert tasks["open-mlflow-run"].get("cachingOptions", {}).get("enableCache") is not True
    assert tasks["close-mlflow-run"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_every_task_gets_the_kfp_run_id_from_its_pods_label_not_from_an_input(tmp_path: Path) -> None:
    """The stages find the pipeline's MLflow run by the KFP run id (zonda.tracking.parent_run_id): an environment
    variable from the pod label ``pipeline/runid``, which KFP's cache key does not hold (it hashes the inputs,
    outputs, image, command, args and PVC names: backend/src/v2/driver/cache.go), so the inputs stay as they were."""
    params = load_params(REPO / "params" / "ci.yaml")
    spec, platform = yaml.safe_load_all(compile_pipeline(params, tmp_path / "pipeline.yaml").read_text())
    tasks = pipeline_tasks(spec)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in (*STAGE_SECTIONS, "open-mlflow-run", "close-mlflow-run"):
        label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        assert executors[label]["fieldPathAsEnv"] == [
            {"name": "ZONDA_KFP_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"}
        ], name
    for stage in STAGE_SECTIONS:  # nothing run-specific among the inputs: params sections, artifacts, the source's digest
        parameters = tasks[stage]["inputs"]["parameters"]
        assert "runtimeValue" in parameters["params_json"], stage
        assert set(parameters) - {"params_json"} <= {"source_fingerprint"}, stage


def test_changing_evaluation_changes_only_the_evaluate_and_register_task_inputs(tmp_path: Path) -> None:
    before = _compiled_tasks(tmp_path)
    after = _compiled_tasks(tmp_path, "evaluation.init_every_hours=12")
    changed = {stage for stage in STAGE_SECTIONS if before[stage]["inputs"] != after[stage]["inputs"]}
    assert changed == {"evaluate", "register"}
    registry = _compiled_tasks(tmp_path, "registry.promotion.tolerance=0.1")
    assert {stage for stage in STAGE_SECTIONS if before[stage]["inputs"] != registry[stage]["inputs"]} == {"register"}


def test_the_snapshot_task_is_given_the_dvc_remote_it_pushes_to(tmp_path: Path) -> None:
    """runtime.dvc_remote reaches the snapshot task (which pushes there) and no other task's inputs."""
    before = _compiled_tasks(tmp_path)
    after = _compiled_tasks(tmp_path, "runtime.dvc_remote=/data/dvc-remote")
    assert _constant_params(after["snapshot"])["runtime"]["dvc_remote"] == "/data/dvc-remote"
    assert {stage for stage in STAGE_SECTIONS if before[stage]["inputs"] != after[stage]["inputs"]} == {"snapshot"}


def test_a_stage_reading_a_section_it_did_not_declare_fails_loudly() -> None:
    params = load_params(REPO / "params" / "ci.yaml")
    graph_params = params_from_json(json.dumps(params.for_stage("graph")))
    assert graph_params.graph.refinement == 2
    with pytest.raises(ParamsError, match=r"params\.training\.lr read by a stage given only data, graph, runtime"):
        graph_params.training.lr
    assert set(graph_params.resolved_dict()) == {"name", "stage", "data", "graph", "runtime"}


def test_a_stage_params_file_reads_back_as_the_same_stage_params(tmp_path: Path) -> None:
    params = load_params(REPO / "params" / "ci.yaml")
    stage_params = params_from_json(json.dumps(params.for_stage("train")))
    reread = load_params(write_resolved(stage_params, tmp_path))  # what `zonda train` reads in the KFP train task
    assert reread.for_stage("train") == params.for_stage("train")


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The console's "reused" lines."""
    return [r.getMessage() for r in caplog.records if r.name == "zonda.console" and ": reused " in r.getMessage()]


def test_unchanged_inputs_reuse_earlier_outputs_and_a_changed_section_reruns_only_its_stages(
    synthetic_params, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zonda.console")
    params = synthetic_params()
    first = {"snapshot": tmp_path / "a" / "snapshot", "statistics": tmp_path / "a" / "statistics", "graph": tmp_path / "a" / "graph"}
    snap = snapshot_stage(params, first["snapshot"], track=False, progress=False)
    stats = statistics_stage(params, first["snapshot"], first["statistics"], track=False, progress=False)
    mesh = graph_stage(params, first["snapshot"], first["graph"], track=False, progress=False)
    assert _messages(caplog) == []

    second = {k: tmp_path / "b" / k for k in first}  # a new run's output paths, as KFP gives them
    assert snapshot_stage(params, second["snapshot"], track=False, progress=False)["snapshot_id"] == snap["snapshot_id"]
    statistics_stage(params, second["snapshot"], second["statistics"], track=False, progress=False)
    graph_stage(params, second["snapshot"], second["graph"], track=False, progress=False)
    assert _messages(caplog) == [
        f"snapshot: reused {snap['snapshot_id']} from {first['snapshot'].resolve()}",
        f"statistics: reused {stats['statistics_hash']} from {first['statistics'].resolve()}",
        f"graph: reused {mesh['graph_hash']} from {first['graph'].resolve()}",
    ]
    for name, path in second.items():  # the reused output is complete at the new path
        assert json.loads((path / "manifest.json").read_text()) == json.loads((first[name] / "manifest.json").read_text())
    assert (second["snapshot"] / "data.zarr" / "zarr.json").is_file()

    caplog.clear()
    changed = synthetic_params("statistics.chunk_budget_mb=2", source=Path(params.data.source.path))
    third = {k: tmp_path / "c" / k for k in first}
    snapshot_stage(changed, third["snapshot"], track=False, progress=False)
    statistics_stage(changed, third["snapshot"], third["statistics"], track=False, progress=False)
    graph_stage(changed, third["snapshot"], third["graph"], track=False, progress=False)
    reused = [m.split(":")[0] for m in _messages(caplog)]
    assert reused == ["snapshot", "graph"]  # statistics ran again


def test_a_code_change_or_a_different_upstream_changes_the_input_key(synthetic_params, tmp_path: Path, monkeypatch) -> None:
    params = synthetic_params()
    snapshot = tmp_path / "snapshot"
    snapshot_stage(params, snapshot, track=False, progress=False)
    key = stage_cache.input_key(params, "graph", {"snapshot": snapshot})
    assert stage_cache.input_key(synthetic_params(source=Path(params.data.source.path)), "graph", {"snapshot": snapshot}) == key
    assert stage_cache.input_key(synthetic_params("graph.refinement=1", source=Path(params.data.source.path)), "graph", {"snapshot": snapshot}) != key
    other = tmp_path / "other"
    snapshot_stage(synthetic_params(seed=1), other, track=False, progress=False)
    assert stage_cache.input_key(params, "graph", {"snapshot": other}) != key
    monkeypatch.setattr(stage_cache, "code_digest", lambda: "0" * 64)
    assert stage_cache.input_key(params, "graph", {"snapshot": snapshot}) != key


def test_reuse_can_be_turned_off(synthetic_params, tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zonda.console")
    params = synthetic_params()
    snapshot_stage(params, tmp_path / "a", track=False, progress=False)
    monkeypatch.setenv(stage_cache.REUSE_ENV, "0")
    snapshot_stage(params, tmp_path / "b", track=False, progress=False)
    assert _messages(caplog) == []
    assert (tmp_path / "b" / "data.zarr").is_dir()
