"""Component: stage 1, dataset snapshot."""

from kfp.dsl import Dataset, Metrics, Output


def snapshot(params_json: str, snapshot: Output[Dataset], metrics: Output[Metrics]) -> str:
    """Builds the validated, content-hashed zarr v3 snapshot; returns its snapshot ID."""
    from zonda.params import params_from_json
    from zonda.stages import snapshot_stage

    manifest = snapshot_stage(params_from_json(params_json), snapshot.path)
    snapshot.metadata.update(
        {"snapshot_id": manifest["snapshot_id"], "time_range": manifest["time_range"], "grid": manifest["grid"]}
    )
    lineage = {"dvc": manifest.get("dvc"), "source_dvc": manifest["source"].get("dvc")}
    snapshot.metadata.update({k: v for k, v in lineage.items() if v})  # where it was pushed, what it read
    metrics.log_metric("time_steps", manifest["time_range"]["steps"])
    return manifest["snapshot_id"]
