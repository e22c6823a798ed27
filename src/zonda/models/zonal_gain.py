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
"""

from __future__ import annotations

import torch
from torch import nn


class ZonalSpectralGain(nn.Module):
    """``(B, G, C)`` -> ``(B, G, C)`` with ``G = n_lat * n_lon`` in row-major ``(lat, lon)`` order.

    Args:
        n_lat: latitude rows of the grid.
        n_lon: points per latitude circle (equally spaced, a full circle).
        channels: ``C``.
    """

    def __init__(self, *, n_lat: int, n_lon: int, channels: int) -> None:
        super().__init__()
        if n_lat < 1 or n_lon < 2 or channels < 1:
            raise ValueError(f"zonal gain needs n_lat >= 1, n_lon >= 2, channels >= 1; got {n_lat}, {n_lon}, {channels}")
        self.n_lat = int(n_lat)
        self.n_lon = int(n_lon)
        self.delta = nn.Parameter(torch.zeros(self.n_lon // 2 + 1, int(channels)))  # (K, C), K = n_lon // 2 + 1

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
        filtered = torch.fft.irfft(spectrum * self.gain, n=self.n_lon, dim=2)  # (B, n_lat, n_lon, C)
        return filtered.reshape(batch, grid, channels).to(tendency.dtype)  # (B, G, C)
