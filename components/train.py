"""Component: stage 4, training (on the GPU node pool; a TrainJob/PyTorchJob when num_nodes > 1)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def train(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Output[Model],
) -> str:
    """Trains the forecaster; returns the model ID (sha256 of the weights).

    With ``training.num_nodes > 1`` this task launches a Kubeflow Trainer
    TrainJob (or a PyTorchJob) running ``zonda train`` on every node, waits for
    it and fails with its logs if it fails; otherwise it runs ``zonda train`` in
    this pod (a child command, so Lightning's DDP can start one per GPU).
    """
    from zonda.params import params_from_json
    from zonda.stages import train_task_stage

    params = params_from_json(params_json)
    manifest = train_task_stage(
        params, snapshot.path, statistics.path, graph.path, model.path
    )
    model.metadata.update({k: manifest.get(k) for k in ("model_id", "snapshot_id", "statistics_hash", "graph_hash")})
    return str(manifest["model_id"])
