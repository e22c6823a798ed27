"""Numeric precision of a forecaster's forward pass, for training and for inference.

A model trained under bf16 autocast (``training.precision: bf16-mixed``, or ``auto`` on hardware
with bf16 kernels) is the model it was validated as; its forecasts run under the same autocast
wherever the device has bf16 kernels, so evaluation scores the model the registry serves, in the
precision it learned in. The model card records the training precision (``training.precision``).
The state update (``input_state + tendency_std * tendency``) stays float32 under autocast:
autocast lowers matmuls and linear layers only.

``evaluation.precision`` and the registered model resolve inference precision the same way
(:func:`inference_precision`): ``auto`` follows the card where the device runs bf16 natively,
else float32; an explicit ``32-true`` or ``bf16-mixed`` is used as given.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import torch

AUTO = "auto"
FLOAT32 = "32-true"
BF16_MIXED = "bf16-mixed"
INFERENCE_PRECISIONS = (AUTO, FLOAT32, BF16_MIXED)


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` (``cuda`` or ``cpu``) has bf16 kernels (tensor cores; oneDNN AVX-512 BF16 / AMX)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def trained_precision(card: Mapping) -> str:
    """The precision a saved model trained in (its card's ``training.precision``; float32 for cards before it)."""
    return str(card.get("training", {}).get("precision", FLOAT32))


def inference_precision(requested: str, *, trained: str, device: torch.device) -> str:
    """``32-true`` or ``bf16-mixed``: what a forecast runs in (see the module docstring)."""
    if requested not in INFERENCE_PRECISIONS:
        raise ValueError(f"inference precision must be one of {', '.join(INFERENCE_PRECISIONS)}, not {requested!r}")
    if requested != AUTO:
        return requested
    return BF16_MIXED if trained.startswith("bf16") and native_bf16(device.type) else FLOAT32


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """torch autocast to bf16 on ``device`` for ``bf16-mixed``; nothing for ``32-true``."""
    if precision not in (FLOAT32, BF16_MIXED):
        raise ValueError(f"precision must be {FLOAT32} or {BF16_MIXED}, not {precision!r}")
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == BF16_MIXED):
        yield
