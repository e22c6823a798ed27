"""pipelines/docker_tasks.py: a DockerRunner task whose container exits non-zero fails the run.

KFP's local runner runs a one-task pipeline here against a stand-in for the Docker client that
behaves like a real engine with a container that fails fast: an auto-removed container is gone
before its exit status can be read (docker-py raises NotFound), a kept one reports its status.
"""

# No `from __future__ import annotations`: KFP reads the component's return annotation as a type.
import docker
import pytest
from kfp import dsl, local

from pipelines.docker_tasks import true_exit_status

IMAGE = "zonda/zonda-data:t"


class _Container:
    def __init__(self, engine, *, status: int, auto_remove: bool):
        self.engine, self.status, self.auto_remove = engine, status, auto_remove

    def logs(self, stream: bool = False):
        return iter([b"PermissionError: [Errno 13] Permission denied: '/out/kfp'\n"] if self.status else [b"done\n"])

    def wait(self) -> dict:
        if self.auto_remove:  # the container exited and was removed while its log was read
            raise docker.errors.NotFound("no such container")
        return {"StatusCode": self.status}

    def remove(self, force: bool = False) -> None:
        self.engine.removed += 1


class _Image:
    tags = [IMAGE]
    attrs = {"RepoDigests": []}


class FastExitEngine:
    """The slice of docker.DockerClient that KFP's DockerTaskHandler uses; every container exits ``status``."""

    def __init__(self, status: int):
        self.status = status
        self.started: list[dict] = []
        self.removed = 0
        self.images = self
        self.containers = self

    def info(self) -> dict:
        return {}

    def list(self) -> list[_Image]:
        return [_Image()]

    def run(self, **kwargs) -> _Container:
        self.started.append(kwargs)
        return _Container(self, status=self.status, auto_remove=kwargs["auto_remove"])

    def close(self) -> None:
        pass


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def write_outputs():
    pass


@dsl.pipeline
def one_task():
    write_outputs()


def _engine(monkeypatch, tmp_path, status: int) -> FastExitEngine:
    engine = FastExitEngine(status)
    monkeypatch.setattr(docker, "from_env", lambda **_: engine)
    local.init(runner=local.DockerRunner(), pipeline_root=str(tmp_path), raise_on_error=True)
    return engine


def test_a_task_container_that_exits_non_zero_fails_the_run(monkeypatch, tmp_path, capsys):
    engine = _engine(monkeypatch, tmp_path, status=1)
    with true_exit_status(), pytest.raises(RuntimeError, match=r"FAILURE.*Inner task failed: .*'write-outputs'"):
        one_task()
    assert [run["auto_remove"] for run in engine.started] == [False]  # kept until its status is read
    assert engine.removed == 1  # then removed
    assert f"the task container ({IMAGE}) exited with status 1" in capsys.readouterr().out


def test_kfp_alone_reports_the_same_failed_container_as_success(monkeypatch, tmp_path, capsys):
    """What true_exit_status is for (KFP 2.17): once KFP reads exit statuses itself, drop the module."""
    engine = _engine(monkeypatch, tmp_path, status=1)
    one_task()  # no error: the run goes on as if the task had written its outputs
    assert engine.started[0]["auto_remove"] is True
    assert "finished with status \x1b[92mSUCCESS" in capsys.readouterr().out


def test_a_task_container_that_exits_zero_succeeds_and_is_removed(monkeypatch, tmp_path, capsys):
    engine = _engine(monkeypatch, tmp_path, status=0)
    with true_exit_status():
        one_task()
    assert [run["auto_remove"] for run in engine.started] == [False] and engine.removed == 1
    out = capsys.readouterr().out
    assert "done" in out and "finished with status \x1b[92mSUCCESS" in out and "exited with status" not in out


def test_the_original_function_is_back_after_the_run():
    from kfp.local import docker_task_handler

    before = docker_task_handler.run_docker_container
    with pytest.raises(ValueError), true_exit_status():
        assert docker_task_handler.run_docker_container is not before
        raise ValueError
    assert docker_task_handler.run_docker_container is before
