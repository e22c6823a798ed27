"""The distributed-job launcher against fake Kubernetes clients: calls made, success, failure with logs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.repo import REPO
from zonda import launch, stage_cache, tracking
from zonda.k8s import JobFailed, JobTimedOut, Launcher, LaunchError, distributed_job_manifest
from zonda.launch import pipeline_task_launch
from zonda.params import load_params
from zonda.stages import train_stage

COMMAND = ["zonda", "train", "--params", "/data/params.yaml"]


def _cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def _obj(name: str, *conditions: dict, rv: str = "1") -> dict:
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": {"conditions": list(conditions)}}


class FakeCustom:
    """CustomObjectsApi: records calls, serves a scripted sequence of GET results."""

    def __init__(self, gets: list, create_error: ApiException | None = None):
        self.gets = list(gets)
        self.create_error = create_error
        self.calls: list[tuple] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", group, version, namespace, plural, body["metadata"]["name"]))
        if self.create_error is not None:
            err, self.create_error = self.create_error, None
            raise err
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", group, version, namespace, plural, name))
        item = self.gets.pop(0) if len(self.gets) > 1 else self.gets[0]
        if item is None:
            raise ApiException(status=404, reason="Not Found")
        return item

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(("delete", group, version, namespace, plural, name, body["propagationPolicy"]))

    def list_namespaced_custom_object(self, *args, **kwargs):  # only passed to the watch
        raise AssertionError("the launcher must stream through the watch, not call list directly")


class FakeWatch:
    """kubernetes.watch.Watch: yields scripted events and records the stream arguments."""

    def __init__(self, events_per_stream: list[list[dict]]):
        self.events_per_stream = events_per_stream
        self.streams: list[tuple] = []
        self.stopped = 0

    def __call__(self):
        return self

    def stream(self, func, *args, **kwargs):
        self.streams.append((func.__name__, args, kwargs))
        yield from (self.events_per_stream.pop(0) if self.events_per_stream else [])

    def stop(self):
        self.stopped += 1


def _pod(name: str, phase: str, container: str, exit_code: int | None = None, reason: str | None = None):
    terminated = SimpleNamespace(exit_code=exit_code, reason=reason) if exit_code is not None else None
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name),
        spec=SimpleNamespace(containers=[SimpleNamespace(name=container)]),
        status=SimpleNamespace(
            phase=phase,
            container_statuses=[SimpleNamespace(name=container, state=SimpleNamespace(terminated=terminated),
                                                last_state=SimpleNamespace(terminated=None))],
        ),
    )


class FakeCore:
    def __init__(self, pods: list, logs: dict[str, str]):
        self.pods = pods
        self.logs = logs
        self.calls: list[tuple] = []

    def list_namespaced_pod(self, namespace, label_selector):
        self.calls.append(("list_pods", namespace, label_selector))
        return SimpleNamespace(items=self.pods)

    def read_namespaced_pod_log(self, name, namespace, container, tail_lines):
        self.calls.append(("log", name, namespace, container, tail_lines))
        if name not in self.logs:
            raise ApiException(status=400, reason="container is waiting to start")
        return self.logs[name]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture(scope="module")
def trainjob():
    params = load_params(REPO / "params" / "aifs.yaml")
    return distributed_job_manifest(params, job_name="aifs-train-1", command=COMMAND)


@pytest.fixture(scope="module")
def pytorchjob():
    params = load_params(REPO / "params" / "graphcast.yaml")
    return distributed_job_manifest(params, job_name="gc-train-1", command=COMMAND)


def _launcher(custom, core, watch, messages=None, clock=None):
    clock = clock or Clock()
    return Launcher(custom, core, watch_factory=watch, echo=(messages if messages is not None else []).append, sleep=clock.sleep, clock=clock)


def test_success_creates_watches_and_returns_the_finished_job(trainjob):
    custom = FakeCustom([_obj("aifs-train-1", rv="7")])
    watch = FakeWatch([[
        {"type": "MODIFIED", "object": _obj("aifs-train-1", _cond("Created", reason="JobSetCreated"))},
        {"type": "MODIFIED", "object": _obj("aifs-train-1", _cond("Complete", reason="JobSetCompleted"))},
    ]])
    core = FakeCore([], {})
    messages: list[str] = []
    done = _launcher(custom, core, watch, messages).run(trainjob)

    assert custom.calls[0] == ("create", "trainer.kubeflow.org", "v1alpha1", "zonda", "trainjobs", "aifs-train-1")
    func, args, kwargs = watch.streams[0]
    assert func == "list_namespaced_custom_object"
    assert args == ("trainer.kubeflow.org", "v1alpha1", "zonda", "trainjobs")
    assert kwargs["field_selector"] == "metadata.name=aifs-train-1" and kwargs["resource_version"] == "7"
    assert done["status"]["conditions"][0]["type"] == "Complete"
    assert watch.stopped == 1
    assert core.calls == []  # no logs fetched on success
    assert any("Created=True JobSetCreated" in m for m in messages)
    assert not any(c[0] == "delete" for c in custom.calls)


def test_failure_raises_with_reason_exit_codes_and_pod_logs(pytorchjob):
    failed = _obj("gc-train-1", _cond("Failed", reason="PyTorchJobFailed", message="Worker 1 exited with code 1"))
    custom = FakeCustom([_obj("gc-train-1", _cond("Running")), failed])
    watch = FakeWatch([[{"type": "MODIFIED", "object": failed}]])
    core = FakeCore(
        [_pod("gc-train-1-master-0", "Running", "pytorch"),
         _pod("gc-train-1-worker-1", "Failed", "pytorch", exit_code=1, reason="Error")],
        {"gc-train-1-master-0": "waiting for rank 1\n",
         "gc-train-1-worker-1": "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"},
    )
    with pytest.raises(JobFailed) as info:
        _launcher(custom, core, watch).run(pytorchjob, tail_lines=50)

    text = str(info.value)
    assert "PyTorchJob zonda/gc-train-1 failed: PyTorchJobFailed: Worker 1 exited with code 1" in text
    assert "RuntimeError: CUDA out of memory" in text and "waiting for rank 1" in text
    assert "gc-train-1-worker-1 [pytorch] phase=Failed exit=1 reason=Error" in text
    # the failed pod's log comes first
    assert text.index("CUDA out of memory") < text.index("waiting for rank 1")
    assert ("list_pods", "zonda", "training.kubeflow.org/job-name=gc-train-1") in core.calls
    assert ("log", "gc-train-1-worker-1", "zonda", "pytorch", 50) in core.calls


def test_unreadable_log_does_not_hide_the_others(trainjob):
    failed = _obj("aifs-train-1", _cond("Failed", reason="JobSetFailed"))
    custom = FakeCustom([failed])
    core = FakeCore([_pod("aifs-train-1-node-0-0", "Failed", "node", exit_code=137, reason="OOMKilled"),
                     _pod("aifs-train-1-node-0-1", "Pending", "node")],
                    {"aifs-train-1-node-0-0": "killed\n"})
    with pytest.raises(JobFailed) as info:
        _launcher(custom, core, FakeWatch([])).run(trainjob)
    text = str(info.value)
    assert "exit=137 reason=OOMKilled" in text and "killed" in text
    assert "<logs unavailable: HTTP 400 container is waiting to start>" in text
    assert ("list_pods", "zonda", "jobset.sigs.k8s.io/jobset-name=aifs-train-1") in core.calls


def test_timeout_deletes_the_job_and_reports_logs(trainjob):
    clock = Clock()
    custom = FakeCustom([_obj("aifs-train-1", _cond("Created"))])

    class TickingWatch(FakeWatch):
        def stream(self, func, *args, **kwargs):
            clock.now += kwargs["timeout_seconds"]  # the server ends the watch after timeout_seconds
            yield from ()

    core = FakeCore([_pod("aifs-train-1-node-0-0", "Running", "node")], {"aifs-train-1-node-0-0": "epoch 3\n"})
    launcher = _launcher(custom, core, TickingWatch([]), clock=clock)
    # deletion: the job is gone at the first check after the delete call
    original_get = custom.get_namespaced_custom_object

    def get(*args):
        if custom.calls and custom.calls[-1][0] == "delete":
            raise ApiException(status=404)
        return original_get(*args)

    custom.get_namespaced_custom_object = get
    with pytest.raises(JobTimedOut) as info:
        launcher.run(trainjob, timeout_s=900)
    assert "did not finish within 900 s; deleted it" in str(info.value)
    assert "epoch 3" in str(info.value)
    assert ("delete", "trainer.kubeflow.org", "v1alpha1", "zonda", "trainjobs", "aifs-train-1", "Foreground") in custom.calls


def test_default_timeout_is_the_jobs_deadline_plus_grace(trainjob):
    clock = Clock()
    custom = FakeCustom([_obj("aifs-train-1")])
    seen = []

    class RecordingWatch(FakeWatch):
        def stream(self, func, *args, **kwargs):
            seen.append(kwargs["timeout_seconds"])
            clock.now += 10**9
            yield from ()

    launcher = _launcher(custom, FakeCore([], {}), RecordingWatch([]), clock=clock)
    with pytest.raises(JobTimedOut, match=f"within {24 * 3600 + 600} s"):
        launcher.run(trainjob, delete_on_timeout=False)
    assert seen == [300]  # watches are re-opened at most every 5 minutes
    assert not any(c[0] == "delete" for c in custom.calls)


def test_expired_watch_is_reopened_from_a_fresh_read(trainjob):
    custom = FakeCustom([_obj("aifs-train-1", rv="1"), _obj("aifs-train-1", rv="2"),
                         _obj("aifs-train-1", _cond("Complete"), rv="3")])
    watch = FakeWatch([[{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}], []])
    _launcher(custom, FakeCore([], {}), watch).run(trainjob)
    assert [s[2]["resource_version"] for s in watch.streams] == ["1", "2"]
    assert watch.stopped == 2


def test_deleted_job_is_an_error(trainjob):
    custom = FakeCustom([_obj("aifs-train-1")])
    watch = FakeWatch([[{"type": "DELETED", "object": _obj("aifs-train-1")}]])
    with pytest.raises(LaunchError, match="was deleted while the launcher waited"):
        _launcher(custom, FakeCore([], {}), watch).run(trainjob)


def test_retry_adopts_a_running_job_instead_of_starting_over(trainjob):
    custom = FakeCustom([_obj("aifs-train-1", _cond("Created")), _obj("aifs-train-1", _cond("Complete"))],
                        create_error=ApiException(status=409, reason="AlreadyExists"))
    messages: list[str] = []
    _launcher(custom, FakeCore([], {}), FakeWatch([]), messages).run(trainjob)
    assert [c[0] for c in custom.calls].count("create") == 1
    assert not any(c[0] == "delete" for c in custom.calls)
    assert any("already exists; following it" in m for m in messages)


def test_retry_replaces_a_failed_job(trainjob):
    custom = FakeCustom([_obj("aifs-train-1", _cond("Failed")), None, _obj("aifs-train-1", _cond("Complete"))],
                        create_error=ApiException(status=409, reason="AlreadyExists"))
    _launcher(custom, FakeCore([], {}), FakeWatch([])).run(trainjob)
    kinds = [c[0] for c in custom.calls]
    assert kinds.index("delete") < len(kinds) - 1 - kinds[::-1].index("create")  # deleted, then created again
    assert kinds.count("create") == 2


def test_forbidden_create_explains_the_http_error(trainjob):
    err = ApiException(status=403, reason="Forbidden")
    err.body = 'trainjobs.trainer.kubeflow.org is forbidden: User "system:serviceaccount:zonda:default" cannot create'
    custom = FakeCustom([None], create_error=err)
    with pytest.raises(LaunchError, match=r"HTTP 403 Forbidden\n.*cannot create"):
        _launcher(custom, FakeCore([], {}), FakeWatch([])).run(trainjob)


def test_unknown_kind_is_refused():
    with pytest.raises(LaunchError, match="cannot launch batch/v1 Job"):
        _launcher(FakeCustom([None]), FakeCore([], {}), FakeWatch([])).run(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "n"}})


def _command_in(manifest) -> list[str]:
    """The ``zonda ...`` part of a job manifest's container command (after ``torchrun --no-python``)."""
    if isinstance(manifest, list):
        if "zonda" in manifest:
            return manifest[manifest.index("zonda"):]
        items = manifest
    elif isinstance(manifest, dict):
        items = manifest.values()
    else:
        return []
    for item in items:
        found = _command_in(item)
        if found:
            return found
    return []


def test_train_on_cluster_stages_the_inputs_and_returns_the_jobs_model(tmp_path, monkeypatch):
    """The train task of a multi-node run: inputs copied onto the shared volume, `zonda train` run by the
    job there, and the job's model directory copied to the task's output."""
    # the inputs below are manifests only (no data to verify): what is tested is their staging
    monkeypatch.setattr(stage_cache, "_verify_upstream", lambda stage, directory: None)
    monkeypatch.setattr(tracking, "check_reachable", lambda params: None)  # the cluster's MLflow is not here
    params = load_params(REPO / "params" / "graphcast.yaml", [f"runtime.output_root={tmp_path / 'pvc'}"])
    assert params.training.num_nodes > 1 and pipeline_task_launch(params) == "cluster"
    inputs, manifests = {}, {}
    for name, id_field in (("snapshot", "snapshot_id"), ("statistics", "statistics_hash"), ("graph", "graph_hash")):
        inputs[name] = tmp_path / name
        inputs[name].mkdir()
        manifests[name] = {"kind": name, id_field: f"sha256:{name}"}
        (inputs[name] / "manifest.json").write_text(json.dumps(manifests[name]))
    launched = []

    def fake_launch(manifest, timeout_s):  # the job: writes its model where --out points
        command = _command_in(manifest)
        launched.append(command)
        argument = dict(zip(command[2::2], command[3::2]))
        for name in inputs:  # it reads the staged copies on the shared volume, not the task's inputs
            staged = Path(argument[f"--{name}"])
            assert staged.is_relative_to(tmp_path / "pvc") and json.loads((staged / "manifest.json").read_text()) == manifests[name]
        out = Path(argument["--out"])
        out.mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"model_id": "sha256:abc"}))
        (out / "weights.safetensors").write_bytes(b"w")

    monkeypatch.setattr(launch, "run_training_job", fake_launch)
    manifest = train_stage(params, inputs["snapshot"], inputs["statistics"], inputs["graph"], tmp_path / "model",
                           launch="cluster", mlflow_run_id="run123")
    (command,) = launched
    assert command[:2] == ["zonda", "train"] and "--mlflow-run-id" in command and command[-1] == "-q"
    assert manifest["model_id"] == "sha256:abc" and len(manifest["stage_key"]) == 64  # indexed for reuse
    assert (tmp_path / "model" / "weights.safetensors").read_bytes() == b"w"
