"""Activation (gradient) checkpointing helper."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.checkpoint import checkpoint


def maybe_checkpoint(fn: Callable[..., Any], *args: Any, enabled: bool) -> Any:
    """``fn(*args)``, recomputed in the backward pass instead of storing its activations.

    Checkpointing applies only when ``enabled`` and gradients are being
    recorded (it would be pure overhead in inference). Uses the non-reentrant
    implementation, which supports keyword-free calls with tensors that do not
    require grad and autocast regions.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
