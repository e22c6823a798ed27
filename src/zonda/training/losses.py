"""Training losses on normalised tendencies (GraphCast's objective).

Per-channel weights
-------------------
:func:`channel_weights` builds the ``(C,)`` weight of every output channel
from ``training.loss_weights`` and the :class:`~zonda.channels.ChannelLayout`:

* atmospheric channel ``v/p``: ``w_v * l_p`` with the per-variable weight
  ``w_v`` (``loss_weights.variables``, default 1) and the level weight
  ``l_p = p / mean(levels)`` (``levels: pressure``, GraphCast: proportional to
  the pressure level, normalised to mean 1 over the levels) or ``l_p = 1``
  (``levels: uniform``);
* surface channel ``v``: ``w_v * 1``.

Rollout loss
------------
:func:`rollout_loss` runs ``R`` autoregressive 6-hour steps (gradients flow
through every step) and returns the mean over steps of the per-step weighted
MSE. Step ``k`` compares the network's normalised tendency with the target
tendency *relative to the input state of that step*, which for ``k > 1`` is
the model's own previous prediction ``x_hat(k-1)``::

    pred_k   = (x_hat(k) - x_hat(k-1)) / sigma_diff   (the network output)
    target_k = (x(k)     - x_hat(k-1)) / sigma_diff
    pred_k - target_k = (x_hat(k) - x(k)) / sigma_diff

so the loss is GraphCast's: the error of the predicted state against the truth
at every lead time, in units of the 6-hour tendency standard deviation
(GraphCast's per-variable inverse variance of time differences), weighted by
cell area and channel weight, averaged over leads. For ``k = 1`` it is the
usual one-step tendency loss. The steps come from the forecaster's one step loop,
:meth:`zonda.models.Forecaster.rollout_steps`, the same loop that makes forecasts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

from zonda.channels import ChannelLayout
from zonda.params import LossWeightParams
from zonda.training.errors import TrainingInputError

if TYPE_CHECKING:
    from zonda.models.forecaster import Forecaster


def level_weights(levels: list[int] | tuple[int, ...], mode: str) -> np.ndarray:
    """``(L,)`` weight per pressure level: ``p / mean(p)`` for ``pressure``, ones for ``uniform``."""
    p = np.asarray(levels, dtype=np.float64)
    if mode == "pressure":
        if p.size == 0 or (p <= 0).any():
            raise TrainingInputError(f"training.loss_weights.levels='pressure' needs positive levels, got {list(levels)}")
        return p / p.mean()
    if mode == "uniform":
        return np.ones_like(p)
    raise TrainingInputError(f"training.loss_weights.levels must be 'pressure' or 'uniform', got {mode!r}")


def channel_weights(layout: ChannelLayout, loss_weights: LossWeightParams) -> np.ndarray:
    """``(C,)`` float64 loss weight of every channel of ``layout``, in channel order.

    Raises ValueError when ``loss_weights.variables`` names a variable that is
    not in the layout (a typo would otherwise silently weigh nothing).
    """
    unknown = sorted(set(loss_weights.variables) - set(layout.variables))
    if unknown:
        raise TrainingInputError(
            f"training.loss_weights.variables names {unknown}, which are not trained channels ({list(layout.variables)})"
        )
    per_level = dict(zip(layout.levels, level_weights(list(layout.levels), loss_weights.levels)))
    out = []
    for name, level in layout.entries:
        w = float(loss_weights.variables.get(name, 1.0))
        out.append(w * (1.0 if level is None else per_level[level]))
    weights = np.asarray(out, dtype=np.float64)
    if weights.sum() <= 0:
        raise TrainingInputError("training.loss_weights gives every channel weight 0")
    return weights


class WeightedMSELoss(nn.Module):
    """Area- and channel-weighted mean squared error (GraphCast's training loss).

    ``loss = sum_{b,g,c} a_g w_c (pred - target)^2 / (B * sum_g a_g * sum_c w_c)``

    where ``a_g`` are grid-cell area weights (WB2: proportional to the
    difference of sin of the latitude cell bounds) and ``w_c`` the per-channel
    weights (per-variable weight times per-level weight, see
    :func:`channel_weights`). With all weights equal it is the plain MSE.
    Inputs are normalised tendencies, so the per-channel scale
    ``1/sigma_diff^2`` of GraphCast is already applied.

    The weights are configuration, not state: they are non-persistent buffers
    (not in checkpoints), so a run forked with other loss weights uses its own.

    Args:
      area_weights: ``(G,)`` non-negative weights per grid point (injected).
      channel_weights: ``(C,)`` non-negative weights per output channel (injected).
    """

    def __init__(self, area_weights: torch.Tensor, channel_weights: torch.Tensor) -> None:
        super().__init__()
        area_weights = torch.as_tensor(area_weights, dtype=torch.float32)
        channel_weights = torch.as_tensor(channel_weights, dtype=torch.float32)
        if area_weights.ndim != 1 or channel_weights.ndim != 1:
            raise TrainingInputError("area_weights and channel_weights must be 1-D")
        if (area_weights < 0).any() or (channel_weights < 0).any():
            raise TrainingInputError("loss weights must be non-negative")
        if area_weights.sum() <= 0 or channel_weights.sum() <= 0:
            raise TrainingInputError("loss weights must not all be zero")
        self.register_buffer("area_weights", area_weights / area_weights.sum(), persistent=False)
        self.register_buffer("channel_weights", channel_weights / channel_weights.sum(), persistent=False)

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: ``(..., G, C)`` -> ``(...)`` weighted mean squared error per sample (float32)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        g, c = pred.shape[-2:]
        if g != self.area_weights.shape[0] or c != self.channel_weights.shape[0]:
            raise ValueError(
                f"inputs have {g} grid points and {c} channels, the loss weights "
                f"{self.area_weights.shape[0]} and {self.channel_weights.shape[0]}"
            )
        sq = (pred.float() - target.float()) ** 2
        per_point = (sq * self.channel_weights).sum(-1)  # (..., G)
        return (per_point * self.area_weights).sum(-1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: ``(B, G, C)`` (or ``(G, C)``). Returns a scalar: the mean over samples."""
        return self.per_sample(pred, target).mean()


class RolloutResult(NamedTuple):
    """What :func:`rollout_loss` returns.

    Attributes:
      loss: scalar, mean over steps of ``step_losses``.
      step_losses: ``(R,)`` loss of each 6-hour step (still attached to the graph).
      predictions: ``(B, R, G, C)`` predicted states in physical units.
    """

    loss: torch.Tensor
    step_losses: torch.Tensor
    predictions: torch.Tensor


def rollout_loss(
    forecaster: Forecaster,
    loss_fn: nn.Module,
    states: torch.Tensor,
    forcings: torch.Tensor,
    static: torch.Tensor,
    targets: torch.Tensor,
) -> RolloutResult:
    """GraphCast's autoregressive training loss over ``R = targets.shape[1]`` steps.

    Args:
      forecaster: the :class:`~zonda.models.Forecaster`; its step loop
        (:meth:`~zonda.models.Forecaster.rollout_steps`) makes the predictions.
      loss_fn: maps normalised ``(B, G, C)`` prediction and target to a scalar
        (e.g. :class:`WeightedMSELoss`).
      states: ``(B, T_in, G, C)`` input states, physical units.
      forcings: ``(B, T_in + R, G, F)`` forcings at the input and forecast times.
      static: ``(G, S)`` static fields.
      targets: ``(B, R, G, C)`` true states at ``t + 6h .. t + 6h R``.

    The state fed to step ``k`` contains the model's own predictions (not
    detached), so the loss of step ``k`` back-propagates through steps
    ``1..k-1``. See the module docstring for the exact definition.
    """
    steps = targets.shape[1]
    t_in = forecaster.input_steps
    if steps < 1:
        raise ValueError("targets must hold at least one step")
    if forcings.shape[1] != t_in + steps:
        raise ValueError(f"forcings hold {forcings.shape[1]} times, expected T_in + R = {t_in + steps}")
    losses, predictions = [], []
    for k, step in enumerate(forecaster.rollout_steps(states, forcings, static, steps)):
        target = forecaster.normalised_target_tendency(step.input_state, targets[:, k])  # (B, G, C)
        losses.append(loss_fn(step.tendency, target.to(step.tendency.dtype)))
        predictions.append(step.state)  # (B, G, C)
    step_losses = torch.stack(losses)  # (R,)
    return RolloutResult(step_losses.mean(), step_losses, torch.stack(predictions, dim=1))
