"""Kubernetes side of zonda: multi-node training manifests from params, a launcher, offline validation.

* :mod:`zonda.k8s.trainjob` — pure functions ``Params -> dict`` for a Kubeflow Trainer ``TrainJob`` or a
  training-operator ``PyTorchJob``;
* :mod:`zonda.k8s.launcher` — submit a job, watch its conditions, raise with the pods' logs on failure;
* :mod:`zonda.k8s.validate` — strict offline validation against the vendored CRDs and Kubernetes schemas.

:func:`zonda.launch.train_on_cluster` runs stage 4 through them; which ``runtime.resources`` settings
each pipeline task gets is decided in ``pipelines/resources.py``.

``python -m zonda.k8s render --params params/aifs.yaml --job-name NAME -- zonda train ...`` prints
the manifest the launcher would submit.
"""

from zonda.k8s.launcher import JobFailed, JobTimedOut, Launcher, LaunchError, launch
from zonda.k8s.trainjob import (
    check_job_name,
    distributed_job_manifest,
    job_name_for,
    procs_per_node,
    pytorchjob_manifest,
    trainjob_manifest,
)

__all__ = [
    "JobFailed",
    "JobTimedOut",
    "LaunchError",
    "Launcher",
    "check_job_name",
    "distributed_job_manifest",
    "job_name_for",
    "launch",
    "procs_per_node",
    "pytorchjob_manifest",
    "trainjob_manifest",
]
