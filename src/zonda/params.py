"""The typed params contract: one pydantic schema with a section per stage.

Every stage, every KFP component, every DVC stage and the CLI read their
settings through :func:`load_params`, which

1. reads a YAML preset (``params/*.yaml``),
2. applies dotted command-line overrides (``training.lr=3e-4 data.levels=[500,850]``),
3. validates the result against :class:`Params` (``extra="forbid"`` everywhere),

and raises :class:`ParamsError` naming the YAML file and the dotted field path
of every problem before anything heavy runs.

Pluggable classes (optimizer, scheduler, loss) are chosen Anemoi-style by a
``_target_`` import path; the remaining keys of that mapping are its kwargs.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import inspect
import json
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from zonda.files import write_text_atomic
from zonda.variables import VARIABLES, TIME_STEP_HOURS

RESOLVED_PARAMS_FILENAME = "params.resolved.yaml"
#: What a masked secret reads as in written and logged params.
MASK = "***"
#: Words that make a key secret-looking (``aws_secret_access_key``, ``sasToken``, ``password``, ``account_key``).
SECRET_WORDS = frozenset(
    {"key", "secret", "token", "password", "passwd", "pwd", "credential", "credentials", "auth", "authorization",
     "apikey", "private", "connection", "signature", "sas"}
)
#: Dotted paths (list indices as ``*``) of subtrees whose names look secret but whose values are not:
#: a toleration's taint key, and the Kubernetes Secret *references* (secret name, key -> variable name).
_NOT_SECRET = (
    re.compile(r"^runtime\.resources\.\w+\.tolerations\.\*\.key$"),
    re.compile(r"^runtime\.resources\.\w+\.secrets_as_env$"),
)
#: Values of a secret-looking key that name an access method, not a credential (gcsfs ``token: anon``).
NOT_SECRET_VALUES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


class ParamsError(ValueError):
    """Bad params: the message names the YAML file and each dotted field path."""


class _Strict(BaseModel):
    # allow_inf_nan=False: a float field given inf or nan (training.lr=inf) is refused, naming the field.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- time


_YEAR_RANGE = re.compile(r"^(\d{4})-(\d{4})$")


def _parse_instant(text: str, *, end: bool) -> datetime:
    """Parses ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH[:MM]``.

    A bare year/month/day used as the *end* of a window means the last 6-hourly
    step inside it, so "2000-01-01/2000-01-31" includes 2000-01-31T18.
    """
    text = text.strip()
    for fmt, unit in (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day")):
        try:
            t = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not end:
            return t
        if unit == "year":
            nxt = t.replace(year=t.year + 1)
        elif unit == "month":
            nxt = t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)
        else:
            nxt = t + timedelta(days=1)
        return nxt - timedelta(hours=TIME_STEP_HOURS)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH"
        ) from None


class TimeWindow(_Strict):
    """An inclusive window of valid times.

    Written in YAML as ``"1994-1997"`` (whole years, the GraphCast style),
    ``"2000-01-01/2000-04-30"`` (ISO dates, inclusive), or a mapping
    ``{start: ..., end: ...}``.
    """

    start: datetime
    end: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _YEAR_RANGE.match(value.strip())
            if m:
                a, b = m.groups()
                return {"start": _parse_instant(a, end=False), "end": _parse_instant(b, end=True)}
            if "/" not in value:
                raise ValueError(
                    f"{value!r} is not a time window; write 'YYYY-YYYY' or 'START/END' (ISO dates)"
                )
            a, b = value.split("/", 1)
            return {"start": _parse_instant(a, end=False), "end": _parse_instant(b, end=True)}
        if isinstance(value, dict):
            out = dict(value)
            for key, is_end in (("start", False), ("end", True)):
                if isinstance(out.get(key), str):
                    out[key] = _parse_instant(out[key], end=is_end)
            return out
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "TimeWindow":
        if self.end < self.start:
            raise ValueError(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        return self

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400.0 + TIME_STEP_HOURS / 24.0

    def contains(self, other: "TimeWindow") -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: "TimeWindow") -> bool:
        return self.start <= other.end and other.start <= self.end

    def as_str(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


# ------------------------------------------------------------------- _target_


class TargetSpec(BaseModel):
    """A class chosen by import path, Anemoi style: ``{_target_: a.b.C, **kwargs}``.

    Validation imports the module and checks that the kwargs bind to the
    callable's signature, so a typo fails at load time, not mid-training.
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


# ------------------------------------------------------------------------ data

SourceKind = Literal["heldsuarez", "zarr", "netcdf", "grib", "dvc"]
FileFormat = Literal["zarr", "netcdf", "grib"]

# File suffixes a dvc source's format is inferred from when data.source.format is not set.
FORMAT_SUFFIXES: dict[str, FileFormat] = {
    ".zarr": "zarr", ".nc": "netcdf", ".nc4": "netcdf", ".netcdf": "netcdf",
    ".grib": "grib", ".grib2": "grib", ".grb": "grib", ".grb2": "grib",
}


class SourceParams(_Strict):
    kind: SourceKind = "heldsuarez"
    path: str | None = Field(
        None,
        description="Local path or fsspec URL (gs://, s3://, https://) for zarr/netcdf/grib sources; "
        "for a dvc source, the path inside the DVC repository (a file or a tracked directory).",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec storage options, e.g. {token: anon}.")
    rename: dict[str, str] = Field(default_factory=dict, description="Source variable/dim name -> WB2 name.")
    repo: str | None = Field(None, description="dvc source: the DVC repository, a git URL or a local path.")
    rev: str | None = Field(None, description="dvc source: git tag, branch or commit of the repository to read.")
    commit: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{40}$",
        description="dvc source: the commit `rev` resolved to; filled in once at the start of a run (and recorded), "
        "so every stage reads the same revision even when `rev` is a branch.",
    )
    format: FileFormat | None = Field(
        None, description="dvc source: how to read `path` (zarr, netcdf, grib); default from its suffix."
    )
    remote: str | None = Field(
        None, description="dvc source: name of the repository's DVC remote to read from; default its default remote."
    )

    @model_validator(mode="after")
    def _path_for_files(self) -> "SourceParams":
        if self.kind != "heldsuarez" and not self.path:
            raise ValueError(f"path is required when kind is {self.kind!r}")
        dvc_fields = [name for name in ("repo", "rev", "commit", "format", "remote") if getattr(self, name) is not None]
        if self.kind != "dvc" and dvc_fields:
            raise ValueError(f"{', '.join(dvc_fields)} only apply when kind is 'dvc' (kind is {self.kind!r})")
        if self.kind == "dvc":
            for name in ("repo", "rev"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required when kind is 'dvc'")
            if "://" in str(self.path) or any(c in str(self.path) for c in "*?["):
                raise ValueError(f"path {self.path!r} of a dvc source is a path inside the repository, not a URL or glob")
            if self.format is None and self.file_format is None:
                raise ValueError(
                    f"cannot tell the format of {self.path!r} from its suffix; set format (zarr, netcdf or grib)"
                )
        return self

    @property
    def file_format(self) -> FileFormat | None:
        """How the source's files are read: ``kind`` itself, or for a dvc source ``format`` or the path's suffix."""
        if self.kind in ("zarr", "netcdf", "grib"):
            return self.kind
        if self.kind == "dvc":
            return self.format or FORMAT_SUFFIXES.get(Path(str(self.path).rstrip("/")).suffix.lower())
        return None


class HeldSuarezParams(_Strict):
    """Settings of the embedded Held-Suarez generator (dinosaur dynamical core)."""

    truncation: Literal[21, 31, 42] = Field(21, description="Spectral truncation (T21, T31, T42).")
    layers: int = Field(12, ge=4, le=64, description="Equidistant sigma levels.")
    dt_minutes: float = Field(30.0, gt=0, le=60)
    seed: int = 0
    restart: str = Field(
        "builtin",
        description="Spun-up restart state (.npz) to start from; 'builtin' is the one shipped in the package, "
        "'rest' starts from an isothermal atmosphere at rest (needs spinup_days >= 200).",
    )
    spinup_days: float = Field(0.0, ge=0, description="Days integrated and discarded before the first output.")
    start: datetime = Field(datetime(2000, 1, 1), description="Calendar label of the first output step.")
    days: float = Field(210.0, gt=0, description="Length of the output record in days.")
    perturbation: float = Field(
        1e-3, ge=0, description="Amplitude (K) of the seeded temperature noise added to the restart state."
    )


class CoarsenParams(_Strict):
    factor: int = Field(1, ge=1, description="Block-mean coarsening factor in latitude and longitude.")


class SplitParams(_Strict):
    train: TimeWindow
    validation: TimeWindow
    test: TimeWindow

    @model_validator(mode="after")
    def _disjoint(self) -> "SplitParams":
        pairs = [("train", "validation"), ("train", "test"), ("validation", "test")]
        for a, b in pairs:
            if getattr(self, a).overlaps(getattr(self, b)):
                raise ValueError(f"splits {a} and {b} overlap")
        return self


class DataParams(_Strict):
    source: SourceParams = Field(default_factory=SourceParams)
    heldsuarez: HeldSuarezParams = Field(default_factory=HeldSuarezParams)
    variables: list[str] = Field(
        default_factory=lambda: [
            "temperature", "geopotential", "u_component_of_wind", "v_component_of_wind", "surface_pressure",
        ]
    )
    levels: list[int] = Field(default_factory=lambda: [250, 500, 850], description="Pressure levels in hPa.")
    time: TimeWindow = Field(description="Window of valid times taken into the snapshot.")
    coarsen: CoarsenParams = Field(default_factory=CoarsenParams)
    static: list[str] = Field(default_factory=lambda: ["geopotential_at_surface"])
    forcings: list[str] = Field(
        default_factory=lambda: [
            "toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos", "day_progress_sin", "day_progress_cos",
        ]
    )
    chunk_time: int = Field(8, ge=1, description="Time steps per zarr chunk in the snapshot.")
    splits: SplitParams

    @field_validator("variables")
    @classmethod
    def _known_prognostic(cls, names: list[str]) -> list[str]:
        return _check_names(names, ("atmospheric", "surface"))

    @field_validator("static")
    @classmethod
    def _known_static(cls, names: list[str]) -> list[str]:
        return _check_names(names, ("static",))

    @field_validator("forcings")
    @classmethod
    def _known_forcing(cls, names: list[str]) -> list[str]:
        return _check_names(names, ("forcing",))

    @field_validator("levels")
    @classmethod
    def _valid_levels(cls, levels: list[int]) -> list[int]:
        if not levels:
            raise ValueError("at least one pressure level is required")
        bad = [lv for lv in levels if not 1 <= lv <= 1100]
        if bad:
            raise ValueError(f"pressure levels must lie in 1..1100 hPa, got {bad}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"duplicated pressure levels in {levels}")
        return sorted(levels)

    @model_validator(mode="after")
    def _splits_inside_window(self) -> "DataParams":
        for name in ("train", "validation", "test"):
            window = getattr(self.splits, name)
            if not self.time.contains(window):
                raise ValueError(
                    f"splits.{name} ({window.as_str()}) is not inside data.time ({self.time.as_str()})"
                )
        if self.source.kind == "heldsuarez":
            hs = self.heldsuarez
            end = hs.start + timedelta(days=hs.days) - timedelta(hours=TIME_STEP_HOURS)
            if self.time.start < hs.start or self.time.end > end:
                raise ValueError(
                    f"time ({self.time.as_str()}) is outside the Held-Suarez record "
                    f"{hs.start.isoformat()}/{end.isoformat()} (heldsuarez.start + heldsuarez.days)"
                )
        return self


def _check_names(names: list[str], kinds: tuple[str, ...]) -> list[str]:
    for name in names:
        if name not in VARIABLES:
            raise ValueError(f"unknown variable {name!r}; known: {', '.join(sorted(VARIABLES))}")
        if VARIABLES[name].kind not in kinds:
            raise ValueError(f"variable {name!r} is {VARIABLES[name].kind}, expected one of {kinds}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicated names in {names}")
    return names


# ----------------------------------------------------------------- statistics


class StatisticsParams(_Strict):
    period: TimeWindow | None = Field(None, description="Window the statistics cover; default: the train split.")
    area_weighted: bool = Field(True, description="Weight by WB2 cell area (sin of latitude cell bounds).")
    chunk_budget_mb: float = Field(256.0, gt=0, description="Upper bound on the data held in memory at once.")
    dask_address: str | None = Field(
        None, description="Address of a Dask scheduler (tcp://host:8786) to spread chunks over; None runs in-process."
    )


# ---------------------------------------------------------------------- graph


class GraphParams(_Strict):
    refinement: int = Field(3, ge=0, le=7, description="Icosahedral refinement r of the finest mesh: 10*4^r+2 nodes.")
    multimesh_include_level0: bool = Field(
        True, description="GraphCast's multi-mesh keeps the 60 icosahedron edges (anemoi-graphs drops them)."
    )
    encoder_radius_factor: float = Field(
        0.6, gt=0, description="Grid->mesh radius as a multiple of the longest finest-mesh edge (GraphCast: 0.6)."
    )
    decoder: Literal["containing_triangle", "knn"] = "containing_triangle"
    decoder_k: int = Field(3, ge=1, le=16, description="Neighbours per grid point when decoder is 'knn'.")
    on_uncovered: Literal["error", "warn"] = Field(
        "error", description="What to do when a mesh node has no encoder edge or a grid point no decoder edge."
    )


# ---------------------------------------------------------------------- model


FusedKernels = Literal["auto", "on", "off"]


class ModelParams(_Strict):
    processor: Literal["gnn", "graph_transformer", "transformer"] = "gnn"
    hidden_dim: int = Field(64, ge=8, le=4096)
    processor_layers: int = Field(4, ge=1, le=64)
    mlp_hidden_layers: int = Field(1, ge=0, le=8)
    num_heads: int = Field(4, ge=1, le=64)
    attention_window: int | None = Field(
        None, ge=1, description="Transformer processor: attend only to this many nearest mesh nodes in order (sliding window)."
    )
    activation: Literal["silu", "gelu", "relu"] = "silu"
    input_steps: int = Field(2, ge=1, le=4, description="Input states (t-6h, t) fed to the network.")
    gradient_checkpointing: bool = False
    mapper_chunks: int = Field(1, ge=1, description="Split encoder/decoder edge computation into this many chunks.")
    fused_kernels: FusedKernels = Field(
        "auto",
        description="Run the graph transformer's edge attention torch.compile-fused: 'auto' for edge sets large enough "
        "to repay compiling (zonda.models.compiled.AUTO_MIN_ELEMENTS) when a compiler is at hand, 'on' always, 'off' never.",
    )

    @field_validator("fused_kernels", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare ``on``/``off`` as true/false: take those for the words."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelParams":
        if self.processor != "gnn" and self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        return self


# -------------------------------------------------------------------- training


class RolloutParams(_Strict):
    start: int = Field(1, ge=1)
    end: int = Field(1, ge=1)
    increase_every_epochs: int = Field(1, ge=1, description="Add one rollout step every this many epochs.")
    hold_epochs: int = Field(
        0, ge=0, description="Epochs before the curriculum clock starts: the rollout stays at `start` for hold_epochs + "
        "increase_every_epochs epochs, then grows (GraphCast: one-step training, then rollout fine-tuning).",
    )

    @model_validator(mode="after")
    def _monotone(self) -> "RolloutParams":
        if self.end < self.start:
            raise ValueError(f"end {self.end} < start {self.start}")
        return self


class GradientClipParams(_Strict):
    value: float | None = Field(32.0, gt=0)
    algorithm: Literal["norm", "value"] = "norm"


class EarlyStoppingParams(_Strict):
    enabled: bool = False
    monitor: str = "val/loss"
    patience: int = Field(3, ge=1)
    mode: Literal["min", "max"] = "min"


class CheckpointParams(_Strict):
    top_k: int = Field(2, ge=0)
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    every_n_train_steps: int | None = Field(None, ge=1)


def _default_optimizer() -> TargetSpec:
    return TargetSpec.model_validate({"_target_": "torch.optim.AdamW", "betas": [0.9, 0.95], "weight_decay": 0.1})


def _default_scheduler() -> TargetSpec:
    return TargetSpec.model_validate(
        {"_target_": "zonda.training.schedulers.CosineWithWarmup", "warmup_steps": 100, "min_lr": 3.0e-7}
    )


def _default_loss() -> TargetSpec:
    return TargetSpec.model_validate({"_target_": "zonda.training.losses.WeightedMSELoss"})


class LossWeightParams(_Strict):
    variables: dict[str, float] = Field(default_factory=dict, description="Per-variable weight (default 1).")
    levels: Literal["pressure", "uniform"] = Field(
        "pressure", description="GraphCast: weight proportional to pressure level, normalised to mean 1."
    )

    @field_validator("variables")
    @classmethod
    def _known(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, w in weights.items():
            if name not in VARIABLES:
                raise ValueError(f"unknown variable {name!r}")
            if w < 0:
                raise ValueError(f"weight of {name!r} is negative ({w})")
        return weights


Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true"]


class TrainingParams(_Strict):
    lr: float = Field(1e-3, gt=0)
    optimizer: TargetSpec = Field(default_factory=_default_optimizer)
    scheduler: TargetSpec = Field(default_factory=_default_scheduler)
    loss: TargetSpec = Field(default_factory=_default_loss)
    loss_weights: LossWeightParams = Field(default_factory=LossWeightParams)
    rollout: RolloutParams = Field(default_factory=RolloutParams)
    batch_size: int = Field(4, ge=1, description="Samples per process; the global batch is batch_size x devices x num_nodes.")
    num_workers: int = Field(0, ge=0)
    prefetch_factor: int = Field(2, ge=1)
    persistent_workers: bool = True
    pin_memory: Literal["auto", True, False] = "auto"
    precision: Precision = Field("32-true", description="auto: bf16-mixed where the GPU/CPU has bf16 kernels, else 32-true.")
    float32_matmul_precision: Literal["highest", "high", "medium"] = "high"
    gradient_clip: GradientClipParams = Field(default_factory=GradientClipParams)
    accumulate_grad_batches: int = Field(1, ge=1)
    max_epochs: int = Field(10, ge=1)
    max_steps: int = Field(-1, ge=-1, description="Optimisation steps (-1: no limit, max_epochs decides); 0 is refused.")
    limit_train_batches: float | int | None = Field(None, description="Batches per epoch (int) or fraction (float); 0 is refused.")
    limit_val_batches: float | int | None = None
    val_check_interval: float | int | None = None
    early_stopping: EarlyStoppingParams = Field(default_factory=EarlyStoppingParams)
    checkpoint: CheckpointParams = Field(default_factory=CheckpointParams)
    seed: int = 42
    deterministic: bool = False
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    devices: int | Literal["auto"] = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    fake_dataloading: bool = Field(False, description="Serve the first batch forever, to tell input-bound runs apart.")
    resume_from: str | None = Field(None, description="Checkpoint to resume exactly (model, optimizer, scheduler, step, RNG, data order).")
    fork_from: str | None = Field(None, description="Checkpoint to continue from in a new MLflow run.")
    warm_start_from: str | None = Field(None, description="Weights (safetensors) to initialise the model from.")

    @field_validator("max_steps", "limit_train_batches")
    @classmethod
    def _trains_some_steps(cls, value: float | int | None) -> float | int | None:
        if value == 0:
            raise ValueError("0 would train no step and write an untrained model as if complete (max_steps: -1 for no limit)")
        return value

    @field_validator("limit_train_batches", "limit_val_batches")
    @classmethod
    def _not_negative(cls, value: float | int | None) -> float | int | None:
        if value is not None and value < 0:
            raise ValueError(f"must be positive (a batch count, or a fraction of the epoch), got {value}")
        return value

    @model_validator(mode="after")
    def _one_start(self) -> "TrainingParams":
        given = [k for k in ("resume_from", "fork_from", "warm_start_from") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"choose at most one of resume_from, fork_from, warm_start_from (got {given})")
        return self


# ------------------------------------------------------------------ evaluation

#: Names the evaluation uses for its own forecasts; a baseline cannot take them.
RESERVED_BASELINE_NAMES = ("model", "persistence", "climatology", "truth")


class PhysicsBaselineParams(_Strict):
    """The Held-Suarez dynamical core at a coarser resolution, run from the truth's own states."""

    truncation: int = Field(10, ge=2, le=42, description="Triangular spectral truncation T of the coarse model.")
    layers: int = Field(6, ge=2, le=64, description="Equidistant sigma layers; must divide the truth's.")
    dt_minutes: float = Field(60.0, gt=0, le=120, description="Model time step; must divide 6 hours.")


class BaselineParams(_Strict):
    """A forecast scored beside the model: a WB2-layout store, or the Held-Suarez physics baseline."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="Label in the scorecard, results and summary.")
    path: str | None = Field(
        None, description="WB2-layout forecast zarr (local path or fsspec URL): dims time (init), "
        "prediction_timedelta, [level], latitude, longitude.",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec storage options of path.")
    rename: dict[str, str] = Field(default_factory=dict, description="Store variable/dim name -> WB2 name.")
    heldsuarez: PhysicsBaselineParams | None = Field(
        None, description="Run the physics baseline from the snapshot's truth states instead of reading a store.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "BaselineParams":
        if (self.path is None) == (self.heldsuarez is None):
            raise ValueError(f"baseline {self.name!r}: give exactly one of path (a forecast store) or heldsuarez")
        if self.name in RESERVED_BASELINE_NAMES:
            raise ValueError(f"baseline name {self.name!r} is reserved ({', '.join(RESERVED_BASELINE_NAMES)})")
        return self


class EvaluationParams(_Strict):
    lead_days: float = Field(10.0, gt=0, description="Forecast length; 40 steps of 6 h for 10 days.")
    init_every_hours: int = Field(12, ge=TIME_STEP_HOURS)
    max_inits: int | None = Field(None, ge=1, description="Cap on initial conditions (None: all that fit).")
    batch_size: int = Field(8, ge=1)
    headline_variables: list[str] = Field(
        default_factory=lambda: ["geopotential/500", "temperature/850", "u_component_of_wind/250"],
        description="variable/level (or a surface variable name) reported as headline scores.",
    )
    headline_lead_days: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0, 10.0])
    map_lead_days: list[float] = Field(default_factory=lambda: [1.0, 5.0, 10.0])
    climatology: Literal["auto", "day_of_year_hour", "mean"] = Field(
        "auto", description="auto: day-of-year/hour when the training data has a seasonal cycle, else the time mean."
    )
    baselines: list[BaselineParams] = Field(
        default_factory=list, description="Forecasts scored beside the model, persistence and climatology.",
    )
    spectra_lead_days: list[float] | None = Field(
        None, description="Leads of the zonal power spectra (spectra.nc); default: headline_lead_days.",
    )

    @model_validator(mode="after")
    def _unique_baselines(self) -> "EvaluationParams":
        names = [b.name for b in self.baselines]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"baselines: names {repeated} are used more than once")
        return self

    @model_validator(mode="after")
    def _leads_within(self) -> "EvaluationParams":
        for name in ("headline_lead_days", "map_lead_days", "spectra_lead_days"):
            bad = [d for d in getattr(self, name) or [] if d > self.lead_days or d <= 0]
            if bad:
                raise ValueError(f"{name} {bad} outside (0, lead_days={self.lead_days}]")
            off = [d for d in getattr(self, name) or [] if abs(d * 24 / TIME_STEP_HOURS - round(d * 24 / TIME_STEP_HOURS)) > 1e-9]
            if off:
                raise ValueError(f"{name} {off} are not multiples of {TIME_STEP_HOURS} h")
        return self


# ------------------------------------------------------------------- registry


class PromotionParams(_Strict):
    """The promotion gate (:mod:`zonda.registry.promotion`): the champion is re-scored on the challenger's
    evaluation init times and each metric gets a paired test (:mod:`zonda.registry.significance`)."""

    metrics: list[str] = Field(
        default_factory=lambda: [
            "rmse.geopotential.500.5d", "rmse.temperature.850.5d",
        ],
        description="Headline keys (rmse.*: lower is better; acc.*: higher is better) the challenger must beat.",
    )
    rule: Literal["all", "any", "majority"] = "all"
    tolerance: float = Field(
        0.0, ge=0, description="Relative slack: a loss counts only if significantly worse than tolerance * |champion|."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Two-sided confidence level of the paired test.")
    test: Literal["bootstrap", "t"] = Field("bootstrap", description="Paired bootstrap or paired t-test over init times.")
    bootstrap_samples: int = Field(10_000, ge=100)
    seed: int = Field(0, description="Seed of the bootstrap's resampling (the decision is reproducible).")
    min_inits: int = Field(10, ge=2, description="Fewer paired init times than this: no metric can be significant.")
    on_incomparable: Literal["reject", "promote"] = Field(
        "reject", description="When the champion cannot be scored on the challenger's data (other variables, "
        "levels, grid or input steps): keep it (reject) or hand over (promote)."
    )

    @field_validator("metrics")
    @classmethod
    def _paired_metrics(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if m.partition(".")[0] not in ("rmse", "acc")]
        if bad:
            raise ValueError(f"{bad}: the gate tests rmse.* and acc.* headline keys (per-init scores exist for those)")
        if not value:
            raise ValueError("at least one metric")
        return value


class RegistryParams(_Strict):
    model_name: str = Field("zonda", pattern=r"^[A-Za-z0-9_.\-]+$")
    promotion: PromotionParams = Field(default_factory=PromotionParams)


# -------------------------------------------------------------------- runtime


class Toleration(_Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PvcMount(_Strict):
    pvc_name: str
    mount_path: str


class SecretEnv(_Strict):
    secret_name: str
    keys: dict[str, str] = Field(min_length=1, description="Secret key -> environment variable name (at least one).")


# What KFP's set_cpu_*/set_memory_* accept (Kubernetes quantities, the forms KFP validates).
_CPU = r"^([0-9]*\.)?[0-9]+m?$"
_MEMORY = r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$"


class StageResources(_Strict):
    cpu_request: Annotated[str, Field(pattern=_CPU)] | None = None
    cpu_limit: Annotated[str, Field(pattern=_CPU)] | None = None
    memory_request: Annotated[str, Field(pattern=_MEMORY)] | None = None
    memory_limit: Annotated[str, Field(pattern=_MEMORY)] | None = None
    accelerator_type: str | None = Field(None, description="e.g. nvidia.com/gpu")
    accelerator_count: int = Field(0, ge=0)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    pvc_mounts: list[PvcMount] = Field(default_factory=list)
    secrets_as_env: list[SecretEnv] = Field(default_factory=list)
    retries: int = Field(0, ge=0, le=10)
    caching: bool = True

    @model_validator(mode="after")
    def _accelerator(self) -> "StageResources":
        if self.accelerator_count and not self.accelerator_type:
            raise ValueError("accelerator_count > 0 needs accelerator_type (e.g. nvidia.com/gpu)")
        return self


class ResourcesParams(_Strict):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, populate_by_name=True)

    snapshot: StageResources = Field(default_factory=StageResources)
    statistics: StageResources = Field(default_factory=StageResources)
    graph: StageResources = Field(default_factory=StageResources)
    train: StageResources = Field(default_factory=StageResources)
    evaluate: StageResources = Field(default_factory=StageResources)
    register_: StageResources = Field(default_factory=StageResources, alias="register")

    def for_stage(self, stage: str) -> StageResources:
        return self.register_ if stage == "register" else getattr(self, stage)


class ImagesParams(_Strict):
    data: str = Field("zonda-data:latest", description="CPU image for snapshot, statistics, graph, evaluate, register.")
    train: str = Field("zonda-train:latest", description="CUDA image for training.")


class DistributedLaunchParams(_Strict):
    kind: Literal["trainjob", "pytorchjob"] = Field(
        "trainjob", description="Kubeflow Trainer v2 TrainJob, or the older training operator's PyTorchJob."
    )
    runtime_ref: str = Field("zonda-torch-distributed", description="TrainJob: name of the ClusterTrainingRuntime.")
    namespace: str = "kubeflow"
    timeout_minutes: int = Field(24 * 60, ge=1)


class RuntimeParams(_Strict):
    kfp_host: str | None = Field(None, description="KFP API endpoint; the KFP_HOST environment variable overrides.")
    kfp_experiment: str = "zonda"
    service_account: str | None = Field(
        None, description="Kubernetes service account of pipeline runs on KFP (charts/zonda creates zonda-pipeline)."
    )
    pipeline_name: str = Field("zonda", pattern=r"^[a-z0-9][a-z0-9\-]*$")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; MLFLOW_TRACKING_URI overrides; default sqlite under output_root."
    )
    mlflow_experiment: str = "zonda"
    output_root: str = Field("artifacts", description="Local runs: where KFP-local outputs and caches go.")
    dvc_remote: str | None = Field(
        "local",
        description="Where the snapshot stage pushes each snapshot by content: a DVC remote URL (s3://, gs://, "
        "ssh://, a directory) or the name of a remote of the DVC project in the working directory (resolved to "
        "its URL at the start of a run); null: do not push. Credentials come from the environment, never params.",
    )
    images: ImagesParams = Field(default_factory=ImagesParams)
    resources: ResourcesParams = Field(default_factory=ResourcesParams)
    distributed: DistributedLaunchParams = Field(default_factory=DistributedLaunchParams)


# ---------------------------------------------------------------------- root


SECTIONS = ("data", "statistics", "graph", "model", "training", "evaluation", "registry", "runtime")

# What each pipeline stage reads (besides ``name`` and the runtime fields of STAGE_RUNTIME_FIELDS): the
# params a stage is given, its cache key (KFP and zonda's own reuse) and the params recorded beside its outputs.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "snapshot": ("data",),
    "statistics": ("data", "statistics"),
    "graph": ("data", "graph"),
    "train": ("data", "model", "training"),
    "evaluate": ("data", "model", "training", "evaluation"),
    "register": ("data", "model", "training", "evaluation", "registry"),
}

# The runtime fields every stage reads (where MLflow is, where caches go); snapshot also pushes to the DVC
# remote, train also launches jobs.
_COMMON_RUNTIME_FIELDS = ("mlflow_tracking_uri", "mlflow_experiment", "output_root")
STAGE_RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {stage: _COMMON_RUNTIME_FIELDS for stage in STAGE_SECTIONS} | {
    "snapshot": (*_COMMON_RUNTIME_FIELDS, "dvc_remote"),
    "train": (*_COMMON_RUNTIME_FIELDS, "images", "resources", "distributed"),
}


class SectionNotGiven:
    """Stands in for a params section a stage was not given: reading it is a bug in STAGE_SECTIONS."""

    def __init__(self, section: str, sections: tuple[str, ...]) -> None:
        self._section, self._sections = section, sections

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ParamsError(
            f"params.{self._section}.{name} read by a stage given only {', '.join(self._sections)} "
            f"(declare it in zonda.params.STAGE_SECTIONS)"
        )


class Params(_Strict):
    """The whole contract. Each section is owned by one stage.

    A stage's params (:meth:`for_stage`, read back by :func:`params_from_json`)
    hold only the sections that stage reads; the others are :class:`SectionNotGiven`.
    """

    name: str = Field("zonda", description="Preset name, recorded with every artifact.")
    stage: str | None = Field(
        None, description="Set in a stage's params (Params.for_stage): only that stage's sections are given."
    )
    data: DataParams
    statistics: StatisticsParams = Field(default_factory=StatisticsParams)
    graph: GraphParams = Field(default_factory=GraphParams)
    model: ModelParams = Field(default_factory=ModelParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)

    @model_validator(mode="after")
    def _cross_section(self) -> "Params":
        if self.stage is not None:  # a stage's params: the whole params were checked when the pipeline was built
            if self.stage not in STAGE_SECTIONS:
                raise ValueError(f"stage {self.stage!r} is not a pipeline stage ({', '.join(STAGE_SECTIONS)})")
            given = ("data", *STAGE_SECTIONS[self.stage], "runtime")
            for section in SECTIONS:
                if section not in given:
                    self.__dict__[section] = SectionNotGiven(section, tuple(dict.fromkeys(given)))
            return self
        if self.statistics.period is not None and not self.data.time.contains(self.statistics.period):
            raise ValueError(
                f"statistics.period ({self.statistics.period.as_str()}) is not inside data.time ({self.data.time.as_str()})"
            )
        prognostic = set(self.data.variables)
        for name in self.training.loss_weights.variables:
            if name not in prognostic:
                raise ValueError(f"training.loss_weights.variables names {name!r}, which is not in data.variables")
        for item in self.evaluation.headline_variables:
            name, _, level = item.partition("/")
            if name not in prognostic:
                raise ValueError(f"evaluation.headline_variables names {name!r}, which is not in data.variables")
            if level and int(level) not in self.data.levels:
                raise ValueError(f"evaluation.headline_variables level {level} is not in data.levels")
        if self.data.splits.test.days < self.evaluation.lead_days + TIME_STEP_HOURS / 24:
            raise ValueError(
                f"data.splits.test covers {self.data.splits.test.days:g} days, too short for "
                f"evaluation.lead_days={self.evaluation.lead_days:g}"
            )
        return self

    @property
    def statistics_period(self) -> TimeWindow:
        return self.statistics.period or self.data.splits.train

    @property
    def missing_sections(self) -> tuple[str, ...]:
        """Sections these (a stage's) params were not given."""
        return tuple(s for s in SECTIONS if isinstance(self.__dict__.get(s), SectionNotGiven))

    def resolved_dict(self) -> dict[str, Any]:
        """JSON-able dict with every default filled in and `_target_` keys restored, given sections only (secrets in
        clear: for handing params to a stage, never for writing or logging them; see :meth:`public_dict`)."""
        exclude = set(self.missing_sections) | ({"stage"} if self.stage is None else set())
        return json.loads(self.model_dump_json(by_alias=True, exclude=exclude))

    def for_stage(self, stage: str) -> dict[str, Any]:
        """The params ``stage`` reads (see STAGE_SECTIONS), as the JSON-able dict a KFP task is given."""
        if stage not in STAGE_SECTIONS:
            raise ParamsError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_SECTIONS)}")
        full = self.resolved_dict()
        out = {"name": full["name"], "stage": stage, **{s: full[s] for s in STAGE_SECTIONS[stage]}}
        out["runtime"] = {k: full["runtime"][k] for k in STAGE_RUNTIME_FIELDS[stage]}
        return out

    def public_dict(self) -> dict[str, Any]:
        """:meth:`resolved_dict` with secret-looking values masked (:func:`mask_secrets`): what is written and logged."""
        return mask_secrets(self.resolved_dict())

    def to_yaml(self) -> str:
        """The resolved params as YAML, secrets masked (``params.resolved.yaml``, ``zonda params show``)."""
        return yaml.safe_dump(self.public_dict(), sort_keys=False)

    def secret_paths(self) -> list[str]:
        """Dotted paths of the values :meth:`public_dict` masks."""
        found: list[str] = []

        def walk(a: Any, b: Any, path: str) -> None:
            if b == MASK and a != MASK:
                found.append(path)
            elif isinstance(a, dict):
                for k in a:
                    walk(a[k], b[k], f"{path}.{k}" if path else str(k))
            elif isinstance(a, list):
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f"{path}.{i}")

        walk(self.resolved_dict(), self.public_dict(), "")
        return found

    def section_hash(self, *sections: str) -> str:
        """sha256 of the canonical JSON of some sections (what a stage's output depends on)."""
        full = self.resolved_dict()
        payload = {s: full[s] for s in sections} if sections else full
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------- secrets


def is_secret_key(name: str) -> bool:
    """Whether a params key looks like it holds a credential (a word of it is in :data:`SECRET_WORDS`)."""
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", str(name))
    return any(w.lower() in SECRET_WORDS for w in words if w)


def mask_secrets(tree: Any, path: str = "") -> Any:
    """A copy of a params tree with the value of every secret-looking key (at any depth) replaced by :data:`MASK`.

    ``None``, empty values, flags and access-method names (``token: anon``) stay as they are (nothing
    to hide, and the shape stays readable); so do the subtrees of :data:`_NOT_SECRET`.
    """
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            child = f"{path}.{key}" if path else str(key)
            if any(p.match(child) for p in _NOT_SECRET):
                out[key] = value
            elif is_secret_key(key) and _may_be_secret(value):
                out[key] = MASK
            else:
                out[key] = mask_secrets(value, child)
        return out
    if isinstance(tree, list):
        return [mask_secrets(v, f"{path}.*") for v in tree]
    if isinstance(tree, str):
        return _URL_PASSWORD.sub(rf"\1{MASK}@", tree)  # https://user:password@host
    return tree


def _may_be_secret(value: Any) -> bool:
    """Whether the value of a secret-looking key is worth hiding (not empty, a flag, or an access method's name)."""
    if value is None or isinstance(value, bool) or value in ("", {}, []):
        return False
    return not (isinstance(value, str) and value in NOT_SECRET_VALUES)


_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")


def _masked_override(item: str) -> str:
    """An override as shown in messages: ``key=***`` for a secret-looking key, secrets inside a value masked."""
    key, sep, text = item.partition("=")
    if not sep:
        return item
    if is_secret_key(key.strip().rsplit(".", 1)[-1]):
        return f"{key}={MASK}"
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return item
    masked = mask_secrets(value)
    if masked == value:
        return item
    return f"{key}=" + yaml.safe_dump(masked, default_flow_style=True, width=10**6).strip()


# ---------------------------------------------------------------------- loading


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides; values are parsed as YAML (``[500,850]``, ``3e-4``, ``null``)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"override {item!r}: expected dotted.key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise ParamsError(f"override {item!r}: {key!r} is not a dotted field path")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ParamsError(f"override {item!r}: value is not valid YAML: {exc}") from None
        if isinstance(value, float) is False and isinstance(value, str) and re.fullmatch(r"[-+]?\d*\.?\d+[eE][-+]?\d+", value):
            value = float(value)  # YAML 1.1 reads 3e-4 as a string
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ParamsError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {len(exc.errors())} invalid param(s):"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not in the params schema)" + _did_you_mean(err["loc"])
        detail = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not isinstance(err["input"], dict):
            shown = MASK if any(is_secret_key(str(p)) for p in err["loc"]) else mask_secrets(err["input"])
            detail = f" (got {shown!r})"
        lines.append(f"  {path}: {msg}{detail}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``; did you mean 'x'?`` for an unknown key at ``loc``, from the keys the schema has there ('' if none is close)."""
    model: Any = Params
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return ""
        field = next((f for n, f in fields.items() if part in (n, f.alias)), None)
        if field is None:
            return ""
        model = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if hasattr(a, "model_fields")), None)
        if model is None:
            return ""
    known = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


def resolve_params_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as given when it exists; a bare preset name (``aifs``) is ``params/<name>.yaml``.

    A name is looked up in ``./params`` and then in the checkout's ``params/``
    (so ``--params aifs`` works from any directory of a source checkout).
    """
    given = Path(path)
    if given.exists() or given.suffix in (".yaml", ".yml") or len(given.parts) > 1:
        return given
    for directory in (Path("params"), PARAMS_DIR):
        candidate = directory / f"{given.name}.yaml"
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
    raise ParamsError(f"{path}: no params file and no preset of that name (presets: {', '.join(names) or 'none found'})")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save the params file as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return _fix_yaml_floats(raw)


def _fix_yaml_floats(node: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``3e-4`` as a string; read it as the float a user means."""
    if isinstance(node, dict):
        return {k: _fix_yaml_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_yaml_floats(v) for v in node]
    if isinstance(node, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", node):
        return float(node)
    return node


def validate_params(raw: dict[str, Any], source: str = "<params>") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_validation_error(exc, source)) from None


def load_params(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Params:
    """Reads, overrides and validates a params YAML (or preset name); raises ParamsError naming file and field paths."""
    path = resolve_params_path(path)
    raw = apply_overrides(_read_yaml(path), list(overrides or []))
    shown = [_masked_override(item) for item in overrides or []]
    source = str(path) + (f" (with overrides {' '.join(shown)})" if shown else "")
    return validate_params(raw, source)


def params_from_json(text: str) -> Params:
    """Params as passed to KFP components: the resolved dict as JSON, whole or a stage's (:meth:`Params.for_stage`).

    Sections missing from a stage's params read as :class:`SectionNotGiven`,
    so a stage that reads more than it declares fails loudly instead of using defaults.
    """
    return validate_params(json.loads(text), "<pipeline parameter params_json>")


def write_resolved(params: Params, directory: str | os.PathLike[str]) -> Path:
    """Writes the fully resolved params next to a stage's outputs; returns the file path."""
    return write_text_atomic(Path(directory) / RESOLVED_PARAMS_FILENAME, params.to_yaml())
