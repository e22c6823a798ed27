"""Training data: forecast windows of a snapshot, their order across processes, resumable loaders, the DataModule.

* :mod:`~zonda.training.data.windows` - which samples a split holds (the rollout curriculum) and one sample.
* :mod:`~zonda.training.data.sampling` - one permutation per epoch, sharded into the same global batches on any
  number of processes.
* :mod:`~zonda.training.data.loader` - DataLoaders that Lightning checkpoints mid-epoch.
* :mod:`~zonda.training.data.datamodule` - :class:`SnapshotDataModule`, the train and validation splits.

Reading the snapshot itself is :mod:`zonda.snapshot_reader` (evaluation reads through it too).
"""

from zonda.training.data.datamodule import SnapshotDataModule
from zonda.training.data.loader import FirstBatchForever, ResumableDataLoader, worker_start_method
from zonda.training.data.sampling import ShardedEpochSampler, batches_to_run, epoch_batches
from zonda.training.data.windows import VALIDATION_STEPS, ForecastWindows, rollout_for_epoch, window_anchors

__all__ = [
    "VALIDATION_STEPS",
    "FirstBatchForever",
    "ForecastWindows",
    "ResumableDataLoader",
    "ShardedEpochSampler",
    "SnapshotDataModule",
    "batches_to_run",
    "epoch_batches",
    "rollout_for_epoch",
    "window_anchors",
    "worker_start_method",
]
