"""Forecast windows: which samples a split holds, and one sample read from a snapshot.

A sample anchored at time index ``i`` (valid time ``t``) holds, with
``T_in = model.input_steps`` and ``R`` rollout steps::

    states    (T_in, G, C)       at t - 6h (T_in - 1), ..., t
    forcings  (T_in + R, G, F)   at t - 6h (T_in - 1), ..., t + 6h R
    targets   (R, G, C)          at t + 6h, ..., t + 6h R
    time      ()                 t, int64 nanoseconds since 1970

in physical units (the :class:`~zonda.models.Forecaster` normalises), as
:class:`~zonda.snapshot_reader.SnapshotReader` reads them. A sample's whole
window (first input to last target) lies inside its split and is contiguous in
6-hourly time; it is one contiguous time slice per zarr array, read when the
sample is asked for.

The rollout length follows the curriculum (``training.rollout``): ``start``
steps for the first ``hold_epochs + increase_every_epochs`` epochs, then one
more step every ``increase_every_epochs`` epochs up to ``end``; or, with
``schedule``, its entry for the epoch (the last one for every later epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zonda.params import RolloutParams, TimeWindow
from zonda.snapshot_reader import SnapshotReader
from zonda.variables import TIME_STEP

#: Rollout steps of the validation set: 6 h and 24 h leads are scored.
VALIDATION_STEPS = 4


def rollout_for_epoch(rollout: RolloutParams, epoch: int) -> int:
    """Curriculum: ``schedule[min(epoch, len - 1)]``, else ``min(end, start + max(0, epoch - hold_epochs) //
    increase_every_epochs)`` rollout steps in ``epoch`` (0-based)."""
    if rollout.schedule is not None:
        return rollout.schedule[min(epoch, len(rollout.schedule) - 1)]
    grown = max(0, epoch - rollout.hold_epochs) // rollout.increase_every_epochs
    return min(rollout.end, rollout.start + grown)


def window_anchors(times: np.ndarray, window: TimeWindow, input_steps: int, rollout: int) -> np.ndarray:
    """Indices ``i`` of ``times`` whose sample window ``[i - T_in + 1, i + R]`` lies inside ``window``.

    The window must also be contiguous (every step 6 h after the previous).
    ``times`` is a sorted ``datetime64`` array. Returns ``int64 (N,)``.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    n = times.size
    first = np.arange(n) - (input_steps - 1)
    last = np.arange(n) + rollout
    ok = (first >= 0) & (last < n)
    idx = np.flatnonzero(ok)
    start, end = np.datetime64(window.start, "ns"), np.datetime64(window.end, "ns")
    span = (input_steps - 1 + rollout) * TIME_STEP
    t0, t1 = times[first[idx]], times[last[idx]]
    keep = (t0 >= start) & (t1 <= end) & (t1 - t0 == span)
    return idx[keep].astype(np.int64)


class ForecastWindows(Dataset):
    """Samples of one split for a fixed rollout length (see the module docstring for the layout).

    Args:
      reader: the snapshot reader.
      anchors: ``(N,)`` time index ``i`` of each sample's last input state.
      times: the snapshot's time coordinate (``datetime64[ns]``).
      input_steps: ``T_in``.
      rollout: ``R``.
    """

    def __init__(self, reader: SnapshotReader, anchors: np.ndarray, times: np.ndarray, input_steps: int, rollout: int) -> None:
        self.reader = reader
        self.anchors = np.asarray(anchors, dtype=np.int64)
        self.times = np.asarray(times, dtype="datetime64[ns]")
        self.input_steps = int(input_steps)
        self.rollout = int(rollout)

    def __len__(self) -> int:
        return int(self.anchors.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(self.anchors[index])
        start, stop = i - self.input_steps + 1, i + self.rollout + 1
        block, forcings = self.reader.window(start, stop)
        return {
            "states": torch.from_numpy(block[: self.input_steps]),
            "targets": torch.from_numpy(block[self.input_steps :]),
            "forcings": torch.from_numpy(forcings),
            "time": torch.tensor(self.times[i].astype("int64")),
        }
