"""Component: stage 2, normalisation statistics."""

from kfp.dsl import Artifact, Dataset, Input, Output


def statistics(params_json: str, snapshot: Input[Dataset], statistics: Output[Artifact]) -> str:
    """Streams over the snapshot once; returns the statistics hash."""
    from zonda.params import params_from_json
    from zonda.stages import statistics_stage

    manifest = statistics_stage(
        params_from_json(params_json), snapshot.path, statistics.path
    )
    statistics.metadata.update(
        {"statistics_hash": manifest["statistics_hash"], "snapshot_id": manifest["snapshot_id"], "period": manifest["period"]}
    )
    return manifest["statistics_hash"]
