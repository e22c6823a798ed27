"""Where stage 4 trains: in this process, in a ``zonda train`` child process, or as a Kubernetes training job.

:func:`zonda.stages.train_stage` runs one of the three functions of :data:`LAUNCHES`
(all ``inputs + out_dir -> manifest``, the training artifact's manifest):

* :func:`train_in_process` — :func:`zonda.training.train.train` here (``zonda train``, DVC, and the
  pipeline's train task when one process trains);
* :func:`train_in_child_process` — ``zonda train`` as a child process: Lightning's DDP starts one
  process per device by re-running the current command, which must therefore be ``zonda train``,
  not the KFP executor (the pipeline's train task with ``training.devices`` other than 1);
* :func:`train_on_cluster` — ``zonda train`` on ``training.num_nodes`` nodes as a Kubeflow Trainer
  TrainJob or a training-operator PyTorchJob (:mod:`zonda.k8s`), waited on.

:func:`pipeline_task_launch` says which one the pipeline's train task uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Literal

from zonda.files import atomic_dir, atomic_path
from zonda.k8s import distributed_job_manifest, job_name_for
from zonda.k8s import launch as run_training_job
from zonda.params import Params, write_resolved
from zonda.provenance import read_manifest

PathLike = str | os.PathLike[str]
Launch = Literal["in_process", "child_process", "cluster"]


def train_in_process(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains in this process (Lightning, which itself starts DDP processes when launched as ``zonda train``)."""
    from zonda.training.train import train  # Lightning boundary: importing zonda.stages does not load it

    return train(
        params, snapshot_dir, statistics_dir, graph_dir, out_dir, mlflow_run_id=mlflow_run_id, progress=progress,
        track=track,
    )


def train_in_child_process(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs ``python -m zonda.cli train`` on these inputs (the params passed as a resolved file) and waits."""
    with tempfile.TemporaryDirectory() as tmp:
        arguments = train_arguments(
            write_resolved(params, tmp), snapshot_dir, statistics_dir, graph_dir, out_dir,
            mlflow_run_id=mlflow_run_id, track=track, progress=progress,
        )
        subprocess.run([sys.executable, "-m", "zonda.cli", *arguments], check=True)
    return _training_manifest(out_dir, "zonda train finished")


def train_on_cluster(
    params: Params,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs ``zonda train`` as a Kubeflow TrainJob / PyTorchJob and waits; copies its model to ``out_dir``.

    The job's pods mount the data PVC, so the inputs are staged under
    ``runtime.output_root`` (which must lie on that PVC, e.g. ``/data/zonda``),
    the job trains into it, and the result is copied to ``out_dir``. A failed
    job raises with its pods' logs (``zonda.k8s.JobFailed``). The job's pods
    show no progress bars (``progress`` is not passed on).
    """
    job_name = job_name_for(f"{params.name}-train", mlflow_run_id or uuid.uuid4().hex)
    shared = Path(params.runtime.output_root) / "train-jobs" / job_name
    staged = {}
    for name, src in (("snapshot", snapshot_dir), ("statistics", statistics_dir), ("graph", graph_dir)):
        staged[name] = shared / name
        if not staged[name].exists():  # a retried task reuses what an earlier attempt staged completely
            with atomic_path(staged[name]) as tmp:
                shutil.copytree(src, tmp)
    arguments = train_arguments(
        write_resolved(params, shared), staged["snapshot"], staged["statistics"], staged["graph"], shared / "model",
        mlflow_run_id=mlflow_run_id, track=track, progress=False,
    )
    manifest = distributed_job_manifest(params, job_name=job_name, command=["zonda", *arguments])
    run_training_job(manifest, timeout_s=params.runtime.distributed.timeout_minutes * 60)
    trained = _training_manifest(shared / "model", "the training job finished")
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(shared / "model", tmp, dirs_exist_ok=True)
    return trained


#: The three ways to run stage 4, by the name :func:`zonda.stages.train_stage` takes.
LAUNCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "in_process": train_in_process,
    "child_process": train_in_child_process,
    "cluster": train_on_cluster,
}


def pipeline_task_launch(params: Params) -> Launch:
    """How the pipeline's train task trains: on the cluster with ``training.num_nodes > 1``; in a child
    process when Lightning starts several processes on this node (``training.devices`` other than 1); else here."""
    if params.training.num_nodes > 1:
        return "cluster"
    if params.training.devices != 1:
        return "child_process"
    return "in_process"


def train_arguments(
    params_file: PathLike,
    snapshot_dir: PathLike,
    statistics_dir: PathLike,
    graph_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None,
    track: bool,
    progress: bool,
) -> list[str]:
    """The ``zonda train ...`` arguments (after the program) for these inputs."""
    arguments = ["train", "--params", str(params_file), "--snapshot", str(snapshot_dir), "--statistics",
                 str(statistics_dir), "--graph", str(graph_dir), "--out", str(out_dir)]
    if mlflow_run_id:
        arguments += ["--mlflow-run-id", mlflow_run_id]
    if not track:
        arguments.append("--no-mlflow")
    return arguments + ([] if progress else ["-q"])


def _training_manifest(model_dir: PathLike, what: str) -> dict[str, Any]:
    """The training artifact's manifest, or RuntimeError saying ``what`` happened without one."""
    manifest = read_manifest(model_dir)
    if manifest is None:
        raise RuntimeError(f"{model_dir}: {what} but wrote no manifest.json")
    return manifest
