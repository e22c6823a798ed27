"""Per-stage resources in the compiled KFP IR: requests, GPUs, scheduling, volumes, Secrets, retries, caching."""

# No `from __future__ import annotations`: KFP reads the component's annotations as real types.
import os
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from pipelines.resources import LAUNCHER_CPU_REQUEST, apply_stage_resources, task_resources
from tests.support.repo import REPO
from zonda.params import StageResources, load_params

PYTHON_IMAGE = "python:3.11-slim"

FULL = StageResources.model_validate(
    {
        "cpu_request": "8",
        "cpu_limit": "16",
        "memory_request": "32Gi",
        "memory_limit": "64Gi",
        "accelerator_type": "nvidia.com/gpu",
        "accelerator_count": 4,
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "pvc_mounts": [{"pvc_name": "zonda-data", "mount_path": "/data"}],
        "secrets_as_env": [
            {"secret_name": "zonda-mlflow", "keys": {"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME"}}
        ],
        "retries": 2,
        "caching": False,
    }
)


@dsl.component(base_image=PYTHON_IMAGE, install_kfp_package=False)
def shout(text: str) -> str:
    return text.upper() + "!"


def tiny_pipeline(resources: StageResources | None, image: str | None = None):
    @dsl.pipeline(name="tiny")
    def pipeline(text: str = "zonda") -> str:
        task = shout(text=text).set_display_name("train")
        if resources is not None:
            apply_stage_resources(task, resources, image=image, stage="train")
        return task.output

    return pipeline


def compile_ir(pipeline, path: Path) -> tuple[dict, dict]:
    """(pipeline spec, kubernetes platform deploymentSpec executors) of the compiled package."""
    compiler.Compiler().compile(pipeline, package_path=str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    platform = docs[1] if len(docs) > 1 else {}
    executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    return docs[0], executors


def task_ir(spec: dict, platform_executors: dict, display_name: str) -> dict | None:
    """The task spec, container and platform config of the task shown as ``display_name`` (in the root DAG
    or a nested one, e.g. the exit handler's), or None."""
    dags = [spec["root"]["dag"]]
    while dags:
        for key, task in dags.pop()["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                dags.append(component["dag"])
            elif display_name in (key, task.get("taskInfo", {}).get("name")):
                label = component["executorLabel"]
                return {
                    "task": task,
                    "container": spec["deploymentSpec"]["executors"][label]["container"],
                    "platform": platform_executors.get(label, {}),
                }
    return None


def assert_ir_matches(ir: dict, res: StageResources, where: str) -> None:
    """Everything ``res`` sets is in the task's IR, and nothing it leaves unset."""
    resources = ir["container"].get("resources", {})
    for field, ir_key in (
        ("cpu_request", "resourceCpuRequest"), ("cpu_limit", "resourceCpuLimit"),
        ("memory_request", "resourceMemoryRequest"), ("memory_limit", "resourceMemoryLimit"),
    ):
        assert resources.get(ir_key) == getattr(res, field), f"{where}: {field}"
    if res.accelerator_count:
        accel = resources["accelerator"]
        assert (accel["resourceType"], accel["resourceCount"]) == (res.accelerator_type, str(res.accelerator_count)), where
    else:
        assert "accelerator" not in resources, f"{where}: unexpected accelerator {resources.get('accelerator')}"
    platform = ir["platform"]
    assert platform.get("nodeSelector", {}).get("labels", {}) == res.node_selector, f"{where}: node selector"
    assert platform.get("tolerations", []) == [t.model_dump(exclude_none=True) for t in res.tolerations], where
    assert [(m["constant"], m["mountPath"]) for m in platform.get("pvcMount", [])] == [
        (m.pvc_name, m.mount_path) for m in res.pvc_mounts
    ], f"{where}: PVC mounts"
    assert [
        (s["secretName"], {k["secretKey"]: k["envVar"] for k in s["keyToEnv"]}) for s in platform.get("secretAsEnv", [])
    ] == [(s.secret_name, s.keys) for s in res.secrets_as_env], f"{where}: Secrets as env"
    task = ir["task"]
    assert task.get("cachingOptions", {}).get("enableCache", False) is res.caching, f"{where}: caching"
    assert task.get("retryPolicy", {}).get("maxRetryCount", 0) == res.retries, f"{where}: retries"


def test_every_setting_lands_in_the_ir(tmp_path: Path) -> None:
    spec, executors = compile_ir(tiny_pipeline(FULL, image="ghcr.io/zonda-weather/zonda-train:abc"), tmp_path / "p.yaml")
    ir = task_ir(spec, executors, "train")
    assert_ir_matches(ir, FULL, "tiny/train")
    # The literal values a cluster sees, not only what assert_ir_matches derives.
    assert ir["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert ir["container"]["resources"]["accelerator"]["resourceCount"] == "4"
    assert ir["container"]["image"] == "ghcr.io/zonda-weather/zonda-train:abc"
    assert ir["platform"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert ir["platform"]["pvcMount"][0]["mountPath"] == "/data"
    assert ir["platform"]["secretAsEnv"][0]["secretName"] == "zonda-mlflow"
    assert ir["task"]["retryPolicy"]["maxRetryCount"] == 2


def test_default_resources_leave_the_ir_unchanged(tmp_path: Path) -> None:
    """Local runs with default params compile to exactly what they compiled to before."""
    compile_ir(tiny_pipeline(None), tmp_path / "plain.yaml")
    spec, executors = compile_ir(tiny_pipeline(StageResources()), tmp_path / "default.yaml")
    assert (tmp_path / "default.yaml").read_text() == (tmp_path / "plain.yaml").read_text()
    assert executors == {}
    assert "resources" not in task_ir(spec, executors, "train")["container"]


@pytest.mark.parametrize(
    "field, value",
    [("memory_request", "1.5Gi"), ("cpu_limit", "2k")],
)
def test_quantity_kfp_cannot_express_is_rejected_by_the_params_schema(field: str, value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        StageResources.model_validate({field: value})  # fails at params load, long before compile


def test_cluster_resources_do_not_stop_a_local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The KFP local runner ignores GPUs, node selectors, PVCs and Secrets; the task still runs."""
    from kfp import local

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "settings [...] have no effect in the current local runner"
        outcome = tiny_pipeline(FULL)(text="storm")
    assert outcome.output == "STORM!"


# ------------------------------------------------------------------ the real pipeline


def real_ir(tmp_path: Path, *overrides: str) -> tuple[dict, dict]:
    from pipelines.zonda_pipeline import build_pipeline

    params = load_params(REPO / "params" / "aifs.yaml", list(overrides))
    spec, executors = compile_ir(build_pipeline(params), tmp_path / "zonda.yaml")
    if task_ir(spec, executors, "train") is None:
        pytest.skip("pipelines/zonda_pipeline.py has no train task yet; resources are checked on the tiny pipeline")
    return params, (spec, executors)


def test_multi_node_aifs_pipeline_carries_each_stages_resources(tmp_path: Path) -> None:
    params, (spec, executors) = real_ir(tmp_path, "training.num_nodes=2")
    found = []
    for stage in ("snapshot", "statistics", "graph", "train", "evaluate", "register", "mlflow-run"):
        ir = task_ir(spec, executors, stage)
        if ir is None:
            continue
        found.append(stage)
        assert_ir_matches(ir, task_resources(params, stage), f"aifs/{stage}")
    assert {"snapshot", "statistics", "graph", "train"} <= set(found), found

    # scaled out to 2 nodes, the KFP train task launches the TrainJob and holds no GPU node itself ...
    train = task_ir(spec, executors, "train")
    assert "accelerator" not in train["container"].get("resources", {})
    assert "nodeSelector" not in train["platform"] and "tolerations" not in train["platform"]
    assert train["container"]["resources"]["resourceCpuRequest"] == LAUNCHER_CPU_REQUEST
    # ... but mounts the data cache, logs in to MLflow, is retried once and never cached.
    assert [(m["constant"], m["mountPath"]) for m in train["platform"]["pvcMount"]] == [("zonda-data", "/data")]
    secret = train["platform"]["secretAsEnv"][0]
    assert secret["secretName"] == "zonda-mlflow"
    assert {k["envVar"] for k in secret["keyToEnv"]} == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert train["task"]["retryPolicy"]["maxRetryCount"] == 1
    assert "enableCache" not in train["task"].get("cachingOptions", {})
    snapshot = task_ir(spec, executors, "snapshot")
    assert snapshot["task"]["cachingOptions"]["enableCache"] is True
    assert snapshot["container"]["resources"]["resourceMemoryLimit"] == "64Gi"


def test_single_node_aifs_trains_on_the_gpu_pool(tmp_path: Path) -> None:
    """aifs.yaml as shipped (one node): training runs in the KFP train pod, 4 H100s, the GPU pool's selector and taint."""
    _, (spec, executors) = real_ir(tmp_path)
    train = task_ir(spec, executors, "train")
    accel = train["container"]["resources"]["accelerator"]
    assert (accel["resourceType"], accel["resourceCount"]) == ("nvidia.com/gpu", "4")
    assert train["platform"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert train["platform"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert train["container"]["resources"]["resourceMemoryRequest"] == "200Gi"
    assert [(m["constant"], m["mountPath"]) for m in train["platform"]["pvcMount"]] == [("zonda-data", "/data")]


def test_task_resources_for_the_presets() -> None:
    multi_node = load_params(REPO / "params" / "graphcast.yaml")
    launcher = task_resources(multi_node, "train")  # 4 nodes: the KFP task only launches the TrainJob
    assert launcher.accelerator_count == 0 and not launcher.node_selector and not launcher.tolerations
    assert launcher.caching is False
    params = load_params(REPO / "params" / "aifs.yaml")
    single = task_resources(params, "train")  # one 4-GPU node: training runs in the KFP task itself
    assert single.accelerator_count == 4 and single.node_selector and single.tolerations
    assert single.retries == 1 and single.caching is False
    mlflow = task_resources(params, "mlflow-run")
    assert [s.secret_name for s in mlflow.secrets_as_env] == ["zonda-mlflow"]  # one Secret, not one per stage
    assert mlflow.caching is False and mlflow.accelerator_count == 0 and not mlflow.pvc_mounts
    assert task_resources(params, "evaluate").accelerator_count == 1
    # register takes the model, its evaluation and the registry section: a cache hit means that same version exists
    cached = load_params(REPO / "params" / "aifs.yaml", ["runtime.resources.register.caching=true"])
    assert task_resources(cached, "register").caching is True
    with pytest.raises(ValueError, match="unknown pipeline task 'trian'"):
        task_resources(params, "trian")
