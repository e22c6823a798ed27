"""Remote submission to a (fake) KFP API: upload, versions, experiment, run, waiting, summary, errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import pipelines.submit as submit_mod
from pipelines.submit import RunFailed, compile_package, main_submit, submit, version_name
from tests.support.fake_kfp_server import FakeKfpServer, RunScript
from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset, write_zarr
from zonda.data.fingerprint import source_fingerprint
from zonda.params import load_params

SHA = "0123456789abcdef0123456789abcdef01234567"
PIPELINES = r"/apis/v2beta1/pipelines"
UPLOAD_VERSION = r"/apis/v2beta1/pipelines/upload_version"
RUNS = r"/apis/v2beta1/runs"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kfp.client import client as kfp_client

    monkeypatch.setenv("ZONDA_GIT_SHA", SHA)  # git_commit(): a clean checkout at SHA
    for var in ("KFP_TOKEN", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(kfp_client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setattr(submit_mod, "DEFAULT_POLL_S", 0.01)


@pytest.fixture
def kfp():
    with FakeKfpServer() as server:
        yield server


@pytest.fixture(scope="module")
def local_source(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides that point a preset at a local synthetic store (a source is fingerprinted before submitting)."""
    store = write_zarr(synthetic_dataset(n_time=4), tmp_path_factory.mktemp("source") / "era5.zarr")
    return [f"data.source.path={store}", "data.source.storage_options={}"]


@pytest.fixture(scope="module")
def aifs(local_source: list[str]):
    return load_params(REPO / "params" / "aifs.yaml", local_source)


def uploaded_docs(call) -> list[dict]:
    filename, data = call.body["files"]["uploadfile"]
    assert filename.endswith(".yaml")
    return list(yaml.safe_load_all(data))


def test_submit_uploads_the_ir_and_starts_a_run_with_the_params(kfp, aifs, tmp_path, capsys) -> None:
    result = submit(aifs, kfp.url, wait=False, token="s3cret")

    # One pipeline "zonda", one version named by the commit, holding our compiled pipeline.
    assert [c.body["display_name"] for c in kfp.calls_to("POST", PIPELINES)] == ["zonda"]
    (upload,) = kfp.calls_to("POST", UPLOAD_VERSION)
    assert upload.query["name"] == "0123456789ab"
    assert upload.query["pipelineid"] == result["pipeline_id"]
    spec = uploaded_docs(upload)[0]
    assert spec["pipelineInfo"]["name"] == "zonda"
    assert spec["root"]["inputDefinitions"]["parameters"]["params_json"]["parameterType"] == "STRING"
    compile_package(aifs, tmp_path / "expected.yaml")
    assert upload.body["files"]["uploadfile"][1] == (tmp_path / "expected.yaml").read_bytes()

    # The run: this version, the preset's experiment and service account, the resolved params.
    (create,) = kfp.calls_to("POST", RUNS)
    run = create.body
    assert run["pipeline_version_reference"] == {
        "pipeline_id": result["pipeline_id"], "pipeline_version_id": result["pipeline_version_id"],
    }
    assert kfp.experiments[run["experiment_id"]]["display_name"] == "zonda-aifs"
    assert run["service_account"] == "zonda-pipeline"
    assert run["display_name"] == result["run_name"] and result["run_name"].startswith("aifs-")
    parameters = run["runtime_config"]["parameters"]
    assert json.loads(parameters["params_json"]) == aifs.resolved_dict()
    assert parameters["run_name"] == result["run_name"]
    # the snapshot task's cache key follows the source: its fingerprint, taken before submitting
    assert parameters["source_fingerprint"] == source_fingerprint(aifs.data)["digest"]

    # Every request carried the token; the run's URL was printed; nobody waited.
    assert all(c.headers.get("authorization") == "Bearer s3cret" for c in kfp.calls)
    (run_id,) = kfp.runs
    assert result["run_url"] == f"{kfp.url}/#/runs/details/{run_id}"
    assert result["run_url"] in capsys.readouterr().out
    assert result["state"] == "PENDING"
    assert not kfp.calls_to("GET", rf"{RUNS}/.+")


def test_wait_follows_the_run_to_success_and_writes_the_summary(kfp, aifs, tmp_path, capsys) -> None:
    summary = tmp_path / "ci" / "summary.md"
    result = submit(aifs, kfp.url, wait=True, summary_path=summary)

    assert result["state"] == "SUCCEEDED"
    assert len(kfp.calls_to("GET", rf"{RUNS}/{result['run_id']}")) == 3  # PENDING, RUNNING, SUCCEEDED
    out = capsys.readouterr().out
    positions = [out.index(f": {state}") for state in ("PENDING", "RUNNING", "SUCCEEDED")]
    assert positions == sorted(positions), out
    text = summary.read_text()
    assert "SUCCEEDED" in text and result["run_url"] in text
    assert "`0123456789ab`" in text and "zonda-aifs" in text
    assert "| statistics | SUCCEEDED |" in text


def test_a_failed_run_fails_the_command_with_its_state_and_error(kfp, aifs, tmp_path, capsys) -> None:
    kfp.run_script = RunScript(["RUNNING", "FAILED"], error="task train failed: OOMKilled", failed_task="train")
    summary = tmp_path / "summary.md"

    rc = main_submit(aifs, kfp.url, wait=True, summary=summary)

    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "OOMKilled" in err and "failed tasks: train" in err
    run_id = next(iter(kfp.runs))
    assert f"{kfp.url}/#/runs/details/{run_id}" in err
    text = summary.read_text()
    assert "FAILED" in text and "OOMKilled" in text and "| train | FAILED |" in text


def test_waiting_gives_up_after_the_timeout_without_calling_it_success(kfp, aifs, tmp_path) -> None:
    kfp.run_script = RunScript(["RUNNING"])
    with pytest.raises(RunFailed, match=r"still RUNNING after .*the run goes on") as info:
        submit(aifs, kfp.url, wait=True, timeout_s=0, summary_path=tmp_path / "s.md")
    assert info.value.state == "RUNNING"
    assert "timeout" in (tmp_path / "s.md").read_text()


def test_a_second_submission_reuses_the_pipeline_and_the_version(kfp, aifs) -> None:
    first = submit(aifs, kfp.url, wait=False)
    second = submit(aifs, kfp.url, wait=False)

    assert len(kfp.calls_to("POST", PIPELINES)) == 1
    assert len(kfp.calls_to("POST", UPLOAD_VERSION)) == 1
    assert not kfp.calls_to("POST", rf"{PIPELINES}/upload")
    assert len(kfp.calls_to("POST", r"/apis/v2beta1/experiments")) == 1
    assert second["pipeline_version_uploaded"] is False
    assert (second["pipeline_id"], second["pipeline_version_id"]) == (first["pipeline_id"], first["pipeline_version_id"])
    runs = [c.body["pipeline_version_reference"]["pipeline_version_id"] for c in kfp.calls_to("POST", RUNS)]
    assert runs == [first["pipeline_version_id"]] * 2


def test_a_different_ir_at_the_same_commit_gets_its_own_version(kfp, aifs, local_source) -> None:
    """Presets share the pipeline name (aifs and graphcast: "zonda") but not their IR (images, GPUs)."""
    graphcast = load_params(
        REPO / "params" / "graphcast.yaml",
        ["runtime.images.data=ghcr.io/zonda-weather/zonda-data:0123456789ab", *local_source],
    )
    a = submit(aifs, kfp.url, wait=False)
    g = submit(graphcast, kfp.url, wait=False)
    g2 = submit(graphcast, kfp.url, wait=False)

    assert a["pipeline_id"] == g["pipeline_id"]
    assert a["pipeline_version_name"] == "0123456789ab"
    assert g["pipeline_version_name"].startswith("0123456789ab-") and g["pipeline_version_id"] != a["pipeline_version_id"]
    assert kfp.packages[g["pipeline_version_id"]] != kfp.packages[a["pipeline_version_id"]]
    assert g2["pipeline_version_id"] == g["pipeline_version_id"] and len(kfp.calls_to("POST", UPLOAD_VERSION)) == 2


def test_a_version_uploaded_concurrently_is_not_overwritten(kfp, aifs, monkeypatch) -> None:
    """Another job uploads <sha> (another IR) between our look-up and our upload: we get a 409, look again."""
    other = submit(aifs, kfp.url, wait=False)
    kfp.versions[other["pipeline_version_id"]]["description"] = "ir-sha256:" + "f" * 64  # as if another IR
    real_find, misses = submit_mod._find_version, iter([True])
    monkeypatch.setattr(
        submit_mod, "_find_version", lambda *a: None if next(misses, False) else real_find(*a)  # stale first look
    )
    ours = submit(aifs, kfp.url, wait=False)

    assert [c.query["name"] for c in kfp.calls_to("POST", UPLOAD_VERSION)] == [
        "0123456789ab", "0123456789ab", ours["pipeline_version_name"],
    ]
    assert ours["pipeline_version_name"].startswith("0123456789ab-")
    assert ours["pipeline_version_id"] != other["pipeline_version_id"]


def test_multi_user_kfp_puts_the_experiment_in_the_charts_namespace(aifs) -> None:
    with FakeKfpServer(multi_user=True) as kfp:
        result = submit(aifs, kfp.url, wait=False)
    assert kfp.experiments[result["experiment_id"]]["namespace"] == "zonda"  # runtime.distributed.namespace


def test_version_names_follow_the_commit() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert version_name(SHA, now) == "0123456789ab"
    assert version_name(SHA + "-dirty", now) == "0123456789ab-dirty-20260102-030405"
    assert version_name(None, now) == "nogit-20260102-030405"
    later = now + dt.timedelta(seconds=1)
    assert version_name(SHA + "-dirty", later) != version_name(SHA + "-dirty", now)  # never reuse dirty code


def test_dirty_checkout_uploads_a_timestamped_version(kfp, aifs, monkeypatch) -> None:
    monkeypatch.setenv("ZONDA_GIT_SHA", SHA + "-dirty")
    result = submit(aifs, kfp.url, wait=False)
    assert result["pipeline_version_name"].startswith("0123456789ab-dirty-20")
    assert kfp.calls_to("POST", UPLOAD_VERSION)[0].query["name"] == result["pipeline_version_name"]


def test_a_wrong_token_fails_fast_and_says_so(aifs, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KFP_TOKEN", "wrong")
    with FakeKfpServer(require_token="right") as kfp:
        start = time.monotonic()
        rc = main_submit(aifs, kfp.url, wait=False, summary=tmp_path / "s.md")
        assert time.monotonic() - start < 10
        assert not kfp.calls_to("POST", RUNS)
    err = capsys.readouterr().err
    assert rc == 2 and "HTTP 401" in err and "KFP_TOKEN" in err
    assert "was not submitted" in (tmp_path / "s.md").read_text()


def test_an_unreachable_host_fails_fast_naming_it(aifs, capsys) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    assert main_submit(aifs, host, wait=True, summary=None) == 2
    assert time.monotonic() - start < 10
    assert f"cannot reach the KFP API at {host}" in capsys.readouterr().err


# ------------------------------------------------------------------ local runs of a cluster preset


def test_cluster_preset_without_kfp_host_fails_in_its_preflight_and_creates_nothing(tmp_path: Path) -> None:
    """params/aifs.yaml run locally: the preflight stops it before any MLflow run or KFP output exists."""
    overrides = []
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass  # the preset's gs:// store is unreadable here, as on any machine without gcsfs
    else:  # the public gs:// store might be reachable: point the preset at a store that is not
        overrides = ["data.source.path=/nonexistent/era5.zarr"]
    out_root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("KFP_HOST", "MLFLOW_TRACKING_URI", "ZONDA_GIT_SHA")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", "run", "--params", "params/aifs.yaml",
         f"runtime.output_root={out_root}", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "data.source.path" in proc.stderr
    created = sorted(p.relative_to(out_root).as_posix() for p in out_root.rglob("*")) if out_root.exists() else []
    assert created == [], f"a failed preflight left {created} under runtime.output_root"
