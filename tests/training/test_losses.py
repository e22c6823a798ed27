"""Loss weights against hand computations; the rollout loss and its gradient flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zonda.channels import ChannelLayout
from zonda.grid import grid_area_weights
from zonda.models import Forecaster, Normalisation
from zonda.params import LossWeightParams
from zonda.training.losses import WeightedMSELoss, channel_weights, rollout_loss

LAYOUT = ChannelLayout.of(["temperature", "geopotential", "surface_pressure"], [850, 500])


def test_channel_weights_pressure_levels_by_hand():
    weights = LossWeightParams(variables={"temperature": 2.0, "surface_pressure": 0.5}, levels="pressure")
    # Channels: T500, T850, Z500, Z850, sp. Level weights p / mean(p): 500/675, 850/675.
    expected = [2 * 500 / 675, 2 * 850 / 675, 500 / 675, 850 / 675, 0.5]
    assert LAYOUT.names == ["temperature/500", "temperature/850", "geopotential/500", "geopotential/850", "surface_pressure"]
    np.testing.assert_allclose(channel_weights(LAYOUT, weights), expected, rtol=1e-12)


def test_channel_weights_uniform_levels_by_hand():
    weights = LossWeightParams(variables={"geopotential": 3.0}, levels="uniform")
    np.testing.assert_allclose(channel_weights(LAYOUT, weights), [1, 1, 3, 3, 1])


def test_loss_weight_of_an_untrained_variable_is_rejected():
    weights = LossWeightParams(variables={"u_component_of_wind": 1.0})
    with pytest.raises(ValueError, match="u_component_of_wind"):
        channel_weights(LAYOUT, weights)


def test_weighted_mse_by_hand():
    # Latitudes -60, 0, 60 (one longitude): cells [-90,-30], [-30,30], [30,90];
    # areas ~ sin differences 0.5, 1, 0.5.
    area = grid_area_weights(np.array([-60.0, 0.0, 60.0]), 1)
    np.testing.assert_allclose(area / area.sum(), [0.25, 0.5, 0.25])
    cw = np.array([2.0, 1.0])
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]]])
    target = torch.zeros_like(pred)
    # sum_g a_g sum_c w_c e^2 / (sum a * sum w):
    #   g0: 0.25 * (2*1 + 1*0) = 0.5 ; g1: 0.5 * (0 + 1*4) = 2 ; g2: 0.25 * (2*9 + 1*1) = 4.75
    expected = (0.5 + 2.0 + 4.75) / 3.0
    loss = WeightedMSELoss(torch.tensor(area), torch.tensor(cw))(pred, target)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_weighted_mse_with_equal_weights_is_the_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 10, 4, generator=g), torch.randn(3, 10, 4, generator=g)
    loss = WeightedMSELoss(torch.ones(10), torch.ones(4))(pred, target)
    torch.testing.assert_close(loss, nn.functional.mse_loss(pred, target))


class PointwiseNet(nn.Module):
    """A per-grid-point MLP: the smallest real network the Forecaster can wrap."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(nn.Linear(in_channels, 16), nn.Tanh(), nn.Linear(16, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_forecaster(seed: int = 0) -> Forecaster:
    torch.manual_seed(seed)
    c, f, s = 3, 2, 1
    norm = Normalisation(
        state_mean=torch.tensor([250.0, 5e4, 1e5]), state_std=torch.tensor([10.0, 1e3, 500.0]),
        tendency_std=torch.tensor([2.0, 50.0, 100.0]), forcing_mean=torch.zeros(f), forcing_std=torch.ones(f),
        static_mean=torch.zeros(s), static_std=torch.ones(s),
    )
    return Forecaster(PointwiseNet(2 * c + 3 * f + s, c), norm, input_steps=2)


def rollout_batch(steps: int, batch: int = 2, grid: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([250.0, 5e4, 1e5])
    scale = torch.tensor([10.0, 1e3, 500.0])
    states = base + scale * torch.randn(batch, 2, grid, 3, generator=g)
    targets = base + scale * torch.randn(batch, steps, grid, 3, generator=g)
    forcings = torch.randn(batch, 2 + steps, grid, 2, generator=g)
    static = torch.randn(grid, 1, generator=g)
    return states, forcings, static, targets


def test_rollout_loss_is_the_state_error_in_tendency_std_units():
    fc = tiny_forecaster()
    states, forcings, static, targets = rollout_batch(steps=3)
    area, cw = torch.rand(6) + 0.5, torch.tensor([1.0, 2.0, 0.5])
    loss_fn = WeightedMSELoss(area, cw)
    result = rollout_loss(fc, loss_fn, states, forcings, static, targets)
    # Independent reference: the models' own rollout, then GraphCast's formula on states.
    with torch.no_grad():
        preds = fc.rollout(states, forcings, static, 3)
    torch.testing.assert_close(result.predictions.detach(), preds)
    sigma = torch.tensor([2.0, 50.0, 100.0])
    a, w = area / area.sum(), cw / cw.sum()
    per_step = [(((preds[:, k] - targets[:, k]) / sigma) ** 2 * w).sum(-1).mul(a).sum(-1).mean() for k in range(3)]
    torch.testing.assert_close(result.step_losses.detach(), torch.stack(per_step), rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(result.loss.detach(), torch.stack(per_step).mean(), rtol=2e-4, atol=1e-6)


def test_gradients_reach_the_parameters_from_every_rollout_step_through_earlier_steps():
    fc = tiny_forecaster()
    states, forcings, static, targets = rollout_batch(steps=3)
    outputs: list[torch.Tensor] = []
    handle = fc.network.register_forward_hook(lambda m, i, o: outputs.append(o))
    result = rollout_loss(fc, WeightedMSELoss(torch.ones(6), torch.ones(3)), states, forcings, static, targets)
    handle.remove()
    params = [p for p in fc.parameters() if p.requires_grad]
    for k in range(3):
        # Step k's loss depends on every earlier step's network output (no detach in the rollout) ...
        grads = torch.autograd.grad(result.step_losses[k], outputs[: k + 1], retain_graph=True)
        assert all(float(g.abs().sum()) > 0 for g in grads), f"step {k + 1} loss does not reach earlier outputs"
        # ... and reaches every parameter.
        pgrads = torch.autograd.grad(result.step_losses[k], params, retain_graph=True)
        assert all(math.isfinite(float(g.abs().sum())) and float(g.abs().sum()) > 0 for g in pgrads)
