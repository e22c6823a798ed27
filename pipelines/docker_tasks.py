"""A KFP ``DockerRunner`` task's real exit status: a task container that fails fails the run.

KFP 2.17's ``kfp.local.docker_task_handler.run_docker_container`` starts every task container with
``auto_remove=True`` and, when the container is gone before its exit status is read (a task that
fails fast: a PermissionError, an import error), returns 0, so the task is reported as SUCCESS and
the run fails later, far from the cause ("The task has multiple outputs"), or not at all.

:func:`true_exit_status` replaces that function, for the duration of a run, with
:func:`run_task_container`, which keeps the container until its exit status is read and then removes
it: ``DockerTaskHandler`` then returns FAILURE for a non-zero status and ``kfp.local`` (with
``raise_on_error=True``) stops the run naming the task. KFP picks its task handler by the runner's
exact type, so a subclass of ``DockerRunner`` cannot carry its own handler; this module attribute is
the one place the handler calls out.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from kfp.local import docker_task_handler


def run_task_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **container_run_args: Any
) -> int:
    """Runs one task container, streams its log, returns its exit status (the container is removed after).

    Same contract as ``kfp.local.docker_task_handler.run_docker_container`` (KFP 2.17), except that the
    status is the container's: never 0 for a container whose status could not be read.
    """
    import docker  # container runs only

    image = docker_task_handler.add_latest_tag_if_not_present(image=image)
    if not any(image in (found.tags + found.attrs.get("RepoDigests", [])) for found in client.images.list()):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    container_run_args.pop("auto_remove", None)
    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes, auto_remove=False,
        **container_run_args,
    )
    try:
        for line in container.logs(stream=True):
            print(line.decode(), end="")
        status = container.wait()["StatusCode"]
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    if status != 0:
        print(f"the task container ({image}) exited with status {status}")
    return status


@contextlib.contextmanager
def true_exit_status() -> Iterator[None]:
    """While inside, KFP's DockerRunner tasks report their container's real exit status."""
    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_task_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original
