"""Component: stage 6, model registration and the promotion gate."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def register(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
) -> str:
    """Registers the trained model in the MLflow Model Registry and runs the promotion gate; returns the decision.

    A rejected challenger is reported (metadata, manifest, version tags), not raised.
    """
    from zonda.params import params_from_json
    from zonda.stages import register_stage

    manifest = register_stage(
        params_from_json(params_json), model.path, statistics.path, graph.path, evaluation.path, registration.path,
        snapshot_dir=snapshot.path,
    )
    registration.metadata.update({k: manifest[k] for k in ("name", "version", "decision", "reason", "champion", "model_uri")})
    return manifest["decision"]
