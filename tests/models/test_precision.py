"""Inference precision: a model trained in bf16 forecasts in bf16 where the device has bf16 kernels, else in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from zonda.channels import ChannelLayout
from zonda.graph import build_graph
from zonda.models import Forecaster
from zonda.models import precision
from zonda.params import GraphParams, ModelParams

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("requested", "trained", "native", "expected"),
    [
        ("auto", "bf16-mixed", True, "bf16-mixed"),  # as trained, where the device runs bf16 natively
        ("auto", "bf16-mixed", False, "32-true"),  # emulated bf16 would be slower than float32
        ("auto", "32-true", True, "32-true"),  # a float32 model stays float32
        ("32-true", "bf16-mixed", True, "32-true"),  # an explicit choice is kept
        ("bf16-mixed", "32-true", False, "bf16-mixed"),
    ],
)
def test_inference_precision_follows_training_and_the_device(monkeypatch, requested, trained, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda device_type: native)
    assert precision.inference_precision(requested, trained=trained, device=CPU) == expected


def test_a_card_without_a_training_precision_is_float32():
    assert precision.trained_precision({"training": {"global_step": 3}}) == "32-true"
    assert precision.trained_precision({"training": {"precision": "bf16-mixed"}}) == "bf16-mixed"


def test_an_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="auto, 32-true, bf16-mixed, not '16-mixed'"):
        precision.inference_precision("16-mixed", trained="32-true", device=CPU)
    with pytest.raises(ValueError, match="32-true or bf16-mixed"):
        with precision.autocast("auto", CPU):
            pass


STATISTICS = xr.Dataset(
    {"temperature": (("statistic", "level"), np.array([[250.0], [20.0], [1.5], [180.0], [320.0]]))},
    coords={"statistic": ["mean", "std", "tendency_std", "min", "max"], "level": [500]},
)
LAYOUT = ChannelLayout.of(["temperature"], [500])


def test_a_bf16_rollout_keeps_float32_states_and_stays_within_bf16_rounding_of_float32():
    """Autocast lowers the network's matmuls to bf16 (8 significant bits); the state update stays float32,
    so a 4-step forecast differs from the float32 one by about bf16's relative rounding of the tendencies."""
    torch.manual_seed(0)
    lat, lon = np.linspace(-78.75, 78.75, 8), np.arange(0.0, 360.0, 22.5)
    graph = build_graph(GraphParams(refinement=1), lat, lon)
    forecaster = Forecaster.build(ModelParams(hidden_dim=32, processor_layers=2), graph, LAYOUT, [], [], STATISTICS).eval()
    states = 250.0 + 20.0 * torch.randn(2, forecaster.input_steps, lat.size * lon.size, 1)  # (B, T_in, G, C)
    forcings = torch.zeros(2, forecaster.input_steps + 4, lat.size * lon.size, 0)
    static = torch.zeros(lat.size * lon.size, 0)
    with torch.inference_mode():
        full = forecaster.rollout(states, forcings, static, 4)  # (B, 4, G, C)
        with precision.autocast("bf16-mixed", CPU):
            low = forecaster.rollout(states, forcings, static, 4)
    assert low.dtype == torch.float32
    change = (full - states[:, -1:]).abs().max()  # how far the float32 forecast moved, K
    assert change > 0.1
    assert (low - full).abs().max() < 0.05 * change  # bf16 rounds at 2^-8 = 0.4%; a few % over 4 steps
    assert not torch.equal(low, full)  # the bf16 path really ran
