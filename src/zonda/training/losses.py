"""Training losses on normalised tendencies."""

from __future__ import annotations

import torch
from torch import nn


class WeightedMSELoss(nn.Module):
    """Area- and channel-weighted mean squared error (GraphCast's training loss).

    ``loss = sum_{b,g,c} a_g w_c (pred - target)^2 / (B * sum_g a_g * sum_c w_c)``

    where ``a_g`` are grid-cell area weights (WB2: proportional to the
    difference of sin of the latitude cell bounds) and ``w_c`` the per-channel
    weights (per-variable weight times per-level weight). With all weights
    equal it is the plain MSE. Inputs are normalised tendencies, so the
    per-channel scale ``1/sigma_diff^2`` of GraphCast is already applied.

    Args:
      area_weights: ``(G,)`` non-negative weights per grid point (injected).
      channel_weights: ``(C,)`` non-negative weights per output channel (injected).
    """

    def __init__(self, area_weights: torch.Tensor, channel_weights: torch.Tensor) -> None:
        super().__init__()
        area_weights = torch.as_tensor(area_weights, dtype=torch.float32)
        channel_weights = torch.as_tensor(channel_weights, dtype=torch.float32)
        if area_weights.ndim != 1 or channel_weights.ndim != 1:
            raise ValueError("area_weights and channel_weights must be 1-D")
        if (area_weights < 0).any() or (channel_weights < 0).any():
            raise ValueError("loss weights must be non-negative")
        if area_weights.sum() <= 0 or channel_weights.sum() <= 0:
            raise ValueError("loss weights must not all be zero")
        self.register_buffer("area_weights", area_weights / area_weights.sum())
        self.register_buffer("channel_weights", channel_weights / channel_weights.sum())

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: ``(B, G, C)`` (or ``(G, C)``). Returns a scalar."""
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        sq = (pred.float() - target.float()) ** 2
        per_point = (sq * self.channel_weights).sum(-1)  # (..., G)
        per_sample = (per_point * self.area_weights).sum(-1)  # (...)
        return per_sample.mean()
