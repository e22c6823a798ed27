"""One entry point per pipeline stage: run the library function, record it in MLflow.

The KFP components (``components/``), the DVC stages (``dvc.yaml``) and the
``zonda`` CLI all call these functions, so a stage behaves the same whichever
way it is started. Each writes its outputs atomically to ``out_dir`` with a
``manifest.json`` and the resolved params beside them, then records the
manifest in MLflow: in the pipeline's run when ``mlflow_run_id`` is given, in a
run of its own otherwise, or not at all with ``track=False``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from zonda.params import Params

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _record(
    params: Params,
    stage: str,
    manifest: dict[str, Any],
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] | None = None,
) -> None:
    import mlflow

    from zonda import tracking

    with tracking.stage_run(params, mlflow_run_id, stage):
        if tags:
            mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics(metrics)
        tracking.log_manifest(stage, manifest, out_dir)
        for path in artifacts or []:
            mlflow.log_artifact(str(path), artifact_path=stage)


def snapshot_stage(
    params: Params, out_dir: PathLike, *, mlflow_run_id: str | None = None, track: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Stage 1: builds (or finds) the snapshot of ``params.data`` at ``out_dir``."""
    from zonda.snapshot import build_snapshot

    manifest = build_snapshot(params, out_dir, progress=progress).manifest
    if track:
        _record(
            params, "snapshot", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.snapshot_id": manifest["snapshot_id"]},
            metrics={"snapshot.time_steps": manifest["time_range"]["steps"]},
        )
    return manifest


def statistics_stage(
    params: Params,
    snapshot_dir: PathLike,
    out_dir: PathLike,
    *,
    mlflow_run_id: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 2: normalisation statistics of the snapshot at ``snapshot_dir``."""
    from zonda.statistics import STATISTICS_FILENAME, build_statistics

    manifest = build_statistics(params, snapshot_dir, out_dir, progress=progress)
    if track:
        _record(
            params, "statistics", manifest, out_dir, mlflow_run_id=mlflow_run_id,
            tags={"zonda.statistics_hash": manifest["statistics_hash"]},
            artifacts=[Path(out_dir) / STATISTICS_FILENAME],
        )
    return manifest
