"""The learned zonal-wavenumber gain: the identity at start, exact on analytic waves, a Wiener filter when fitted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from zonda.channels import ChannelLayout
from zonda.graph import build_graph
from zonda.models import Forecaster
from zonda.models.zonal_gain import ZonalSpectralGain
from zonda.params import GraphParams, ModelParams

N_LAT, N_LON = 4, 16
LON = np.arange(N_LON) * 2 * np.pi / N_LON  # (n_lon,) radians


def waves(amplitudes: dict[int, float], channels: int = 1) -> torch.Tensor:
    """``(1, N_LAT * N_LON, channels)``: sum of ``a cos(k lon)`` on every circle, row-major (lat, lon)."""
    circle = sum(a * np.cos(k * LON) for k, a in amplitudes.items())  # (n_lon,)
    field = np.broadcast_to(circle[None, :, None], (N_LAT, N_LON, channels))  # (n_lat, n_lon, C)
    return torch.tensor(field.reshape(1, N_LAT * N_LON, channels).copy(), dtype=torch.float32)


def test_starts_as_the_identity():
    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=3)
    x = torch.randn(2, N_LAT * N_LON, 3)
    torch.testing.assert_close(gain(x), x, atol=1e-6, rtol=0)
    assert gain.gain.shape == (N_LON // 2 + 1, 3)


def test_scales_each_zonal_wavenumber_of_each_channel_by_its_gain():
    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=2)
    with torch.no_grad():
        gain.delta[7, 0] = -1.0  # channel 0: wavenumber 7 removed
        gain.delta[2, 1] = 1.0  # channel 1: wavenumber 2 doubled
    x = waves({2: 1.0, 7: 0.5}, channels=2)
    y = gain(x).detach()
    torch.testing.assert_close(y[..., :1], waves({2: 1.0}, channels=2)[..., :1], atol=1e-6, rtol=0)
    torch.testing.assert_close(y[..., 1:], waves({2: 2.0, 7: 0.5}, channels=2)[..., 1:], atol=1e-6, rtol=0)


def test_keeps_bfloat16_in_and_out():
    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1)
    assert gain(waves({3: 1.0}).bfloat16()).dtype == torch.bfloat16


def test_rejects_a_grid_of_another_size():
    with pytest.raises(ValueError, match=r"built for \(B, 64, 1\), got \(1, 32, 1\)"):
        ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1)(torch.zeros(1, 32, 1))


def test_fitted_by_mse_it_removes_noise_the_target_does_not_hold():
    """Target: waves 1-3 with random phases; prediction: the target plus noise at wavenumbers 5-8.
    The least-squares gain is 1 where the target lives and 0 at the noise-only wavenumbers, and the
    filtered prediction never holds more power per wavenumber than the target (Cauchy-Schwarz)."""
    gen = torch.Generator().manual_seed(0)
    samples = 256
    lon = torch.tensor(LON, dtype=torch.float32)
    phase = 2 * np.pi * torch.rand(samples, 3, generator=gen)
    circle = sum(torch.cos(k * lon[None, :] + phase[:, k - 1 : k]) for k in (1, 2, 3))  # (S, n_lon)
    target = circle[:, None, :, None].expand(samples, N_LAT, N_LON, 1).reshape(samples, -1, 1)
    noise_phase = 2 * np.pi * torch.rand(samples, 4, generator=gen)
    noise = sum(0.3 * torch.cos(k * lon[None, :] + noise_phase[:, k - 5 : k - 4]) for k in (5, 6, 7, 8))
    prediction = target + noise[:, None, :, None].expand(samples, N_LAT, N_LON, 1).reshape(samples, -1, 1)

    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1)
    optimiser = torch.optim.Adam(gain.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.mean((gain(prediction) - target) ** 2)
        loss.backward()
        optimiser.step()

    g = gain.gain.detach()[:, 0]  # (K,)
    torch.testing.assert_close(g[1:4], torch.ones(3), atol=0.02, rtol=0)
    assert g[5:9].abs().max() < 0.05

    def power(x: torch.Tensor) -> torch.Tensor:  # (K,) mean over samples and circles
        return torch.fft.rfft(x.reshape(-1, N_LAT, N_LON), dim=2).abs().pow(2).mean(dim=(0, 1))

    filtered = power(gain(prediction).detach())
    assert (filtered <= 1.05 * power(target) + 1e-6).all()
    assert power(prediction)[5:9].min() > 100 * filtered[5:9].max()


STATISTICS = xr.Dataset(
    {"surface_pressure": (("statistic",), np.array([1.0e5, 1.0e3, 50.0, 9.0e4, 1.05e5]))},
    coords={"statistic": ["mean", "std", "tendency_std", "min", "max"]},
)
LAYOUT = ChannelLayout.of(["surface_pressure"], [])


def test_forecaster_builds_the_gain_from_the_graphs_grid():
    lat = np.linspace(-78.75, 78.75, 8)
    graph = build_graph(GraphParams(refinement=1), lat, np.arange(0.0, 360.0, 22.5))
    params = ModelParams(hidden_dim=16, processor_layers=1, zonal_spectral_gain=True)
    forecaster = Forecaster.build(params, graph, LAYOUT, [], [], STATISTICS)
    assert isinstance(forecaster.zonal_gain, ZonalSpectralGain)
    assert (forecaster.zonal_gain.n_lat, forecaster.zonal_gain.n_lon) == (8, 16)
    assert "zonal_gain.delta" in forecaster.state_dict()
    assert Forecaster.build(params.model_copy(update={"zonal_spectral_gain": False}), graph, LAYOUT, [], [], STATISTICS).zonal_gain is None


def test_forecaster_refuses_the_gain_on_unevenly_spaced_longitudes():
    lon = np.array([0.0, 10.0, 30.0, 60.0, 100.0, 150.0, 210.0, 280.0])
    graph = build_graph(GraphParams(refinement=0), np.linspace(-60.0, 60.0, 5), lon)
    params = ModelParams(hidden_dim=16, processor_layers=1, zonal_spectral_gain=True)
    with pytest.raises(ValueError, match="equally spaced longitudes"):
        Forecaster.build(params, graph, LAYOUT, [], [], STATISTICS)
