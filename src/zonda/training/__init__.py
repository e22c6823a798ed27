"""Training stage: data module, LightningModule, losses, optimizers, schedulers, checkpoints.

Public API::

    train(params, snapshot_dir, statistics_dir, graph_dir, out_dir, *, mlflow_run_id=None,
          progress=True, track=True, callbacks=()) -> dict          # zonda.training.train
    SnapshotDataModule, ForecastModule, AdEMAMix, CosineWithWarmup, WeightedMSELoss,
    channel_weights, rollout_loss, TrainingInputError, load_training_checkpoint

The trained model on disk (``load_forecaster``, ``load_weights``, ``CheckpointError``) is
:mod:`zonda.models.saved`.

Heavy imports (Lightning, the models) happen on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "zonda.training.train",
    "read_lineage": "zonda.training.train",
    "SnapshotDataModule": "zonda.training.data",
    "ForecastModule": "zonda.training.module",
    "AdEMAMix": "zonda.training.optimizers",
    "CosineWithWarmup": "zonda.training.schedulers",
    "WeightedMSELoss": "zonda.training.losses",
    "channel_weights": "zonda.training.losses",
    "rollout_loss": "zonda.training.losses",
    "TrainingInputError": "zonda.training.errors",
    "load_training_checkpoint": "zonda.training.checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zonda.training' has no attribute {name!r}")
