"""Per-channel normalisation constants taken from the statistics stage's ``statistics.nc``.

The statistics Dataset has one data variable per name, dims ``(statistic,
level)`` for atmospheric variables and ``(statistic,)`` otherwise, with
``statistic = [mean, std, tendency_std, min, max]`` (``tendency_std``: std of
6-hour differences; 0 for static fields). Network inputs are
``(value - mean) / std``; the network's output is a 6-hour tendency in units
of ``tendency_std`` (GraphCast). A zero or non-finite std (a constant field)
is replaced by 1 so that nothing divides by zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
import xarray as xr

from zonda.channels import ChannelLayout, channel_name


@dataclass(frozen=True)
class Normalisation:
    """Normalisation constants (float32 tensors).

    Attributes:
        state_mean, state_std, tendency_std: ``(C,)`` per state channel (layout order).
        forcing_mean, forcing_std: ``(F,)`` per forcing.
        static_mean, static_std: ``(S,)`` per static field.
    """

    state_mean: torch.Tensor
    state_std: torch.Tensor
    tendency_std: torch.Tensor
    forcing_mean: torch.Tensor
    forcing_std: torch.Tensor
    static_mean: torch.Tensor
    static_std: torch.Tensor

    @classmethod
    def from_statistics(
        cls,
        stats: xr.Dataset,
        layout: ChannelLayout,
        forcing_names: Sequence[str],
        static_names: Sequence[str],
    ) -> "Normalisation":
        """Constants for ``layout``'s channels, the forcings and the static fields, in that order."""
        state = np.array([_stat_triple(stats, name, level) for name, level in layout.entries]).reshape(-1, 3)
        forcing = np.array([_stat_triple(stats, name, None) for name in forcing_names]).reshape(-1, 3)
        static = np.array([_stat_triple(stats, name, None) for name in static_names]).reshape(-1, 3)
        return cls(
            state_mean=_tensor(state[:, 0]),
            state_std=_tensor(_safe_std(state[:, 1])),
            tendency_std=_tensor(_safe_std(state[:, 2])),
            forcing_mean=_tensor(forcing[:, 0]),
            forcing_std=_tensor(_safe_std(forcing[:, 1])),
            static_mean=_tensor(static[:, 0]),
            static_std=_tensor(_safe_std(static[:, 1])),
        )

    @classmethod
    def identity(cls, channels: int, forcings: int, statics: int) -> "Normalisation":
        """Zero means and unit stds (no-op normalisation) of the given sizes."""
        zeros, ones = torch.zeros, torch.ones
        return cls(zeros(channels), ones(channels), ones(channels), zeros(forcings), ones(forcings), zeros(statics), ones(statics))

    @property
    def num_channels(self) -> int:
        return int(self.state_mean.shape[0])

    @property
    def num_forcings(self) -> int:
        return int(self.forcing_mean.shape[0])

    @property
    def num_static(self) -> int:
        return int(self.static_mean.shape[0])

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def normalise_state(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` physical -> normalised."""
        return (x - self.state_mean) / self.state_std

    def denormalise_state(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` normalised -> physical."""
        return x * self.state_std + self.state_mean

    def normalise_forcing(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., F)`` physical -> normalised."""
        return (x - self.forcing_mean) / self.forcing_std

    def normalise_static(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., S)`` physical -> normalised."""
        return (x - self.static_mean) / self.static_std


def _stat_triple(stats: xr.Dataset, name: str, level: int | None) -> tuple[float, float, float]:
    """(mean, std, tendency_std) of one channel."""
    if name not in stats.data_vars:
        raise KeyError(f"statistics have no variable {name!r} (have: {', '.join(map(str, stats.data_vars))})")
    da = stats[name]
    if level is not None:
        if "level" not in da.dims:
            raise KeyError(f"statistics of {name!r} have no level dimension, channel {channel_name(name, level)} needs one")
        levels = [int(v) for v in da["level"].values]
        if int(level) not in levels:
            raise KeyError(f"statistics of {name!r} have no level {level} (have {levels})")
        da = da.sel(level=level)
    elif "level" in da.dims:
        raise KeyError(f"statistics of {name!r} have levels; a level must be chosen")
    return tuple(float(da.sel(statistic=s)) for s in ("mean", "std", "tendency_std"))  # type: ignore[return-value]


def _safe_std(std: np.ndarray) -> np.ndarray:
    std = np.asarray(std, dtype=np.float64)
    return np.where(np.isfinite(std) & (std > 0), std, 1.0)


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))
