"""DataLoaders that Lightning can checkpoint mid-epoch, and a first-batch-only loader for input-bound checks.

:class:`ResumableDataLoader` tells Lightning how many batches of the epoch were
consumed, so a run resumed from a mid-epoch checkpoint continues with the next
batch (the :class:`~zonda.training.data.sampling.ShardedEpochSampler` skips them).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Iterator

from torch.utils.data import DataLoader, Dataset

from zonda.training.data.sampling import ShardedEpochSampler

def worker_start_method() -> str | None:
    """How DataLoader workers start: ``forkserver`` once JAX is loaded in this process (the
    Held-Suarez generator ran here earlier, e.g. in a notebook: JAX's threads make ``fork``
    deadlock-prone), else the platform default (``fork`` on Linux)."""
    return "forkserver" if "jax" in sys.modules else None


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ShardedEpochSampler` that Lightning checkpoints mid-epoch.

    Lightning calls :meth:`state_dict` when it saves a checkpoint and
    :meth:`load_state_dict` before iterating on resume (``_Stateful``
    protocol). The state is the epoch and the number of batches served; a
    resumed epoch skips those, a completed one (``epoch_limit`` batches
    served) moves on to the next epoch.

    Args:
      dataset: the map-style dataset.
      sampler: the sampler (its ``batch_size`` is the loader's).
      epoch_limit: batches per epoch that Lightning runs (``limit_train_batches``).
      **kwargs: DataLoader options (num_workers, pin_memory, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: ShardedEpochSampler,
        *,
        epoch_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=False, **kwargs)
        self.epoch_limit = epoch_limit
        self._served = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        self._served = sampler.skip_batches  # the sampler skips these when it starts
        for batch in super().__iter__():
            self._served += 1  # counted when handed over (workers may have read ahead)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        s: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        return {
            "epoch": s.epoch,
            "batches": int(self._served),
            "num_samples": s.num_samples,
            "global_batch": s.global_batch,
            "seed": s.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        same = (
            state.get("num_samples") == s.num_samples
            and state.get("global_batch") == s.global_batch
            and state.get("seed") == s.seed
        )
        epoch, served = int(state.get("epoch", 0)), int(state.get("batches", 0))
        limit = self.epoch_limit if self.epoch_limit is not None else s.num_batches()
        if served >= limit:
            s.epoch, s.skip_batches = epoch + 1, 0
        elif same:
            s.epoch, s.skip_batches = epoch, served
        else:
            warnings.warn(
                "the checkpoint's data layout (samples, global batch, seed) differs from this run's; "
                f"epoch {epoch} restarts from its first batch instead of batch {served}",
                stacklevel=2,
            )
            s.epoch, s.skip_batches = epoch, 0
        self._served = s.skip_batches


class FirstBatchForever:
    """Serves the first batch of ``loader`` from memory, ``len(loader)`` times per epoch.

    ``training.fake_dataloading``: a run whose step time does not change with
    this on is not input-bound. The same tensors are returned every time.
    """

    def __init__(self, loader: ResumableDataLoader) -> None:
        self.loader = loader
        self.batch: Any = None
        self._served = 0
        self._skip = 0

    def __len__(self) -> int:
        return len(self.loader)

    def _first(self) -> Any:
        if self.batch is None:
            iterator = iter(self.loader)
            self.batch = next(iterator)
            iterator.close()  # type: ignore[attr-defined]
        return self.batch

    def __iter__(self) -> Iterator[Any]:
        batch = self._first()
        self._served, self._skip = self._skip, 0
        while self._served < len(self):
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        served = int(state.get("batches", 0))
        self._skip = served if served < len(self) else 0
