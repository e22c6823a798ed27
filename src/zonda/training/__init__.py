"""Training stage: data module, LightningModule, losses, optimizers, schedulers, checkpoints.

Public API::

    train(params, snapshot_dir, statistics_dir, graph_dir, out_dir, *, mlflow_run_id=None,
          progress=True, track=True, callbacks=()) -> dict          # zonda.training.train
    load_forecaster(model_dir, graph_dir, statistics_dir) -> Forecaster  # zonda.training.artifacts
    SnapshotDataModule, ForecastModule, AdEMAMix, CosineWithWarmup, WeightedMSELoss,
    channel_weights, rollout_loss, TrainingInputError, CheckpointError, load_training_checkpoint, load_weights

Heavy imports (Lightning, the models) happen on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "zonda.training.train",
    "read_lineage": "zonda.training.train",
    "load_forecaster": "zonda.training.artifacts",
    "SnapshotDataModule": "zonda.training.data",
    "ForecastModule": "zonda.training.module",
    "AdEMAMix": "zonda.training.optimizers",
    "CosineWithWarmup": "zonda.training.schedulers",
    "WeightedMSELoss": "zonda.training.losses",
    "channel_weights": "zonda.training.losses",
    "rollout_loss": "zonda.training.losses",
    "CheckpointError": "zonda.training.checkpoints",
    "TrainingInputError": "zonda.training.errors",
    "load_training_checkpoint": "zonda.training.checkpoints",
    "load_weights": "zonda.training.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zonda.training' has no attribute {name!r}")
