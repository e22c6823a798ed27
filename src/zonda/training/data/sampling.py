"""Data order: the same global batches on one process or many, resumable mid-epoch.

:class:`ShardedEpochSampler` draws one permutation per epoch from
``(training.seed, epoch)``; global batch ``j`` is ``perm[j*B_g:(j+1)*B_g]``
(``B_g = batch_size * world_size``) and rank ``r`` takes the ``r``-th
``batch_size`` slice of it, so a DDP run sees the same global batches as a
single process with ``batch_size * world_size``.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

class ShardedEpochSampler(Sampler[int]):
    """This rank's sample indices for one epoch, in global-batch order (see the module docstring).

    Args:
      num_samples: size of the dataset.
      batch_size: per-rank batch size ``b``.
      world_size, rank: data-parallel layout.
      shuffle: permute per epoch with ``torch.Generator().manual_seed(seed + epoch)``.
      seed: base seed.
      drop_last: drop the incomplete last global batch (training), else keep it
        (validation; ranks may then get unequal shares).
      epoch: the epoch the first iteration serves.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        epoch: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = int(epoch)
        self.skip_batches = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def num_global_batches(self) -> int:
        if self.drop_last:
            return self.num_samples // self.global_batch
        return math.ceil(self.num_samples / self.global_batch)

    def order(self, epoch: int) -> np.ndarray:
        """The global sample order of ``epoch`` (same on every rank)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=gen).numpy()

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch``, each an index array of at most ``batch_size``."""
        perm = self.order(epoch)
        out = []
        for j in range(self.num_global_batches):
            block = perm[j * self.global_batch : (j + 1) * self.global_batch]
            mine = block[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if mine.size:
                out.append(mine)
        return out

    def batch_sizes(self) -> list[int]:
        """Sizes of this rank's batches in a full epoch (the same for every epoch)."""
        sizes = []
        for j in range(self.num_global_batches):
            block = min(self.global_batch, self.num_samples - j * self.global_batch)
            mine = min(max(block - self.rank * self.batch_size, 0), self.batch_size)
            if mine:
                sizes.append(mine)
        return sizes

    def __len__(self) -> int:
        return int(sum(self.batch_sizes()))

    def num_batches(self) -> int:
        """Batches of this rank per full epoch."""
        return len(self.batch_sizes())

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a new epoch starts from its first batch."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.skip_batches = 0

    def __iter__(self) -> Iterator[int]:
        # Runs when the first index is drawn; a resumed epoch's skip is used once.
        skip, self.skip_batches = self.skip_batches, 0
        for b in self.batches(self.epoch)[skip:]:
            yield from (int(i) for i in b)


def epoch_batches(num_batches: int, limit: int | float | None) -> int:
    """Batches Lightning runs per epoch under ``limit_train_batches`` (its ``_parse_num_batches`` rule)."""
    if limit is None:
        return num_batches
    if isinstance(limit, int) or (isinstance(limit, float) and limit > 1.0 and limit.is_integer()):
        return min(num_batches, int(limit))
    return int(num_batches * float(limit))


def batches_to_run(epoch_batches: int, *, max_steps: int, global_step: int, accumulate: int) -> int:
    """Batches of this epoch that will run: ``epoch_batches``, cut short where ``max_steps`` (-1: none) ends training.

    ``global_step`` counts optimizer steps taken so far, each of ``accumulate`` batches.
    """
    if max_steps is None or max_steps < 0:
        return epoch_batches
    return max(0, min(epoch_batches, (max_steps - global_step) * accumulate))
