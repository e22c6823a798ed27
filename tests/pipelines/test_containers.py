"""pipelines/containers.py: the checks before a DockerRunner run, and the runner's mounts and user.

The write probe is the shell script that runs in each image; here it runs on this machine under
another uid (``setpriv``, as root) or against a read-only directory (as any other user), through a
stand-in for the Docker client that executes a container's entrypoint locally as its user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pipelines import containers
from pipelines.containers import ContainerRunError, check_writable, docker_runner
from pipelines.run import resolved_for_run, run_local
from tests.support.repo import REPO
from zonda.params import load_params

IMAGE_USER = "65534:65534"  # nobody: stands in for the image's uid 10001 (root cannot be denied a write)
AS_ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")


class _Container:
    def __init__(self, result: subprocess.CompletedProcess):
        self.result = result
        self.removed = False

    def wait(self) -> dict:
        return {"StatusCode": self.result.returncode}

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return self.result.stdout.encode()

    def remove(self, force: bool = False) -> None:
        self.removed = True


class _Image:
    def __init__(self, user: str):
        self.attrs = {"Config": {"User": user}}


class LocalEngine:
    """The slice of docker.DockerClient the checks use; a container's entrypoint runs here, as its user."""

    def __init__(self, image_user: str):
        self.image_user = image_user
        self.started: list[dict] = []
        self.images = self
        self.containers = self

    def get(self, image: str) -> _Image:
        return _Image(self.image_user)

    def run(self, image: str, *, entrypoint: list[str], user: str, volumes: dict, detach: bool) -> _Container:
        self.started.append({"image": image, "user": user, "volumes": volumes})
        uid, _, gid = user.partition(":")
        prefix = [SETPRIV, f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"] if AS_ROOT else []
        container = _Container(subprocess.run(prefix + entrypoint, capture_output=True, text=True))
        self.last = container
        return container


def _unwritable_root(scratch: Path) -> Path:
    """A directory the probe's user cannot write: root-owned 0755 (as root) or read-only (otherwise)."""
    root = scratch / "out"
    root.mkdir()
    if not AS_ROOT:
        root.chmod(0o555)
    return root


@pytest.fixture
def scratch() -> Path:
    """A fresh directory every uid can reach (pytest's own lie under a 0700 directory of the caller)."""
    path = Path(tempfile.mkdtemp(prefix="zonda-probe-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


@pytest.fixture
def engine() -> LocalEngine:
    if AS_ROOT and SETPRIV is None:
        pytest.skip("setpriv (util-linux) is needed to run the probe as another user")
    return LocalEngine(IMAGE_USER if AS_ROOT else f"{os.getuid()}:{os.getgid()}")


def test_probe_refuses_a_root_the_task_user_cannot_write(engine, scratch):
    root = _unwritable_root(scratch)
    with pytest.raises(ContainerRunError) as err:
        check_writable(engine, "zonda/zonda-data:t", root=root, pipeline_root=root / "kfp", user=engine.image_user,
                       field="runtime.images.data")
    message = str(err.value)
    assert "runtime.images.data=zonda/zonda-data:t" in message
    assert f"run as user {engine.image_user}" in message and f"cannot write {root} (owner uid" in message
    assert f"chown -R {engine.image_user.split(':')[0]} {root}" in message and "--container-user host" in message
    assert engine.last.removed  # the probe container does not outlive the check
    assert list(root.iterdir()) == []


@pytest.mark.skipif(not AS_ROOT, reason="a file only another user owns needs root to create")
def test_probe_names_files_under_the_root_the_task_user_cannot_write(engine, scratch):
    root = scratch / "out"
    (root / "kfp").mkdir(parents=True)
    (root / "mlflow.db").write_text("")  # left by a venv run as root
    uid, gid = (int(x) for x in IMAGE_USER.split(":"))
    os.chown(root, uid, gid)
    os.chown(root / "kfp", uid, gid)
    with pytest.raises(ContainerRunError, match=rf"cannot write {root}/mlflow\.db under {root}"):
        check_writable(engine, "img", root=root, pipeline_root=root / "kfp", user=IMAGE_USER, field="runtime.images.train")
    os.chown(root / "mlflow.db", uid, gid)
    check_writable(engine, "img", root=root, pipeline_root=root / "kfp", user=IMAGE_USER, field="runtime.images.train")


def test_probe_accepts_a_root_the_task_user_owns(engine, scratch):
    root = scratch / "out"
    root.mkdir()
    if AS_ROOT:
        uid, gid = (int(x) for x in IMAGE_USER.split(":"))
        os.chown(root, uid, gid)
    check_writable(engine, "img", root=root, pipeline_root=root / "kfp", user=engine.image_user, field="runtime.images.data")
    assert engine.started[0]["volumes"] == {str(root): {"bind": str(root), "mode": "rw"}}
    # the task user made the pipeline root, so the tasks can write their outputs there
    assert (root / "kfp").is_dir() and (root / "kfp").stat().st_uid == int(engine.image_user.split(":")[0])


def _ci_params(root: Path):
    params = load_params(REPO / "params" / "ci.yaml", [f"runtime.output_root={root}",
                                                        "runtime.images.data=zonda/zonda-data:t",
                                                        "runtime.images.train=zonda/zonda-train:t"])
    return resolved_for_run(params, local=True)


def test_run_local_stops_before_any_task_when_the_image_user_cannot_write(engine, scratch, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = _unwritable_root(scratch)
    monkeypatch.setattr(containers, "docker_client", lambda: engine)
    with pytest.raises(ContainerRunError, match="runtime.images.data=zonda/zonda-data:t"):
        run_local(_ci_params(root), runner="docker")
    # the check ran for the first image and nothing else started: no pipeline root, no MLflow store
    assert [c["image"] for c in engine.started] == ["zonda/zonda-data:t"]
    assert list(root.iterdir()) == []


def test_docker_runner_mounts_the_output_root_and_runs_as_the_image_user(scratch, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    runner = docker_runner(_ci_params(scratch), user="image")
    args = runner.container_run_args
    mount = args["mounts"][0]
    assert (mount["Source"], mount["Target"], mount["Type"]) == (str(scratch), str(scratch), "bind")
    assert "user" not in args  # the image's USER, as on the cluster
    assert args["environment"] == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}


def test_docker_runner_as_the_host_user_gets_a_writable_home(scratch, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = docker_runner(_ci_params(scratch), user="host").container_run_args
    assert args["user"] == f"{os.getuid()}:{os.getgid()}"
    assert args["environment"] == {"HOME": "/tmp"}


def test_no_engine_is_a_clear_error(monkeypatch, scratch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{scratch}/none.sock")
    with pytest.raises(ContainerRunError, match=rf"no Docker API answers at unix://{scratch}/none.sock.*podman.sh service"):
        containers.docker_client()


def test_docker_runner_mounts_a_local_dvc_remote_and_source_outside_the_output_root(scratch, tmp_path):
    """The snapshot task pushes to runtime.dvc_remote and reads data.source.path: local ones outside the output
    root are mounted at their own paths (the remote writable, the source read-only); URLs are not mounted."""
    source = tmp_path / "era5.zarr"
    source.mkdir()
    params = load_params(REPO / "params" / "ci.yaml", [
        f"runtime.output_root={scratch / 'out'}", f"runtime.dvc_remote={scratch / 'remote'}",
        "data.source.kind=zarr", f"data.source.path={source}",
    ])
    assert containers.bind_mounts(params) == {
        "runtime.output_root": (scratch / "out", "rw"),
        "runtime.dvc_remote": (scratch / "remote", "rw"),
        "data.source.path": (source, "ro"),
    }
    mounts = {m["Source"]: m for m in docker_runner(params, user="image").container_run_args["mounts"]}
    assert set(mounts) == {str(scratch / "out"), str(scratch / "remote"), str(source)}
    assert all(m["Target"] == m["Source"] for m in mounts.values())
    assert mounts[str(source)]["ReadOnly"] and not mounts[str(scratch / "remote")]["ReadOnly"]
    inside = load_params(REPO / "params" / "ci.yaml", [
        f"runtime.output_root={scratch}", f"runtime.dvc_remote={scratch / 'remote'}", "data.source.kind=zarr",
        "data.source.path=gs://weatherbench2/datasets/era5.zarr",
    ])
    assert containers.bind_mounts(inside) == {"runtime.output_root": (scratch, "rw")}


@pytest.mark.skipif(not AS_ROOT, reason="a directory the task user cannot write needs root to make here")
def test_preflight_refuses_a_dvc_remote_the_task_user_cannot_write(engine, scratch, monkeypatch):
    out, remote = scratch / "out", scratch / "remote"
    out.mkdir()
    remote.mkdir()  # root-owned 0755: uid 65534 cannot push there
    uid, gid = (int(x) for x in IMAGE_USER.split(":"))
    os.chown(out, uid, gid)
    monkeypatch.setattr(containers, "docker_client", lambda: engine)
    params = load_params(REPO / "params" / "ci.yaml", [
        f"runtime.output_root={out}", f"runtime.dvc_remote={remote}",
        "runtime.images.data=zonda/zonda-data:t", "runtime.images.train=zonda/zonda-train:t",
    ])
    with pytest.raises(ContainerRunError, match=rf"cannot write {remote} \(owner uid 0.*Give that uid runtime.dvc_remote"):
        containers.preflight(params, pipeline_root=out / "kfp", user="image")
    os.chown(remote, uid, gid)
    containers.preflight(params, pipeline_root=out / "kfp", user="image")


@pytest.mark.skipif(not AS_ROOT, reason="only root can give files to another user")
def test_the_mlflow_store_this_process_made_is_handed_to_the_task_user(engine, scratch, monkeypatch):
    """The pipeline's MLflow run is opened here (as root) before the tasks start; every task then logs into
    that sqlite store as the image's user, so the store must become that user's (else: a read-only database)."""
    out = scratch / "out"
    (out / "kfp").mkdir(parents=True)
    uid, gid = (int(x) for x in IMAGE_USER.split(":"))
    os.chown(out, uid, gid)
    os.chown(out / "kfp", uid, gid)
    (out / "mlflow.db").write_text("")  # made by this process after the preflight
    (out / "mlartifacts").mkdir()
    monkeypatch.setattr(containers, "docker_client", lambda: engine)
    params = load_params(REPO / "params" / "ci.yaml", [f"runtime.output_root={out}", "runtime.images.data=zonda/zonda-data:t"])
    assert containers.hand_over(params, user="host") == []
    assert (out / "mlflow.db").stat().st_uid == 0
    assert sorted(containers.hand_over(params, user="image")) == [out / "mlartifacts", out / "mlflow.db"]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in out.rglob("*")} == {(uid, gid)}
