"""The 6-hour forecaster: a network predicting normalised tendencies (GraphCast style).

Given the states at ``t - 6h (T_in - 1)``, ..., ``t`` and the forcings at those
times and at ``t + 6h``, the network sees, per grid point, the channels::

    [normalised states (T_in * C, time-major: all C channels of the oldest state first),
     normalised forcings ((T_in + 1) * F, time-major),
     normalised static fields (S)]

and predicts ``(x(t+6h) - x(t)) / tendency_std`` (C channels). The next state
is ``x(t) + tendency_std * prediction``: with a zero prediction the forecast
is persistence. Inputs and outputs of :meth:`Forecaster.step` and
:meth:`Forecaster.rollout` are in physical units. :meth:`Forecaster.rollout_steps`
is the one autoregressive step loop: forecasts (:meth:`Forecaster.rollout`) and
the training loss (:func:`zonda.training.losses.rollout_loss`) both consume it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Iterator, NamedTuple, Sequence

import torch
import xarray as xr
from torch import nn
from torch_geometric.data import HeteroData

from zonda.channels import ChannelLayout
from zonda.grid import check_full_circle
from zonda.models.encode_process_decode import build_network
from zonda.models.normalisation import Normalisation
from zonda.models.zonal_gain import ZonalSpectralGain, resolved_wavenumbers, tendency_zonal_power
from zonda.params import ModelParams, Params


def input_channels(input_steps: int, state_channels: int, forcings: int, static: int) -> int:
    """Width of the network input: ``T_in * C`` states, ``(T_in + 1) * F`` forcings, ``S`` static fields."""
    return input_steps * state_channels + (input_steps + 1) * forcings + static


def inference_device() -> torch.device:
    """Where forecasts run: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class RolloutStep(NamedTuple):
    """One 6-hour step of :meth:`Forecaster.rollout_steps` (all ``(B, G, C)``).

    Attributes:
        input_state: the state the step starts from, physical units (the last of its input window).
        tendency: the network's prediction, the 6-hour tendency in units of ``tendency_std``.
        state: the predicted next state, physical units: ``input_state + tendency_std * tendency``.
    """

    input_state: torch.Tensor
    tendency: torch.Tensor
    state: torch.Tensor


class Forecaster(nn.Module):
    """Wraps a network ``(B, G, in_channels) -> (B, G, C)`` into a residual 6-hour forecaster.

    Args:
        network: maps ``(B, G, T_in*C + (T_in+1)*F + S)`` to ``(B, G, C)``.
        normalisation: constants; stored as buffers ``norm_<field>``.
        input_steps: ``T_in``.
        zonal_gain: optional :class:`~zonda.models.zonal_gain.ZonalSpectralGain` applied to the network's output.
    """

    def __init__(
        self, network: nn.Module, normalisation: Normalisation, input_steps: int, zonal_gain: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.network = network
        self.zonal_gain = zonal_gain
        self.input_steps = int(input_steps)
        for f in fields(Normalisation):
            self.register_buffer(f"norm_{f.name}", getattr(normalisation, f.name).float().clone())
        expected = input_channels(self.input_steps, self.num_channels, self.num_forcings, self.num_static)
        in_channels = getattr(network, "in_channels", expected)
        if in_channels != expected:
            raise ValueError(f"network takes {in_channels} input channels, the forecaster feeds {expected}")

    @classmethod
    def build(
        cls,
        params: Params | ModelParams,
        graph: HeteroData,
        layout: ChannelLayout,
        forcing_names: Sequence[str],
        static_names: Sequence[str],
        statistics: xr.Dataset,
    ) -> "Forecaster":
        """Forecaster with an :class:`~zonda.models.encode_process_decode.EncodeProcessDecode` network."""
        model_params = params.model if isinstance(params, Params) else params
        norm = Normalisation.from_statistics(statistics, layout, list(forcing_names), list(static_names))
        steps = model_params.input_steps
        in_channels = input_channels(steps, len(layout), len(forcing_names), len(static_names))
        network = build_network(model_params, graph, in_channels, len(layout))
        zonal_gain = None
        if model_params.zonal_spectral_gain:
            grid = getattr(graph, "graph_meta", {}).get("grid")
            if grid is None:
                raise ValueError("model.zonal_spectral_gain needs a graph built by zonda.graph.build_graph (its grid shape)")
            check_full_circle(
                grid["longitudes"], what="model.zonal_spectral_gain needs equally spaced longitudes around the whole circle"
            )
            resolved = None
            if model_params.zonal_gain_floor is not None:
                power = tendency_zonal_power(statistics, layout, latitudes=grid["latitudes"], n_lon=grid["n_lon"])
                if power is not None:
                    resolved = resolved_wavenumbers(power, floor=model_params.zonal_gain_floor)
            zonal_gain = ZonalSpectralGain(n_lat=grid["n_lat"], n_lon=grid["n_lon"], channels=len(layout), resolved=resolved)
        return cls(network, norm, steps, zonal_gain)

    @property
    def normalisation(self) -> Normalisation:
        """The constants, as tensors on the module's device."""
        return Normalisation(**{f.name: getattr(self, f"norm_{f.name}") for f in fields(Normalisation)})

    @property
    def num_channels(self) -> int:
        return int(self.norm_state_mean.shape[0])

    @property
    def num_forcings(self) -> int:
        return int(self.norm_forcing_mean.shape[0])

    @property
    def num_static(self) -> int:
        return int(self.norm_static_mean.shape[0])

    def network_input(self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """``(B, T_in, G, C)``, ``(B, T_in+1, G, F)``, ``(G, S)`` physical -> ``(B, G, in_channels)`` normalised."""
        self._check(states, forcings, static, self.input_steps + 1)
        norm = self.normalisation
        batch, _, grid, _ = states.shape
        parts = [
            _time_to_channels(norm.normalise_state(states)),
            _time_to_channels(norm.normalise_forcing(forcings)),
            norm.normalise_static(static).to(states.dtype).expand(batch, grid, -1),
        ]
        return torch.cat(parts, dim=-1)

    def predict_normalised_tendency(self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """The network's output ``(B, G, C)`` (through the zonal gain if any): the 6-hour tendency in units of ``tendency_std``."""
        tendency = self.network(self.network_input(states, forcings, static))  # (B, G, C)
        return tendency if self.zonal_gain is None else self.zonal_gain(tendency)

    def step(self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """Next state ``(B, G, C)`` in physical units: ``states[:, -1] + tendency_std * prediction``.

        ``states`` ``(B, T_in, G, C)``, ``forcings`` ``(B, T_in + 1, G, F)``, ``static`` ``(G, S)``:
        the first step of :meth:`rollout_steps`.
        """
        return next(self.rollout_steps(states, forcings, static, 1)).state

    def normalised_target_tendency(self, states_last: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """Training target ``(next_state - states_last) / tendency_std``, ``(B, G, C)``."""
        return (next_state - states_last) / self.norm_tendency_std

    def rollout_steps(
        self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor, steps: int
    ) -> Iterator[RolloutStep]:
        """The one autoregressive step loop: yields each 6-hour step's :class:`RolloutStep` in turn.

        Step ``k`` (0-based) feeds the network the window of the last ``T_in`` states (the
        initial states, then the forecaster's own predictions, not detached: gradients flow
        through every step) and the forcings at the window's times and the next time.
        :meth:`rollout` stacks the states; the training loss compares each tendency with
        :meth:`normalised_target_tendency` of the step's input state.

        Args:
            states: ``(B, T_in, G, C)`` initial states, physical units.
            forcings: ``(B, T_in + steps, G, F)``, at the input times and every forecast time.
            static: ``(G, S)``.
            steps: number of 6-hour steps.
        """
        self._check(states, forcings, static, self.input_steps + steps)
        window = states  # (B, T_in, G, C)
        for k in range(steps):
            step_forcings = forcings[:, k : k + self.input_steps + 1]  # (B, T_in + 1, G, F)
            tendency = self.predict_normalised_tendency(window, step_forcings, static)  # (B, G, C) normalised
            last = window[:, -1]  # (B, G, C)
            state = last + tendency.to(last.dtype) * self.norm_tendency_std.to(last.dtype)  # (B, G, C) physical
            yield RolloutStep(input_state=last, tendency=tendency, state=state)
            window = torch.cat([window[:, 1:], state.unsqueeze(1)], dim=1)  # (B, T_in, G, C)

    def rollout(self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive forecast ``(B, steps, G, C)`` in physical units (:meth:`rollout_steps`' states).

        Args:
            states: ``(B, T_in, G, C)`` initial states.
            forcings: ``(B, T_in + steps, G, F)``, at the input times and every forecast time.
            static: ``(G, S)``.
            steps: number of 6-hour steps.
        """
        return torch.stack([step.state for step in self.rollout_steps(states, forcings, static, steps)], dim=1)

    def _check(self, states: torch.Tensor, forcings: torch.Tensor, static: torch.Tensor, forcing_times: int) -> None:
        t, c, f, s = self.input_steps, self.num_channels, self.num_forcings, self.num_static
        if states.ndim != 4 or states.shape[1] != t or states.shape[3] != c:
            raise ValueError(f"states must be (B, {t}, G, {c}), got {tuple(states.shape)}")
        b, _, g, _ = states.shape
        if tuple(forcings.shape) != (b, forcing_times, g, f):
            raise ValueError(f"forcings must be ({b}, {forcing_times}, {g}, {f}), got {tuple(forcings.shape)}")
        if tuple(static.shape) != (g, s):
            raise ValueError(f"static must be ({g}, {s}), got {tuple(static.shape)}")


def _time_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, G, K)`` -> ``(B, G, T*K)``, time-major channels."""
    b, t, g, k = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, g, t * k)
