"""The Lightning DataModule of a snapshot's train and validation splits.

It builds the training set for the rollout length ``R(epoch)`` of the
curriculum (:func:`~zonda.training.data.windows.rollout_for_epoch`) and asks
Lightning to rebuild it whenever the curriculum can move; the static fields
``(G, S)`` are the same for every sample and are served once
(:attr:`SnapshotDataModule.static`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from zonda.channels import ChannelLayout
from zonda.params import Params
from zonda.snapshot import DATA_DIRNAME
from zonda.snapshot_reader import SnapshotReader, read_grid
from zonda.training.data.loader import FirstBatchForever, ResumableDataLoader, worker_start_method
from zonda.training.data.sampling import ShardedEpochSampler, batches_to_run, epoch_batches
from zonda.training.data.windows import VALIDATION_STEPS, ForecastWindows, rollout_for_epoch, window_anchors
from zonda.training.errors import TrainingInputError
from zonda.variables import TIME_STEP_HOURS

log = logging.getLogger(__name__)


class SnapshotDataModule(L.LightningDataModule):
    """Lightning DataModule of the train and validation splits of a snapshot.

    Args:
      params: the resolved params (``data`` and ``training`` sections are used,
        and ``model.input_steps``).
      snapshot_dir: a snapshot directory (``data.zarr`` + ``manifest.json``).

    Attributes (available right after construction, before ``setup``):
      layout, forcing_names, static_names, latitudes, longitudes, times, snapshot_id,
      static (``(G, S)`` float32 tensor).

    Batches are dicts of ``states (B, T_in, G, C)``, ``forcings (B, T_in+R, G, F)``,
    ``targets (B, R, G, C)`` and ``time (B,)``; ``training.batch_size`` is the
    batch of one process (the global batch is ``batch_size * world_size``).
    """

    def __init__(self, params: Params, snapshot_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.params = params
        self.snapshot_dir = Path(snapshot_dir)
        info = read_grid(self.snapshot_dir)
        self.times: np.ndarray = info["times"]
        self.latitudes: np.ndarray = info["latitudes"]
        self.longitudes: np.ndarray = info["longitudes"]
        self.snapshot_id: str = info["snapshot_id"]
        data = params.data
        self.layout = ChannelLayout.of(data.variables, data.levels)
        self.forcing_names = list(data.forcings)
        self.static_names = list(data.static)
        missing = [n for n in [*self.layout.variables, *self.forcing_names, *self.static_names] if n not in info["variables"]]
        if missing:
            raise TrainingInputError(f"{self.snapshot_dir / DATA_DIRNAME}: missing variables {missing} asked for by data params")
        self.reader = SnapshotReader(
            self.snapshot_dir / DATA_DIRNAME, self.layout, self.forcing_names, self.static_names,
            info["levels"], (self.latitudes.size, self.longitudes.size),
        )
        self.static = torch.from_numpy(self.reader.static())
        self.input_steps = params.model.input_steps
        # Fail now, not after the model is built, if a split is too short.
        for split, steps in (("train", params.training.rollout.longest), ("validation", VALIDATION_STEPS)):
            self.anchors(split, steps)

    # ------------------------------------------------------------------ samples

    def anchors(self, split: str, rollout: int) -> np.ndarray:
        """Anchor indices of ``split`` (``train`` | ``validation``) for ``rollout`` steps."""
        window = getattr(self.params.data.splits, split)
        anchors = window_anchors(self.times, window, self.input_steps, rollout)
        if anchors.size == 0:
            need_h = (self.input_steps + rollout - 1) * TIME_STEP_HOURS
            raise TrainingInputError(
                f"data.splits.{split} ({window.as_str()}) holds no complete window of {self.input_steps} input "
                f"and {rollout} target steps ({need_h} h) in the snapshot {self.snapshot_dir}"
            )
        return anchors

    def dataset(self, split: str, rollout: int) -> ForecastWindows:
        return ForecastWindows(self.reader, self.anchors(split, rollout), self.times, self.input_steps, rollout)

    @property
    def reload_every_n_epochs(self) -> int:
        """``reload_dataloaders_every_n_epochs`` for the Trainer: rebuild when the curriculum moves."""
        r = self.params.training.rollout
        if r.schedule is not None:
            return 1 if len(set(r.schedule)) > 1 else 0  # an explicit schedule may move at any epoch
        if r.end == r.start:
            return 0
        # the curriculum moves at epochs hold + k * every: every gcd(hold, every) epochs hits each of them
        return math.gcd(r.hold_epochs, r.increase_every_epochs) if r.hold_epochs else r.increase_every_epochs

    def rollout_for_epoch(self, epoch: int) -> int:
        return rollout_for_epoch(self.params.training.rollout, epoch)

    # -------------------------------------------------------------- data loaders

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader_options(self) -> dict[str, Any]:
        """DataLoader options from ``training``: workers, prefetch, persistent workers, pinned memory."""
        t = self.params.training
        pin = t.pin_memory
        if pin == "auto":
            pin = torch.cuda.is_available() and t.accelerator != "cpu"
        options: dict[str, Any] = {
            "num_workers": t.num_workers,
            "pin_memory": bool(pin),
            "generator": torch.Generator().manual_seed(t.seed),  # keeps worker seeding off the global RNG
        }
        if t.num_workers > 0:
            options.update(prefetch_factor=t.prefetch_factor, persistent_workers=t.persistent_workers,
                           multiprocessing_context=worker_start_method())
        return options

    def _epoch(self) -> int:
        return int(self.trainer.current_epoch) if self.trainer is not None else 0

    def train_dataloader(self) -> ResumableDataLoader | FirstBatchForever:
        t = self.params.training
        epoch = self._epoch()
        rollout = self.rollout_for_epoch(epoch)
        world, rank = self._ranks()
        dataset = self.dataset("train", rollout)
        sampler = ShardedEpochSampler(
            len(dataset), t.batch_size, world_size=world, rank=rank, shuffle=True, seed=t.seed, drop_last=True,
            epoch=epoch,
        )
        if sampler.num_batches() == 0:
            raise TrainingInputError(
                f"data.splits.train has {len(dataset)} samples for rollout {rollout}, fewer than one global batch "
                f"(training.batch_size {t.batch_size} x {world} processes)"
            )
        limit = self.trainer.limit_train_batches if self.trainer is not None else None
        loader = ResumableDataLoader(
            dataset, sampler, epoch_limit=epoch_batches(sampler.num_batches(), limit), **self._loader_options()
        )
        runs = len(loader)
        if self.trainer is not None:
            runs = batches_to_run(
                len(loader), max_steps=t.max_steps, global_step=self.trainer.global_step,
                accumulate=self.trainer.accumulate_grad_batches,
            )
        log.info(
            "epoch %d: %d training samples, rollout %d, %d batches per rank%s", epoch, len(dataset), rollout, runs,
            f" (of {len(loader)}; training.max_steps={t.max_steps} ends it)" if runs < len(loader) else "",
        )
        return FirstBatchForever(loader) if t.fake_dataloading else loader

    def val_dataloader(self) -> DataLoader:
        t = self.params.training
        world, rank = self._ranks()
        dataset = self.dataset("validation", VALIDATION_STEPS)
        sampler = ShardedEpochSampler(
            len(dataset), t.batch_size, world_size=world, rank=rank, shuffle=False, seed=t.seed, drop_last=False,
        )
        return DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, **self._loader_options())

    def planned_optimizer_steps(self, trainer: L.Trainer) -> int:
        """Optimisation steps of the whole run, following the curriculum (for LR schedules).

        ``sum over epochs of ceil(batches(epoch) / accumulate_grad_batches)``,
        capped by ``max_steps``; batches per epoch shrink slightly as the
        rollout (and so the sample window) grows.
        """
        t = self.params.training
        world = int(trainer.world_size)
        total = 0
        for epoch in range(t.max_epochs):
            n = len(self.anchors("train", self.rollout_for_epoch(epoch))) // (t.batch_size * world)
            n = epoch_batches(n, trainer.limit_train_batches)
            total += math.ceil(n / t.accumulate_grad_batches)
            if t.max_steps > 0 and total >= t.max_steps:
                return int(t.max_steps)
        return max(1, int(total))  # a run without training steps still builds its scheduler
