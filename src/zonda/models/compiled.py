"""Fused kernels: plain PyTorch functions compiled by ``torch.compile``, with an eager fallback.

Some steps of message passing are chains of gathers, element-wise maths,
reductions and scatters over edge-sized tensors. Run op by op, each op reads
and writes the whole ``(E, B, D)`` tensor; Inductor fuses such a chain into a
few loops (C++ with OpenMP on the CPU, Triton on the GPU). For the graph
transformer's edge attention at ``r5`` (81,900 edges, width 128, 16 heads)
that took the forward+backward from 95-100 ms to 38 ms per layer on one CPU
core of the development machine.

A :class:`FusedKernel` wraps one such function and runs it compiled. Whether
a call takes the fused path at all is the caller's choice, made with
:func:`fusion_enabled` from ``ModelParams.fused_kernels``: ``auto`` (default)
only for edge sets of at least :data:`AUTO_MIN_ELEMENTS` values, where
compiling (seconds, once per shape, cached on disk by Inductor) pays for
itself, and only where a compiler is at hand; ``on`` always, ``off`` never.
The eager path computes the same numbers (to float32 rounding).

A :class:`FusedKernel` runs its function eagerly while a ``TorchDispatchMode`` is active (e.g.
``FlopCounterMode``: Dynamo would otherwise refuse the function for the rest
of the process) and while an enclosing ``torch.compile`` is tracing (which
then fuses the function itself). If compiling fails (no C++ compiler, an
Inductor error), a ``RuntimeWarning`` says why and the kernel stays eager.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from zonda.params import FusedKernels

AUTO_MIN_ELEMENTS = 2**21  # ~2M values per edge-sized tensor (e.g. 16k edges x 128)
CXX_COMPILERS = ("c++", "g++", "clang++")
C_COMPILERS = ("cc", "gcc", "clang")


def fusion_enabled(mode: FusedKernels, elements: int, device: torch.device) -> bool:
    """Whether a fused kernel should run compiled for a call over ``elements`` edge values.

    ``on``/``off`` decide alone; ``auto`` wants at least :data:`AUTO_MIN_ELEMENTS`
    values and a compiler for ``device`` (a C++ compiler on the CPU, Triton on CUDA).
    """
    if mode == "off":
        return False
    if mode == "on":
        return True
    if mode != "auto":
        raise ValueError(f"fused_kernels must be 'auto', 'on' or 'off', got {mode!r}")
    return elements >= AUTO_MIN_ELEMENTS and compiler_available(device.type)


@functools.cache
def compiler_available(device_type: str) -> bool:
    """Whether Inductor can build kernels for ``device_type`` here (checked once per type).

    The CPU needs a C++ compiler (``$CXX`` or one on ``PATH``); CUDA needs
    Triton and the C compiler Triton builds its kernel launchers with
    (``$CC`` or one on ``PATH``); the zonda train image carries gcc for it.
    """
    if device_type == "cpu":
        return _on_path("CXX", CXX_COMPILERS)
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return _on_path("CC", C_COMPILERS)
    return False


def _on_path(variable: str, names: tuple[str, ...]) -> bool:
    """Whether the compiler named by the environment ``variable``, else one of ``names``, is on PATH."""
    chosen = os.environ.get(variable)
    return any(shutil.which(name) for name in ((chosen.split()[0],) if chosen else names))


class FusedKernel:
    """``fn`` run through ``torch.compile`` (see the module docstring for when it runs eagerly).

    Args:
        fn: a function of tensors (and Python scalars) without side effects.
        options: Inductor settings for this kernel (``torch.compile``'s ``options``),
            e.g. ``{"cpp.threads": 1}``.
    """

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self.options = options
        self.failed: str | None = None  # why compiling failed, once it has

    @functools.cached_property
    def compiled(self) -> Callable[..., Any]:
        return torch.compile(self.fn, fullgraph=True, options=self.options)

    def __call__(self, *args: Any) -> Any:
        """``fn(*args)``, compiled unless compiling failed before or cannot apply now."""
        if self.failed or is_in_torch_dispatch_mode() or torch.compiler.is_compiling():
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to the same maths
            result = self.fn(*args)  # an error of the inputs themselves is raised here, eagerly
            self.failed = f"{type(err).__name__}: {err}".splitlines()[0]
            warnings.warn(
                f"torch.compile of {self.fn.__qualname__} failed ({self.failed}); running it eagerly "
                "(set model.fused_kernels: off to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            return result
