"""The ``_target_`` resolver: a pluggable class (optimizer, scheduler, loss) chosen by import path."""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


# Top-level packages of pyproject.toml's `model` extra that a `_target_` may name.
MODEL_EXTRA_PACKAGES = frozenset({"torch", "lightning", "torch_geometric"})


class TargetSpec(BaseModel):
    """A class chosen by import path, Anemoi style: ``{_target_: a.b.C, **kwargs}``.

    Validation imports the module and checks that the kwargs bind to the
    callable's signature, so a typo fails at load time, not mid-training.
    A target whose module needs a package of the ``model`` extra (torch,
    Lightning, PyG: ``torch.optim.AdamW``, ``zonda.training.losses...``) is
    checked where that extra is installed: the zonda-data image has none of it
    (its snapshot and statistics tasks load the whole params but build no
    optimizer), the training image and the submitting venv have it. Any other
    package that does not import fails here.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    target: str = Field(alias="_target_", pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def resolve(self) -> Any:
        module_name, _, attr = self.target.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import module {module_name!r} of _target_ {self.target!r}: {exc}") from None
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (_target_ {self.target!r})") from None

    @model_validator(mode="after")
    def _importable_and_binds(self) -> "TargetSpec":
        for key, value in self.kwargs.items():
            if _has_non_finite(value):
                raise ValueError(f"{key} of {self.target} must be finite, got {value!r}")
        try:
            importlib.import_module(self.target.rpartition(".")[0])
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] in MODEL_EXTRA_PACKAGES:
                return self  # torch-side code where the model extra is not installed (zonda-data)
        except ImportError:
            pass  # resolve() names it
        obj = self.resolve()
        if not callable(obj):
            raise ValueError(f"_target_ {self.target!r} is not callable")
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return self
        try:
            # The first positional argument (params / model) is injected at build time.
            sig.bind_partial(*([None] * _injected_positional(sig)), **self.kwargs)
        except TypeError as exc:
            raise ValueError(f"kwargs do not fit {self.target}: {exc}") from None
        return self

    def instantiate(self, *args: Any, **injected: Any) -> Any:
        return self.resolve()(*args, **{**self.kwargs, **injected})

    def dump(self) -> dict[str, Any]:
        return {"_target_": self.target, **self.kwargs}


def _has_non_finite(value: Any) -> bool:
    """Whether a kwarg (a number, or a list/mapping of them) holds inf or nan."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


def _injected_positional(sig: inspect.Signature) -> int:
    params = [p for p in sig.parameters.values() if p.name != "self"]
    if params and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ) and params[0].default is inspect.Parameter.empty:
        return 1
    return 0
