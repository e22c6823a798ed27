"""The learned zonal-wavenumber gain: the identity at start, exact on analytic waves, a Wiener filter when fitted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from zonda.channels import ChannelLayout
from zonda.graph import build_graph
from zonda.models import Forecaster
from zonda.models.zonal_gain import ZonalSpectralGain, resolved_wavenumbers
from zonda.params import GraphParams, ModelParams
from zonda.statistics import zonal_power_name

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


def test_a_bfloat16_tendency_leaves_in_float32_without_rounding_noise_above_the_resolved_band():
    """bf16 rounding is noise at every wavenumber; rounding again on the way out would put it back."""
    resolved = np.ones((N_LAT, N_LON // 2 + 1, 1), dtype=np.float32)
    resolved[:, 5:, :] = 0.0
    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1, resolved=resolved)
    x = waves({3: 1.0, 4: 0.3}) * 1.001  # bf16 cannot hold these values exactly
    y = gain(x.bfloat16()).detach()
    assert y.dtype == torch.float32
    spectrum = torch.fft.rfft(y.reshape(N_LAT, N_LON), dim=1).abs()  # (n_lat, K)
    assert spectrum[:, 5:].max() < 1e-5  # float32 FFT round-off only
    assert torch.fft.rfft(y.bfloat16().float().reshape(N_LAT, N_LON), dim=1).abs()[:, 5:].max() > 1e-3
    torch.testing.assert_close(y, waves({3: 1.001, 4: 0.3003}), atol=8e-3, rtol=0)  # bf16's relative precision 2**-8


def test_the_resolved_mask_removes_a_wavenumber_on_one_circle_only():
    resolved = np.ones((N_LAT, N_LON // 2 + 1, 1), dtype=np.float32)
    resolved[0, 6:, 0] = 0.0  # the first circle holds wavenumbers 0-5 only
    gain = ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1, resolved=resolved)
    y = gain(waves({2: 1.0, 6: 0.5})).detach().reshape(N_LAT, N_LON)
    expected = waves({2: 1.0, 6: 0.5}).reshape(N_LAT, N_LON).clone()
    expected[0] = waves({2: 1.0}).reshape(N_LAT, N_LON)[0]
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)
    assert "zonal_gain.resolved" not in {f"zonal_gain.{k}" for k in gain.state_dict()}  # rebuilt, not saved


def test_the_resolved_mask_must_fit_the_grid():
    with pytest.raises(ValueError, match=r"resolved mask must be \(n_lat, K, C\) = \(4, 9, 1\)"):
        ZonalSpectralGain(n_lat=N_LAT, n_lon=N_LON, channels=1, resolved=np.ones((4, 8, 1)))


def test_resolved_wavenumbers_stop_at_the_first_one_under_the_floor():
    k = np.arange(17, dtype=np.float64)
    truncated = np.where(k <= 10, (1.0 + k) ** -2.0, 1e-9)  # 1/121 at k = 10, a cliff after it
    truncated[14] = 0.5  # a spike above the cliff: not resolved, the band ended at 11
    steep = 10.0 ** -k  # falls under 1e-3 of its peak at k = 4
    empty = np.zeros_like(k)  # a circle without power (a pole)
    power = np.stack([truncated, steep, empty])[:, :, None]  # (n_lat=3, K=17, C=1)
    mask = resolved_wavenumbers(power, floor=1e-3)[:, :, 0]
    np.testing.assert_array_equal(mask[0], (k <= 10).astype(np.float32))
    np.testing.assert_array_equal(mask[1], (k <= 3).astype(np.float32))
    np.testing.assert_array_equal(mask[2], (k == 0).astype(np.float32))
    np.testing.assert_array_equal(resolved_wavenumbers(power, floor=1e-10)[0, :, 0], np.ones(17))
    with pytest.raises(ValueError, match="floor must be in"):
        resolved_wavenumbers(power, floor=0.0)


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


def _with_tendency_power(latitudes: np.ndarray, n_lon: int, cutoff: np.ndarray) -> xr.Dataset:
    """STATISTICS plus a surface-pressure tendency spectrum resolved up to ``cutoff[i]`` on circle ``i``."""
    k = np.arange(n_lon // 2 + 1)
    power = np.where(k[None, :] <= cutoff[:, None], 1.0, 1e-8)  # (n_lat, K)
    da = xr.DataArray(power, dims=("latitude", "zonal_wavenumber"), coords={"latitude": latitudes, "zonal_wavenumber": k})
    return STATISTICS.assign({zonal_power_name("surface_pressure"): da})


def test_forecaster_takes_the_resolved_band_of_each_circle_from_the_statistics(caplog):
    lat = np.linspace(-78.75, 78.75, 8)
    graph = build_graph(GraphParams(refinement=1), lat, np.arange(0.0, 360.0, 22.5))
    cutoff = np.array([1, 3, 5, 8, 8, 5, 3, 1])
    stats = _with_tendency_power(lat, 16, cutoff)
    params = ModelParams(hidden_dim=16, processor_layers=1, zonal_spectral_gain=True)
    mask = Forecaster.build(params, graph, LAYOUT, [], [], stats).zonal_gain.resolved[:, :, 0]  # (n_lat, K)
    expected = (np.arange(9)[None, :] <= cutoff[:, None]).astype(np.float32)
    np.testing.assert_array_equal(mask.numpy(), expected)
    off = Forecaster.build(params.model_copy(update={"zonal_gain_floor": None}), graph, LAYOUT, [], [], stats)
    assert bool((off.zonal_gain.resolved == 1).all())
    with caplog.at_level("WARNING"):
        old = Forecaster.build(params, graph, LAYOUT, [], [], STATISTICS)  # statistics of an older zonda
    assert bool((old.zonal_gain.resolved == 1).all()) and "no tendency zonal power for surface_pressure" in caplog.text
    other_grid = _with_tendency_power(np.linspace(-80.0, 80.0, 8), 16, cutoff)
    with pytest.raises(ValueError, match="not the graph grid's"):
        Forecaster.build(params, graph, LAYOUT, [], [], other_grid)
