"""Per-stage Kubernetes settings of the pipeline's tasks, from ``runtime.resources.<stage>``.

:func:`apply_stage_resources` turns one :class:`~zonda.params.StageResources` into
KFP task settings: CPU/memory requests and limits, accelerator type and count
(in the pipeline IR's ``deploymentSpec``), node selector, tolerations, PVC
mounts and Secrets as environment variables (kfp-kubernetes, in the IR's
Kubernetes platform spec), retries and caching (in the task spec).

Only what the params set is applied: with default params the compiled IR is
the same as without this call, so local runs are unaffected. The KFP local
runner ignores resources and the platform spec (it warns about resources) and
honours retries and caching, so a preset with cluster resources still runs
locally.

Call it inside the ``@dsl.pipeline`` body, on each task, through
:func:`apply_params_resources`, which picks what each task needs::

    snap = snapshot_op(...)
    apply_params_resources(snap, params, "snapshot")

Which settings each task gets is decided by :func:`task_resources`. Most tasks
get their stage's section as it is; two do not:

* ``train`` with ``training.num_nodes > 1``: the KFP task only *launches* a
  TrainJob/PyTorchJob (:func:`zonda.launch.train_on_cluster`) whose pods get
  ``runtime.resources.train`` (GPUs, node selector, tolerations) per node. The
  launcher pod itself gets no GPUs and no GPU-pool scheduling (holding a GPU
  node idle for the whole training, and on a pool of exactly ``num_nodes`` GPU
  nodes keeping the job from ever scheduling) but keeps the PVC mounts,
  Secrets, retries (a retried launcher adopts its job) and caching. With one
  node, training runs in the KFP pod, which gets everything.
* ``mlflow-run`` (opens the pipeline's MLflow run) gets the Secrets that carry
  MLflow credentials and no caching (every pipeline run opens its own MLflow run).

``register`` is cached like any stage: its inputs are the model, its evaluation
and the registry section, so a cache hit means that version is already registered.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from zonda.params import Params, StageResources

#: The pipeline's stages, in order; each has a ``runtime.resources.<stage>`` section.
STAGES = ("snapshot", "statistics", "graph", "train", "evaluate", "register")
#: The task that opens the pipeline's MLflow run before the stages.
MLFLOW_RUN_TASK = "mlflow-run"

#: Requests of the pod that launches and watches a multi-node training job (it only talks to the API server).
LAUNCHER_CPU_REQUEST = "500m"
LAUNCHER_MEMORY_REQUEST = "1Gi"
LAUNCHER_MEMORY_LIMIT = "2Gi"


class ResourceSpecError(ValueError):
    """A stage's resources cannot be expressed as KFP task settings; names the params field."""


def apply_stage_resources(
    task: PipelineTask,
    resources: StageResources,
    *,
    image: str | None = None,
    stage: str | None = None,
) -> PipelineTask:
    """Applies ``resources`` (and ``image``, if given) to ``task``; returns the task.

    ``stage`` only names the params section in error messages
    (``runtime.resources.<stage>.<field>``); it defaults to the task's name.
    """
    where = f"runtime.resources.{stage or task.name}"

    def setting(field: str, method, value) -> None:
        try:
            method(value)
        except ValueError as exc:
            raise ResourceSpecError(f"{where}.{field}={value!r}: {exc}") from None

    if image:
        setting("image", task.set_container_image, image)
    if resources.cpu_request is not None:
        setting("cpu_request", task.set_cpu_request, resources.cpu_request)
    if resources.cpu_limit is not None:
        setting("cpu_limit", task.set_cpu_limit, resources.cpu_limit)
    if resources.memory_request is not None:
        setting("memory_request", task.set_memory_request, resources.memory_request)
    if resources.memory_limit is not None:
        setting("memory_limit", task.set_memory_limit, resources.memory_limit)
    # accelerator_count 0 means "no accelerator", even when a type is named.
    if resources.accelerator_count > 0:
        setting("accelerator_type", task.set_accelerator_type, resources.accelerator_type)
        setting("accelerator_count", task.set_accelerator_limit, resources.accelerator_count)

    for key, value in resources.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in resources.tolerations:
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
        )
    for mount in resources.pvc_mounts:
        kubernetes.mount_pvc(task, pvc_name=mount.pvc_name, mount_path=mount.mount_path)
    for secret in resources.secrets_as_env:  # the params schema requires at least one key per Secret
        kubernetes.use_secret_as_env(task, secret_name=secret.secret_name, secret_key_to_env=dict(secret.keys))

    if resources.retries > 0:
        task.set_retry(num_retries=resources.retries)
    task.set_caching_options(enable_caching=resources.caching)
    return task


def apply_params_resources(task: PipelineTask, params: Params, stage: str, *, image: str | None = None) -> PipelineTask:
    """:func:`apply_stage_resources` with :func:`task_resources` ``(params, stage)``."""
    return apply_stage_resources(task, task_resources(params, stage), image=image, stage=stage)


def task_resources(params: Params, task: str) -> StageResources:
    """Resources of a pipeline task: one of :data:`STAGES`, or :data:`MLFLOW_RUN_TASK`."""
    if task == MLFLOW_RUN_TASK:
        return mlflow_task_resources(params)
    if task == "train":
        return train_task_resources(params)
    if task not in STAGES:
        raise ValueError(f"unknown pipeline task {task!r}; expected one of {', '.join((*STAGES, MLFLOW_RUN_TASK))}")
    return params.runtime.resources.for_stage(task)


def train_task_resources(params: Params) -> StageResources:
    """What the KFP train task gets: all of ``runtime.resources.train`` with one node, else a launcher's share."""
    res = params.runtime.resources.train
    if params.training.num_nodes <= 1:
        return res
    return StageResources(
        cpu_request=LAUNCHER_CPU_REQUEST,
        memory_request=LAUNCHER_MEMORY_REQUEST,
        memory_limit=LAUNCHER_MEMORY_LIMIT,
        pvc_mounts=res.pvc_mounts,
        secrets_as_env=res.secrets_as_env,
        retries=res.retries,
        caching=res.caching,
    )


def mlflow_task_resources(params: Params) -> StageResources:
    """What the task opening the MLflow run gets: every stage's Secrets that set MLFLOW_* variables, no caching."""
    secrets, seen = [], set()
    for stage in STAGES:
        for secret in params.runtime.resources.for_stage(stage).secrets_as_env:
            if not any(env.startswith("MLFLOW_") for env in secret.keys.values()):
                continue
            key = (secret.secret_name, tuple(sorted(secret.keys.items())))
            if key not in seen:
                seen.add(key)
                secrets.append(secret)
    return StageResources(secrets_as_env=secrets, caching=False)
