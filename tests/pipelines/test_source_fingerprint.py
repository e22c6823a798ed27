"""The source's fingerprint is the snapshot task's runtime input: KFP's cache follows the source, not only the params.

The params sections are constants of the compiled pipeline, so without this a changed source (ERA5T grows daily)
would leave the snapshot task's cache key as it was and KFP would reuse a stale snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.zonda_pipeline import compile_pipeline, run_arguments
from tests.support.pipeline_ir import pipeline_tasks
from tests.support.synthetic import append_step, synthetic_dataset, write_zarr
from zonda.data.fingerprint import SourceChangedError, source_fingerprint
from zonda.provenance import read_manifest
from zonda.stages import snapshot_stage


def test_only_the_snapshot_task_takes_the_source_fingerprint_and_the_run_must_give_it(synthetic_params, tmp_path: Path) -> None:
    ir = next(yaml.safe_load_all(compile_pipeline(synthetic_params(), tmp_path / "pipeline.yaml").read_text()))
    declared = ir["root"]["inputDefinitions"]["parameters"]["source_fingerprint"]
    assert declared == {"parameterType": "STRING"}  # required: a run without it is refused by KFP
    takers = {name for name, task in pipeline_tasks(ir).items() if "source_fingerprint" in task["inputs"].get("parameters", {})}
    assert takers == {"snapshot"}
    given = pipeline_tasks(ir)["snapshot"]["inputs"]["parameters"]["source_fingerprint"]
    # a runtime value (the run's argument, through the exit handler's DAG), not a constant fixed at compile time
    assert given == {"componentInputParameter": "pipelinechannel--source_fingerprint"}
    handler = pipeline_tasks(ir)["exit-handler-1"]  # the DAG of the stages ("stages" in the UI)
    assert handler["inputs"]["parameters"]["pipelinechannel--source_fingerprint"] == {
        "componentInputParameter": "source_fingerprint"
    }


def test_the_snapshot_tasks_input_changes_with_the_source_and_only_then(synthetic_params, tmp_path: Path) -> None:
    store = write_zarr(synthetic_dataset(), tmp_path / "src.zarr")
    params = synthetic_params(source=store)
    first = run_arguments(params, "ci-1")
    assert run_arguments(params, "ci-2")["source_fingerprint"] == first["source_fingerprint"]  # unchanged: the same
    assert first["source_fingerprint"] == source_fingerprint(params.data)["digest"]

    append_step(store)  # the store grew by one step
    grown = run_arguments(params, "ci-3")
    assert grown["source_fingerprint"] != first["source_fingerprint"]
    assert grown["params_json"] == first["params_json"]  # the params alone would not have told


def test_a_source_changed_after_submission_fails_the_snapshot_naming_it(synthetic_params, tmp_path: Path) -> None:
    store = write_zarr(synthetic_dataset(), tmp_path / "src.zarr")
    params = synthetic_params(source=store)
    submitted = run_arguments(params, "ci-1")["source_fingerprint"]
    append_step(store)  # between the submission and the snapshot task

    out = tmp_path / "snapshot"
    with pytest.raises(SourceChangedError, match=rf"data.source.path '{store}' changed between the pipeline's submission"):
        snapshot_stage(params, out, submitted_digest=submitted, track=False, progress=False)
    assert not out.exists()  # nothing half-written


def test_the_manifest_records_the_fingerprint_the_task_was_given(synthetic_params, tmp_path: Path) -> None:
    store = write_zarr(synthetic_dataset(), tmp_path / "src.zarr")
    params = synthetic_params(source=store)
    submitted = run_arguments(params, "ci-1")["source_fingerprint"]
    manifest = snapshot_stage(params, tmp_path / "snapshot", submitted_digest=submitted, track=False, progress=False)
    recorded = read_manifest(tmp_path / "snapshot")["source"]["fingerprint"]
    assert recorded["submitted_digest"] == recorded["digest"] == submitted
    assert manifest["source"]["fingerprint"] == recorded
    assert json.loads(run_arguments(params, "x")["params_json"]) == params.resolved_dict()
