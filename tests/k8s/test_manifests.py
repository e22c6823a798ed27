"""TrainJob / PyTorchJob manifests generated from the params presets, checked against the published CRDs."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.repo import REPO
from zonda.k8s import (
    check_job_name,
    distributed_job_manifest,
    job_name_for,
    procs_per_node,
    pytorchjob_manifest,
    trainjob_manifest,
)
from zonda.k8s.__main__ import main as k8s_main
from zonda.k8s.trainjob import MAX_JOB_NAME_LENGTH
from zonda.k8s.validate import ManifestError, validate_manifest
from zonda.params import load_params

COMMAND = ["zonda", "train", "--params", "/data/params.yaml"]


@pytest.fixture(scope="module")
def aifs():
    # aifs.yaml trains on one 4-GPU node; the same preset scaled out to 2 nodes exercises the TrainJob.
    return load_params(REPO / "params" / "aifs.yaml", ["training.num_nodes=2"])


@pytest.fixture(scope="module")
def graphcast():
    return load_params(REPO / "params" / "graphcast.yaml")


def _node_pod(trainjob: dict) -> dict:
    """The pod template zonda patches into the runtime's 'node' job."""
    (patch,) = trainjob["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]


def _env(items: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in items}


# ------------------------------------------------------------------------- TrainJob


def test_aifs_trainjob_is_valid_and_carries_the_train_resources(aifs):
    job = trainjob_manifest(aifs, job_name="aifs-train-1", command=COMMAND, env={"ZONDA_RUN_ID": "r1"})
    validate_manifest(job)  # strict against the vendored Trainer CRD

    assert job["metadata"]["namespace"] == "zonda"
    assert job["spec"]["runtimeRef"]["name"] == "zonda-torch-distributed"
    assert job["spec"]["activeDeadlineSeconds"] == 24 * 60 * 60
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == "ghcr.io/zonda-weather/zonda-train:latest"
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["command"] == ["torchrun", "--no-python", *COMMAND]
    res = trainer["resourcesPerNode"]
    assert res["limits"]["nvidia.com/gpu"] == "4" and res["requests"]["nvidia.com/gpu"] == "4"
    assert res["requests"]["cpu"] == "32" and res["limits"]["memory"] == "400Gi"

    env = _env(trainer["env"])
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.zonda.svc:5000"
    assert env["ZONDA_RUN_ID"]["value"] == "r1"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "zonda-mlflow", "key": "MLFLOW_TRACKING_PASSWORD",
    }

    pod = _node_pod(job)
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "zonda-data"}
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "node"
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/data"}]
    assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "zonda"


def test_trainjob_without_scheduling_constraints_is_minimal_and_valid():
    params = load_params(REPO / "params" / "ci.yaml", ["training.num_nodes=2"])
    job = trainjob_manifest(params, job_name="ci-train", command=COMMAND, env={})
    validate_manifest(job)
    assert "resourcesPerNode" not in job["spec"]["trainer"]
    assert job["spec"]["trainer"]["numProcPerNode"] == 1  # CPU run: one process per node
    assert "spec" not in _node_pod(job)  # nothing to patch beyond labels


def test_strict_validation_catches_fields_the_api_server_would_drop(aifs):
    job = trainjob_manifest(aifs, job_name="aifs-train-1", command=COMMAND, env={})
    bad = copy.deepcopy(job)
    bad["spec"]["podTemplateOverrides"] = []  # the API field removed in Trainer 2.2
    with pytest.raises(ManifestError, match="podTemplateOverrides"):
        validate_manifest(bad)
    bad = copy.deepcopy(job)
    _node_pod(bad)["spec"]["nodeselector"] = {"a": "b"}  # misspelt: pods would land anywhere
    with pytest.raises(ManifestError, match="nodeselector"):
        validate_manifest(bad)
    bad = copy.deepcopy(job)
    bad["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(ManifestError, match="numNodes"):
        validate_manifest(bad)


# ----------------------------------------------------------------------- PyTorchJob


def test_graphcast_pytorchjob_is_valid_with_master_and_workers(graphcast):
    job = distributed_job_manifest(graphcast, job_name="gc-train-1", command=COMMAND, env={})
    assert job["kind"] == "PyTorchJob"
    validate_manifest(job)

    spec = job["spec"]
    assert spec["nprocPerNode"] == "8"
    assert spec["runPolicy"]["activeDeadlineSeconds"] == 24 * 60 * 60
    assert spec["runPolicy"]["cleanPodPolicy"] == "None"  # pods stay for the launcher to read logs
    master, worker = spec["pytorchReplicaSpecs"]["Master"], spec["pytorchReplicaSpecs"]["Worker"]
    assert master["replicas"] == 1 and worker["replicas"] == 3  # num_nodes: 4
    for replica in (master, worker):
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"
        assert container["command"][:2] == ["torchrun", "--no-python"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/data", "/dev/shm"} <= mounts
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert master["template"] is not worker["template"]  # no YAML anchors in the dump
    assert "&id" not in yaml.safe_dump(job)


def test_single_node_pytorchjob_has_no_workers(graphcast):
    params = graphcast.model_copy(deep=True)
    params.training.num_nodes = 1
    job = pytorchjob_manifest(params, job_name="gc-one", command=COMMAND)
    validate_manifest(job)
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}


def test_dispatch_follows_runtime_distributed_kind(aifs, graphcast):
    assert distributed_job_manifest(aifs, job_name="a-1", command=COMMAND)["kind"] == "TrainJob"
    assert distributed_job_manifest(graphcast, job_name="g-1", command=COMMAND)["kind"] == "PyTorchJob"


# --------------------------------------------------------------------------- errors


def test_devices_must_match_gpus_per_node():
    params = load_params(REPO / "params" / "aifs.yaml", ["training.devices=8"])
    with pytest.raises(ValueError, match=r"training.devices=8 but runtime.resources.train.accelerator_count=4"):
        trainjob_manifest(params, job_name="x-1", command=COMMAND)


def test_gpu_training_without_gpu_resources_is_refused():
    params = load_params(
        REPO / "params" / "aifs.yaml",
        ["runtime.resources.train.accelerator_count=0", "runtime.resources.train.accelerator_type=null"],
    )
    with pytest.raises(ValueError, match="requests no accelerator"):
        procs_per_node(params)


def test_request_above_limit_is_refused_with_the_field_name():
    params = load_params(REPO / "params" / "aifs.yaml", ["runtime.resources.train.memory_request=500Gi"])
    with pytest.raises(ValueError, match=r"memory_request \(500Gi\) is larger than memory_limit \(400Gi\)"):
        trainjob_manifest(params, job_name="x-1", command=COMMAND)


def test_env_name_given_twice_is_refused(aifs):
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_PASSWORD is set twice"):
        trainjob_manifest(aifs, job_name="x-1", command=COMMAND, env={"MLFLOW_TRACKING_PASSWORD": "x"})


def test_explicit_env_overrides_the_params_tracking_uri(aifs):
    job = trainjob_manifest(aifs, job_name="x-1", command=COMMAND, env={"MLFLOW_TRACKING_URI": "http://other:5000"})
    uris = [e for e in job["spec"]["trainer"]["env"] if e["name"] == "MLFLOW_TRACKING_URI"]
    assert uris == [{"name": "MLFLOW_TRACKING_URI", "value": "http://other:5000"}]


def test_empty_command_is_refused(aifs):
    with pytest.raises(ValueError, match="command is empty"):
        trainjob_manifest(aifs, job_name="x-1", command=[])


@pytest.mark.parametrize("name", ["Aifs", "1-aifs", "aifs_train", "aifs-", "a" * (MAX_JOB_NAME_LENGTH + 1)])
def test_bad_job_names_are_refused(name):
    with pytest.raises(ValueError, match="job name"):
        check_job_name(name)


def test_job_name_for_is_valid_deterministic_and_unique():
    a = job_name_for("Zonda AIFS/train " * 5, "run-123")
    assert a == job_name_for("Zonda AIFS/train " * 5, "run-123")
    assert a != job_name_for("Zonda AIFS/train " * 5, "run-124")
    assert check_job_name(a) == a and len(a) <= MAX_JOB_NAME_LENGTH
    assert check_job_name(job_name_for("42", "x")).startswith("z-42-")


# ------------------------------------------------------------------------------ CLI


def test_render_cli_prints_a_valid_manifest(capsys):
    rc = k8s_main(["render", "--params", str(REPO / "params/aifs.yaml"), "--job-name", "aifs-cli",
                   "--set", "training.num_nodes=3", "--env", "A=1", "--", *COMMAND])
    assert rc == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    validate_manifest(manifest)
    assert manifest["spec"]["trainer"]["numNodes"] == 3
    assert manifest["spec"]["trainer"]["command"][-4:] == COMMAND


def test_render_cli_reports_bad_params_without_a_traceback(capsys):
    rc = k8s_main(["render", "--params", str(REPO / "params/aifs.yaml"), "--job-name", "x-1",
                   "--set", "training.devices=3", "--", *COMMAND])
    assert rc == 2
    assert "training.devices=3" in capsys.readouterr().err


def test_validate_cli_fails_on_an_invalid_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                   "spec": {"ports": [{"port": "http"}]}}))
    assert k8s_main(["validate", str(bad)]) == 1
    assert "Service s" in capsys.readouterr().err
