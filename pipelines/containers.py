"""Local runs with every task in its image: KFP's ``DockerRunner`` on a Docker API (docker or podman).

``python -m pipelines.run run --runner docker`` (``make run-pipeline RUNNER=docker``) runs each
task in ``runtime.images.<role>`` through ``kfp.local.DockerRunner``. DockerRunner mounts only the
pipeline root; the tasks also write the MLflow store, the snapshot cache and train-job files under
``runtime.output_root``, push snapshots to ``runtime.dvc_remote`` and read a local source, so
:func:`docker_runner` bind-mounts each of those local paths at its own path (:func:`bind_mounts`: the
params' absolute paths are valid on both sides): the output root and a DVC remote directory writable,
a local source (``data.source.path``, a dvc source's ``repo``) read-only.

Before any task starts, :func:`preflight` checks what would otherwise fail late or be misreported:
that the Docker API answers, that every image is on the engine (or can be pulled), and that the user
the tasks run as can write the output root and the DVC remote directory (the error names the uid, the
directory and the fix). A
task container that still fails stops the run at that task (:mod:`pipelines.docker_tasks`: KFP 2.17
alone can report a container that exits fast as SUCCESS).

The tasks run as the image's user (uid 10001, as on the cluster) unless ``user="host"``, which runs
them as the invoking uid:gid, so that the files they write belong to the caller.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from zonda.params import Params, env_references
from zonda.snapshot_store import resolve_remote
from zonda.tracking import PARENT_RUN_ENV

if TYPE_CHECKING:  # docker is imported only for container runs
    import docker

ContainerUser = Literal["image", "host"]
CONTAINER_USERS: tuple[str, ...] = ("image", "host")
# Runs in each image, as the task user, on the mounted output root ($1): makes the pipeline root ($2)
# as that user, then prints what under the output root it cannot write.
_WRITE_PROBE = (
    'cd "$1" && probe=".zonda-write-probe.$$" && : > "$probe" && rm -f "$probe" && mkdir -p "$2" '
    '&& find . ! -writable -print 2>/dev/null | head -n 5'
)
# Passed to every task: a user's tracking server overrides the sqlite store (as in the venv run); the
# pipeline's MLflow run, under which each stage's run nests.
PASSED_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", PARENT_RUN_ENV)


class ContainerRunError(RuntimeError):
    """A container run cannot start: names the engine, image (params field) or directory and the fix."""


def docker_client() -> "docker.DockerClient":
    """A client of the Docker API that ``DOCKER_HOST`` (or the default socket) names; fails clearly if none answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
        raise ContainerRunError(
            f"no Docker API answers at {where}: start Docker, or podman's Docker-compatible socket "
            f"(images/podman.sh service prints the DOCKER_HOST to export) ({exc})"
        ) from None
    return client


def task_images(params: Params) -> dict[str, str]:
    """``{params field: image}`` of every image the pipeline's tasks run in."""
    return {f"runtime.images.{role}": ref for role, ref in params.runtime.images.model_dump().items()}


def ensure_image(client: "docker.DockerClient", image: str, *, field: str) -> None:
    """Pulls ``image`` unless the engine has it; a clear error names ``field`` when neither works."""
    import docker

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise ContainerRunError(
            f"{field}={image} is not on this engine and cannot be pulled ({exc}); build it with `make images` "
            f"and pass the overrides it prints, e.g. {field}=zonda/zonda-data:<tag>"
        ) from None


def run_user(client: "docker.DockerClient", image: str, user: ContainerUser) -> str:
    """The user the tasks in ``image`` run as: the image's USER, or the invoking uid:gid."""
    if user == "host":
        return f"{os.getuid()}:{os.getgid()}"
    return client.images.get(image).attrs.get("Config", {}).get("User") or "0"


def _local_path(value: str | None) -> Path | None:
    """``value`` as an absolute local path, or None for a URL (s3://, gs://, ...) or no value."""
    if not value or "://" in value:
        return None
    return Path(value).expanduser().resolve()


def bind_mounts(params: Params) -> dict[str, tuple[Path, str]]:
    """``{params field: (local path, "rw" | "ro")}`` the tasks' containers need, each mounted at its own path.

    The output root and a local DVC remote are written; a local source file or directory (or a dvc
    source's local repository) is read. A path inside the output root needs no mount of its own.
    """
    root = Path(params.runtime.output_root)
    wanted = {"runtime.output_root": (root, "rw")}
    remote = _local_path(resolve_remote(params.runtime.dvc_remote)) if params.runtime.dvc_remote else None
    if remote is not None:
        wanted["runtime.dvc_remote"] = (remote, "rw")
    source = params.data.source
    read = _local_path(source.repo) if source.kind == "dvc" else _local_path(source.path)
    if read is not None:
        wanted["data.source.repo" if source.kind == "dvc" else "data.source.path"] = (read, "ro")
    return {
        field: (path, mode) for field, (path, mode) in wanted.items()
        if field == "runtime.output_root" or not path.is_relative_to(root)
    }


def check_writable(
    client: "docker.DockerClient", image: str, *, root: Path, pipeline_root: Path | None, user: str, field: str,
    root_field: str = "runtime.output_root",
) -> None:
    """Fails unless ``user`` in ``image`` can write ``root`` (``root_field``) and everything under it; makes
    ``pipeline_root`` (when given).

    The pipeline root (inside ``root``) is made by the task user, so that the tasks can write it.
    """
    made = str(pipeline_root) if pipeline_root is not None else str(root)
    container = client.containers.run(
        image, entrypoint=["sh", "-c", _WRITE_PROBE, "probe", str(root), made], user=user, detach=True,
        volumes={str(root): {"bind": str(root), "mode": "rw"}},
    )
    try:
        status = container.wait()["StatusCode"]
        unwritable = container.logs(stdout=True, stderr=False).decode().split()
    finally:
        container.remove(force=True)
    if status == 0 and not unwritable:
        return
    owner = root.stat()
    what = f"{root} (owner uid {owner.st_uid}, mode {owner.st_mode & 0o777:o})" if status else (
        f"{', '.join(str(root / p) for p in unwritable)} under {root}"
    )
    uid = user.split(":")[0]
    raise ContainerRunError(
        f"the tasks of {field}={image} run as user {user}, which cannot write {what}: every output of the "
        f"run would be lost. Give that uid {root_field}, e.g. `chown -R {uid} {root}`, "
        f"or run the tasks as yourself (--container-user host, make run-pipeline RUNNER=docker CONTAINER_USER=host)"
    )


def hand_over(params: Params, *, user: ContainerUser) -> list[Path]:
    """Gives the tasks' user what this (root) process made under the output root since :func:`preflight`
    (the pipeline's MLflow store: the tasks log into it); returns the paths handed over.

    Only root can give files away; any other caller runs the tasks as itself (``user="host"``) or
    made the output root the task user's, and nothing is done.
    """
    if user == "host" or os.geteuid() != 0:
        return []
    client = docker_client()
    uid, _, gid = run_user(client, params.runtime.images.data, user).partition(":")
    owner = (int(uid), int(gid or uid))
    root = Path(params.runtime.output_root)
    handed = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink() or path.stat().st_uid != 0:
            continue
        os.chown(path, *owner)
        handed.append(path)
    return handed


def preflight(params: Params, *, pipeline_root: Path, user: ContainerUser) -> "docker.DockerClient":
    """Every check a container run needs before its first task; makes ``pipeline_root``; returns the client."""
    root = Path(params.runtime.output_root)
    if not root.is_absolute():
        raise ValueError(f"runtime.output_root must be absolute for a container run, not {root}")
    mounts = bind_mounts(params)
    for path_field, (path, mode) in mounts.items():
        if mode == "rw":
            path.mkdir(parents=True, exist_ok=True)  # a bind mount needs its source
        elif not path.exists():
            raise FileNotFoundError(f"{path_field}: {path} does not exist")
    client = docker_client()
    for field, image in task_images(params).items():
        ensure_image(client, image, field=field)
        task_user = run_user(client, image, user)
        check_writable(client, image, root=root, pipeline_root=pipeline_root, user=task_user, field=field)
        if "runtime.dvc_remote" in mounts and field == "runtime.images.data":  # the snapshot task pushes
            check_writable(
                client, image, root=mounts["runtime.dvc_remote"][0], pipeline_root=None, user=task_user, field=field,
                root_field="runtime.dvc_remote",
            )
    return client


def docker_runner(params: Params, *, user: ContainerUser):
    """The ``kfp.local.DockerRunner`` for these params: :func:`bind_mounts` at their own paths, the task user set."""
    from docker.types import Mount
    from kfp import local

    mounts = [
        Mount(target=str(path), source=str(path), type="bind", read_only=mode == "ro")
        for path, mode in bind_mounts(params).values()
    ]
    args: dict = {"mounts": mounts, "network_mode": "host"}
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if os.environ.get(name)}
    # the variables ${env:NAME} references in the params name (credentials: never in a pipeline input)
    for name in env_references(params.resolved_dict()).values():
        if name in os.environ:
            environment[name] = os.environ[name]
    if user == "host":
        args["user"] = f"{os.getuid()}:{os.getgid()}"
        environment["HOME"] = "/tmp"  # the image's home belongs to its own user
    if environment:
        args["environment"] = environment
    return local.DockerRunner(**args)
