"""What each pipeline task gets from ``runtime.resources``: the policy, without KFP.

``pipelines/resources.py`` turns the :class:`~zonda.params.StageResources`
returned here into KFP task settings; this module decides which settings a
task gets. Most tasks get their stage's section as it is; three do not:

* ``train`` with ``training.num_nodes > 1``: the KFP task only *launches* a
  TrainJob/PyTorchJob (:mod:`zonda.k8s.launcher`) whose pods get
  ``runtime.resources.train`` (GPUs, node selector, tolerations) per node. The
  launcher pod itself gets no GPUs and no GPU-pool scheduling (holding a GPU
  node idle for the whole training, and on a pool of exactly ``num_nodes`` GPU
  nodes keeping the job from ever scheduling) but keeps the PVC mounts,
  Secrets, retries (a retried launcher adopts its job) and caching. With one
  node, training runs in the KFP pod, which gets everything.
* ``register`` is cached like any stage: its inputs are the model, its evaluation and the registry
  section, so a cache hit means that version is already registered.
* ``mlflow-run`` (opens the pipeline's MLflow run) gets the Secrets that carry
  MLflow credentials and no caching (every pipeline run opens its own MLflow run).
"""

from __future__ import annotations

from zonda.params import Params, StageResources

#: The pipeline's stages, in order; each has a ``runtime.resources.<stage>`` section.
STAGES = ("snapshot", "statistics", "graph", "train", "evaluate", "register")
#: The task that opens the pipeline's MLflow run before the stages.
MLFLOW_RUN_TASK = "mlflow-run"

#: Requests of the pod that launches and watches a multi-node training job (it only talks to the API server).
LAUNCHER_CPU_REQUEST = "500m"
LAUNCHER_MEMORY_REQUEST = "1Gi"
LAUNCHER_MEMORY_LIMIT = "2Gi"


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
