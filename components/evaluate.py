"""Component: stage 5, evaluation against persistence and climatology."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    params_json: str,
    snapshot: Input[Dataset],
    statistics: Input[Artifact],
    graph: Input[Artifact],
    model: Input[Model],
    evaluation: Output[Artifact],
    scores: Output[Metrics],
    summary: Output[Markdown],
) -> str:
    """Scores 10-day forecasts; headline scores become KFP Metrics, the summary a Markdown artifact."""
    from zonda.evaluation.run import read_summary
    from zonda.params import params_from_json
    from zonda.stages import evaluate_stage

    manifest = evaluate_stage(
        params_from_json(params_json), snapshot.path, statistics.path, graph.path, model.path, evaluation.path,
    )
    for name, value in manifest["headline"].items():
        scores.log_metric(name, float(value))
    with open(summary.path, "w") as f:
        f.write(read_summary(evaluation.path))
    evaluation.metadata.update({"beats_persistence": manifest["beats_persistence"]})
    return str(all(manifest["beats_persistence"].values()))
