"""A learned gain per zonal wavenumber and channel on the predicted tendency.

A grid-point network has no notion of the data's effective resolution: the decoder can put power
at zonal wavenumbers where the training data hold almost none (grid-scale speckle), and in a
rollout each step adds more. This layer gives the forecaster one learned, linear knob per zonal
wavenumber ``k`` and channel ``c``: on every latitude circle of the regular ``(n_lat, n_lon)``
grid, the tendency's Fourier coefficient ``T_k`` becomes ``(1 + delta[k, c]) * T_k``.

Trained with the forecaster's MSE loss, each gain tends to the regression coefficient of the target
tendency's ``k``-th coefficient on the prediction's (a per-wavenumber Wiener filter): near 1 where
the network predicts the data's structure, near 0 where its output at that wavenumber is noise
the data do not have. By Cauchy-Schwarz such a gain never leaves more power at ``k`` than the
target holds. ``delta`` starts at 0 (the layer is the identity) and weight decay pulls it back
towards 0, so a prior of "no filtering" is what an undertrained gain falls back to.

A learned gain is never exactly 0, and a wavenumber the data do not hold at all has no truth for the
regression to fit: the few percent it keeps add up over a rollout, and the truth's power there is
5-9 orders of magnitude below its peak. So the gain is multiplied by a fixed 0/1 ``resolved``
mask per latitude circle, wavenumber and channel, taken from the data's own tendency spectra (the
statistics stage's ``tendency_zonal_power__<name>``, :func:`resolved_wavenumbers`): on each circle,
the wavenumbers from 0 up to the first whose mean tendency power falls below ``floor`` times the
circle's largest. That removes a spectral truncation of the source (T21 here, TL639 for ERA5) and,
on a regular grid, the wavenumbers a circle near the pole cannot hold, where the decoder is free
to put noise (``model.zonal_gain_floor``; what it buys is measured in the README's Skill section).

The filtered tendency leaves the layer in float32 whatever came in: in a bf16 forecast the
network's output carries bf16 rounding, white noise at every wavenumber (about 1e-5 of the
tendency's power), which this layer removes above the resolved band only if it does not round
again on the way out.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from zonda.channels import ChannelLayout
from zonda.statistics import ZONAL_WAVENUMBER, zonal_power_name

log = logging.getLogger(__name__)


def tendency_zonal_power(
    statistics: xr.Dataset, layout: ChannelLayout, *, latitudes: Sequence[float], n_lon: int
) -> np.ndarray | None:
    """``(n_lat, K, C)``: the statistics' mean tendency power per circle and wavenumber of each of ``layout``'s channels.

    None (and a warning) when the statistics hold none (written by a zonda that did not record them):
    the gain then keeps every wavenumber, as models trained then did.
    """
    missing = [name for name in dict.fromkeys(layout.variables) if zonal_power_name(name) not in statistics.data_vars]
    if missing:
        log.warning(
            "the statistics hold no tendency zonal power for %s (written by an older zonda): the zonal gain keeps every "
            "wavenumber; rebuild the statistics (`zonda statistics`) for its resolution mask",
            ", ".join(missing),
        )
        return None
    columns = []
    for name, level in layout.entries:
        da = statistics[zonal_power_name(name)]
        if level is not None:
            da = da.sel(level=level)
        lat = np.asarray(da["latitude"].values, dtype=np.float64)
        if lat.shape != (len(latitudes),) or not np.allclose(lat, latitudes, atol=1e-6):
            raise ValueError(
                f"statistics variable {zonal_power_name(name)!r} has latitudes {lat.tolist()[:3]}... ({lat.size}), "
                f"not the graph grid's {list(latitudes)[:3]}... ({len(latitudes)}): statistics and graph of other grids"
            )
        if da.sizes[ZONAL_WAVENUMBER] != n_lon // 2 + 1:
            raise ValueError(
                f"statistics variable {zonal_power_name(name)!r} has {da.sizes[ZONAL_WAVENUMBER]} zonal wavenumbers, "
                f"the graph grid's {n_lon} longitudes give {n_lon // 2 + 1}"
            )
        columns.append(da.transpose("latitude", ZONAL_WAVENUMBER).values)  # (n_lat, K)
    return np.stack(columns, axis=-1)  # (n_lat, K, C)


def resolved_wavenumbers(power: np.ndarray, *, floor: float) -> np.ndarray:
    """``(n_lat, K, C)`` mean tendency power per circle, wavenumber and channel -> ``(n_lat, K, C)`` 0/1 float32.

    1 for ``k = 0`` and every ``k`` below the first wavenumber whose power is below ``floor`` times the
    circle's largest (over ``k``); 0 from there on. A circle without power keeps only ``k = 0``.
    """
    power = np.asarray(power, dtype=np.float64)
    if power.ndim != 3:
        raise ValueError(f"tendency power must be (n_lat, K, C), got shape {power.shape}")
    if not 0.0 < floor < 1.0:
        raise ValueError(f"floor must be in (0, 1), got {floor}")
    peak = power.max(axis=1, keepdims=True)  # (n_lat, 1, C)
    above = power >= floor * peak
    above &= peak > 0
    above[:, 0, :] = True
    return np.logical_and.accumulate(above, axis=1).astype(np.float32)  # (n_lat, K, C)


class ZonalSpectralGain(nn.Module):
    """``(B, G, C)`` -> ``(B, G, C)`` float32 with ``G = n_lat * n_lon`` in row-major ``(lat, lon)`` order.

    Args:
        n_lat: latitude rows of the grid.
        n_lon: points per latitude circle (equally spaced, a full circle).
        channels: ``C``.
        resolved: optional ``(n_lat, K, C)`` 0/1 mask (:func:`resolved_wavenumbers`); None keeps every
          wavenumber. A non-persistent buffer: it is rebuilt from the statistics with the model, as the
          normalisation is, so weights saved before it existed load unchanged.
    """

    def __init__(self, *, n_lat: int, n_lon: int, channels: int, resolved: np.ndarray | None = None) -> None:
        super().__init__()
        if n_lat < 1 or n_lon < 2 or channels < 1:
            raise ValueError(f"zonal gain needs n_lat >= 1, n_lon >= 2, channels >= 1; got {n_lat}, {n_lon}, {channels}")
        self.n_lat = int(n_lat)
        self.n_lon = int(n_lon)
        self.delta = nn.Parameter(torch.zeros(self.n_lon // 2 + 1, int(channels)))  # (K, C), K = n_lon // 2 + 1
        shape = (self.n_lat, self.n_lon // 2 + 1, int(channels))
        if resolved is None:
            mask = torch.ones(shape)
        else:
            mask = torch.as_tensor(np.asarray(resolved, dtype=np.float32))
            if tuple(mask.shape) != shape:
                raise ValueError(f"resolved mask must be (n_lat, K, C) = {shape}, got {tuple(mask.shape)}")
        self.register_buffer("resolved", mask, persistent=False)  # (n_lat, K, C)

    @property
    def gain(self) -> torch.Tensor:
        """``(K, C)``: the factor applied to each zonal wavenumber ``k = 0 .. n_lon // 2`` of each channel."""
        return 1.0 + self.delta

    def forward(self, tendency: torch.Tensor) -> torch.Tensor:
        batch, grid, channels = tendency.shape
        if grid != self.n_lat * self.n_lon or channels != self.delta.shape[1]:
            raise ValueError(
                f"zonal gain built for (B, {self.n_lat * self.n_lon}, {self.delta.shape[1]}), got {tuple(tendency.shape)}"
            )
        circles = tendency.float().reshape(batch, self.n_lat, self.n_lon, channels)  # (B, n_lat, n_lon, C)
        spectrum = torch.fft.rfft(circles, dim=2)  # (B, n_lat, K, C) complex
        filtered = torch.fft.irfft(spectrum * (self.gain * self.resolved), n=self.n_lon, dim=2)  # (B, n_lat, n_lon, C)
        return filtered.reshape(batch, grid, channels)  # (B, G, C) float32 (module docstring)
