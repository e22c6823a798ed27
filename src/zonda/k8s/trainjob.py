"""Manifests for multi-node training, generated from :class:`~zonda.params.Params`.

Two launchers are supported (``runtime.distributed.kind``):

* ``trainjob`` — a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) that refers to
  the ``ClusterTrainingRuntime`` installed by ``charts/zonda`` (``runtime.distributed.runtime_ref``,
  default ``zonda-torch-distributed``). Per-job scheduling (node selector, tolerations, PVC volumes)
  goes into ``spec.runtimePatches``, the only place the Trainer API accepts it.
* ``pytorchjob`` — a training-operator v1 ``PyTorchJob`` (``kubeflow.org/v1``): one ``Master`` and
  ``num_nodes - 1`` ``Worker`` replicas.

In both, every node runs ``torchrun --no-python <command>``; the operator injects the ``PET_*``
variables (nnodes, nproc-per-node, node rank, master address and port) that torchrun reads, and
Lightning picks up the torchelastic environment. The functions are pure: they return plain dicts
ready for ``yaml.safe_dump`` or the Kubernetes API, and raise ``ValueError`` naming the params field
when the params describe a job the cluster could not run.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from zonda.params import Params, StageResources

TRAINJOB_API_VERSION = "trainer.kubeflow.org/v1alpha1"
PYTORCHJOB_API_VERSION = "kubeflow.org/v1"

#: Name of the replicated job *and* of its trainer container in the zonda ClusterTrainingRuntime
#: (charts/zonda/templates/trainingruntime.yaml). Kubeflow Trainer's torch plugin requires "node".
TRAINER_NODE = "node"
#: Container name the training operator looks for in PyTorchJob replicas.
PYTORCH_CONTAINER = "pytorch"
#: Owner of zonda's entry in TrainJob.spec.runtimePatches (one entry per manager).
PATCH_MANAGER = "zonda/launcher"
#: uid/gid of the non-root ``zonda`` user baked into images/data and images/train.
IMAGE_UID = 10001

#: JobSet derives pod hostnames ``<name>-node-<job>-<pod>`` that must stay a 63-character DNS label.
MAX_JOB_NAME_LENGTH = 48

_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_UNITS = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


# ----------------------------------------------------------------------------- names


def check_job_name(name: str) -> str:
    """Returns ``name`` if it can name a TrainJob/PyTorchJob, else raises ``ValueError`` saying why."""
    if not isinstance(name, str) or not _JOB_NAME.match(name):
        raise ValueError(
            f"job name {name!r} must be a lowercase RFC 1035 label: a-z, 0-9 and '-', "
            "starting with a letter and ending with a letter or digit"
        )
    if len(name) > MAX_JOB_NAME_LENGTH:
        raise ValueError(
            f"job name {name!r} has {len(name)} characters; at most {MAX_JOB_NAME_LENGTH} leave room "
            "for the pod hostnames the operator derives from it (use job_name_for() to shorten)"
        )
    return name


def job_name_for(prefix: str, unique: str) -> str:
    """A valid, deterministic job name from a readable prefix and a unique string (e.g. a KFP run id).

    ``job_name_for("zonda-aifs-train", "3f2a…-run-id")`` -> ``"zonda-aifs-train-1b2c3d4e"``; the same
    inputs always give the same name, so a retried task finds the job its first attempt created.
    """
    digest = hashlib.sha256(unique.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    stem = re.sub(r"-{2,}", "-", stem)
    if not stem or not stem[0].isalpha():
        stem = f"z-{stem}".rstrip("-")
    stem = stem[: MAX_JOB_NAME_LENGTH - len(digest) - 1].rstrip("-")
    return check_job_name(f"{stem}-{digest}")


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value if _LABEL_VALUE.match(value) else ""


def job_labels(params: Params, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels put on the job and its pods (``extra`` wins on conflicts)."""
    labels = {
        "app.kubernetes.io/name": "zonda",
        "app.kubernetes.io/component": "train",
        "app.kubernetes.io/part-of": "zonda",
        "app.kubernetes.io/managed-by": "zonda-launcher",
    }
    preset = _label_value(params.name)
    if preset:
        labels["app.kubernetes.io/instance"] = preset
    for key, value in (extra or {}).items():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            raise ValueError(f"label {key}={value!r} is not a valid Kubernetes label value")
        labels[key] = value
    return labels


# ------------------------------------------------------------------------- pieces


def _quantity(text: str) -> Decimal:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", text)
    if not m:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return Decimal(m.group(1)) * Decimal(_UNITS[m.group(2) or ""])


def procs_per_node(params: Params) -> int:
    """Training processes per node: ``training.devices``, or the GPUs per node when devices is 'auto'.

    Raises ``ValueError`` when the params disagree (a node with 4 GPUs running 8 processes, or a GPU
    run on nodes that request no GPU).
    """
    res = params.runtime.resources.train
    devices = params.training.devices
    gpus = res.accelerator_count
    if params.training.accelerator in ("gpu", "cuda") and gpus == 0:
        raise ValueError(
            f"training.accelerator is {params.training.accelerator!r} but runtime.resources.train requests "
            "no accelerator (set accelerator_type: nvidia.com/gpu and accelerator_count)"
        )
    if isinstance(devices, int):
        if gpus and devices != gpus:
            raise ValueError(
                f"training.devices={devices} but runtime.resources.train.accelerator_count={gpus}: "
                "each node runs one training process per GPU, so they must be equal"
            )
        return devices
    return gpus or 1


def launch_command(command: Sequence[str]) -> list[str]:
    """``torchrun --no-python <command>``: torchrun reads the operator's PET_* variables.

    A command that already starts with ``torchrun`` is returned unchanged.
    """
    command = [str(c) for c in command]
    if not command:
        raise ValueError("command is empty; pass the training command, e.g. ['zonda', 'train', ...]")
    if command[0] == "torchrun":
        return command
    return ["torchrun", "--no-python", *command]


def container_env(params: Params, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Environment of the training container.

    ``MLFLOW_TRACKING_URI`` from ``runtime.mlflow_tracking_uri`` (unless ``env`` sets it), then
    ``env`` in order, then ``runtime.resources.train.secrets_as_env`` as ``secretKeyRef`` entries.
    A name given twice is an error: the API server would keep one silently.
    """
    env = dict(env or {})
    items: list[dict[str, Any]] = []
    uri = params.runtime.mlflow_tracking_uri
    if uri and "MLFLOW_TRACKING_URI" not in env:
        items.append({"name": "MLFLOW_TRACKING_URI", "value": uri})
    for name, value in env.items():
        items.append({"name": str(name), "value": str(value)})
    for secret in params.runtime.resources.train.secrets_as_env:
        for key, name in secret.keys.items():
            items.append(
                {"name": name, "valueFrom": {"secretKeyRef": {"name": secret.secret_name, "key": key}}}
            )
    seen: set[str] = set()
    for item in items:
        if item["name"] in seen:
            raise ValueError(
                f"environment variable {item['name']} is set twice (env and "
                "runtime.resources.train.secrets_as_env); keep one"
            )
        seen.add(item["name"])
    return items


def node_resources(res: StageResources) -> dict[str, dict[str, str]]:
    """``{requests, limits}`` of one training node; GPUs go in both (Kubernetes requires limits)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for kind in ("cpu", "memory"):
        req, lim = getattr(res, f"{kind}_request"), getattr(res, f"{kind}_limit")
        if req and lim and _quantity(req) > _quantity(lim):
            raise ValueError(
                f"runtime.resources.train.{kind}_request ({req}) is larger than {kind}_limit ({lim})"
            )
        if req:
            requests[kind] = req
        if lim:
            limits[kind] = lim
    if res.accelerator_count:
        requests[res.accelerator_type] = str(res.accelerator_count)
        limits[res.accelerator_type] = str(res.accelerator_count)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def pvc_volumes(res: StageResources) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(volumes, volumeMounts)`` for ``pvc_mounts``; one volume per claim, one mount per path."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    paths: set[str] = set()
    for m in res.pvc_mounts:
        if not m.mount_path.startswith("/"):
            raise ValueError(f"runtime.resources.train.pvc_mounts: mount_path {m.mount_path!r} must be absolute")
        if m.mount_path in paths:
            raise ValueError(f"runtime.resources.train.pvc_mounts: two claims mounted at {m.mount_path}")
        paths.add(m.mount_path)
        if m.pvc_name not in names:
            vol = "pvc-" + re.sub(r"[^a-z0-9-]+", "-", m.pvc_name.lower()).strip("-")
            vol = vol[:54].rstrip("-") + "-" + hashlib.sha256(m.pvc_name.encode()).hexdigest()[:8]
            names[m.pvc_name] = vol
            volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": m.pvc_name}})
        mounts.append({"name": names[m.pvc_name], "mountPath": m.mount_path})
    return volumes, mounts


def tolerations(res: StageResources) -> list[dict[str, str]]:
    out = []
    for t in res.tolerations:
        if t.operator == "Exists" and t.value:
            raise ValueError(f"toleration {t.key}: operator Exists takes no value (got {t.value!r})")
        out.append(t.model_dump(exclude_none=True))
    return out


def _deadline_seconds(params: Params) -> int:
    return params.runtime.distributed.timeout_minutes * 60


# ------------------------------------------------------------------------ manifests


def trainjob_manifest(
    params: Params,
    *,
    job_name: str,
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Kubeflow Trainer ``TrainJob`` running ``command`` on ``training.num_nodes`` nodes.

    Image, node count, processes and resources per node go in ``spec.trainer``; node selector,
    tolerations, PVC volumes/mounts and pod labels in zonda's ``spec.runtimePatches`` entry, applied
    to the ``node`` job of the ClusterTrainingRuntime ``runtime.distributed.runtime_ref``.
    """
    check_job_name(job_name)
    res = params.runtime.resources.train
    dist = params.runtime.distributed
    all_labels = job_labels(params, labels)

    trainer: dict[str, Any] = {
        "image": params.runtime.images.train,
        "command": launch_command(command),
        "numNodes": params.training.num_nodes,
        "numProcPerNode": procs_per_node(params),
    }
    resources = node_resources(res)
    if resources:
        trainer["resourcesPerNode"] = resources
    env_items = container_env(params, env)
    if env_items:
        trainer["env"] = env_items

    pod_spec: dict[str, Any] = {}
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    tols = tolerations(res)
    if tols:
        pod_spec["tolerations"] = tols
    volumes, mounts = pvc_volumes(res)
    if volumes:
        pod_spec["volumes"] = volumes
        pod_spec["containers"] = [{"name": TRAINER_NODE, "volumeMounts": mounts}]
    pod_template: dict[str, Any] = {"metadata": {"labels": dict(all_labels)}}
    if pod_spec:
        pod_template["spec"] = pod_spec

    return {
        "apiVersion": TRAINJOB_API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": job_name, "namespace": dist.namespace, "labels": dict(all_labels)},
        "spec": {
            "runtimeRef": {
                "name": dist.runtime_ref,
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
            },
            "activeDeadlineSeconds": _deadline_seconds(params),
            "trainer": trainer,
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {"name": TRAINER_NODE, "template": {"spec": {"template": pod_template}}}
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def _pytorch_pod_template(
    params: Params, *, command: Sequence[str], env: Mapping[str, str] | None, labels: dict[str, str]
) -> dict[str, Any]:
    res = params.runtime.resources.train
    volumes, mounts = pvc_volumes(res)
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}, *volumes]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, *mounts]
    container: dict[str, Any] = {
        "name": PYTORCH_CONTAINER,
        "image": params.runtime.images.train,
        "command": launch_command(command),
        "env": container_env(params, env),
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    resources = node_resources(res)
    if resources:
        container["resources"] = resources
    if not container["env"]:
        del container["env"]
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": IMAGE_UID,
            "runAsGroup": IMAGE_UID,
            "fsGroup": IMAGE_UID,
            "fsGroupChangePolicy": "OnRootMismatch",
        },
    }
    if res.node_selector:
        spec["nodeSelector"] = dict(res.node_selector)
    tols = tolerations(res)
    if tols:
        spec["tolerations"] = tols
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def pytorchjob_manifest(
    params: Params,
    *,
    job_name: str,
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A training-operator ``PyTorchJob``: one Master and ``num_nodes - 1`` Workers.

    Pods are kept after the job ends (``cleanPodPolicy: None``) so the launcher can read their logs;
    a failed rank fails the job at once (``restartPolicy: Never``, ``backoffLimit: 0``): a DDP rank
    restarted alone cannot rejoin a static rendezvous, so retries belong to the pipeline task.
    """
    check_job_name(job_name)
    all_labels = job_labels(params, labels)
    template = _pytorch_pod_template(params, command=command, env=env, labels=all_labels)
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "Never", "template": template},
    }
    workers = params.training.num_nodes - 1
    if workers:
        replicas["Worker"] = {"replicas": workers, "restartPolicy": "Never", "template": copy.deepcopy(template)}
    return {
        "apiVersion": PYTORCHJOB_API_VERSION,
        "kind": "PyTorchJob",
        "metadata": {
            "name": job_name,
            "namespace": params.runtime.distributed.namespace,
            "labels": dict(all_labels),
        },
        "spec": {
            "nprocPerNode": str(procs_per_node(params)),
            "runPolicy": {
                "cleanPodPolicy": "None",
                "backoffLimit": 0,
                "activeDeadlineSeconds": _deadline_seconds(params),
            },
            "pytorchReplicaSpecs": replicas,
        },
    }


def distributed_job_manifest(
    params: Params,
    *,
    job_name: str,
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest ``runtime.distributed.kind`` asks for: a TrainJob or a PyTorchJob."""
    kind = params.runtime.distributed.kind
    build = {"trainjob": trainjob_manifest, "pytorchjob": pytorchjob_manifest}[kind]
    return build(params, job_name=job_name, command=command, env=env, labels=labels)
