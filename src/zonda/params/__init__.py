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

One file per section (``data``, ``statistics``, ``graph``, ``model``,
``training``, ``evaluation``, ``registry``, ``runtime`` with its Kubernetes
schema in ``k8s``), the shared pieces (``base``: the strict model and
:class:`ParamsError`; ``times``: :class:`TimeWindow`; ``target``: the
``_target_`` resolver; ``secrets``: masking and ``${env:NAME}`` references), the whole contract and the
sections each stage reads (``root``), and reading it (``loader``). Import
every name from ``zonda.params``.
"""

from __future__ import annotations

from zonda.params.base import ParamsError
from zonda.params.data import (
    CoarsenParams,
    DataParams,
    FORMAT_SUFFIXES,
    FileFormat,
    HeldSuarezParams,
    SourceKind,
    SourceParams,
    SplitParams,
)
from zonda.params.evaluation import BaselineParams, EvaluationParams, PhysicsBaselineParams, RESERVED_BASELINE_NAMES
from zonda.params.graph import GraphParams
from zonda.params.k8s import DistributedLaunchParams, PvcMount, ResourcesParams, SecretEnv, StageResources, Toleration
from zonda.params.loader import (
    PARAMS_DIR,
    RESOLVED_PARAMS_FILENAME,
    apply_overrides,
    load_params,
    params_from_json,
    resolve_params_path,
    validate_params,
    write_resolved,
)
from zonda.params.model import FusedKernels, ModelParams
from zonda.params.registry import PromotionParams, RegistryParams
from zonda.params.root import Params, SECTIONS, STAGE_RUNTIME_FIELDS, STAGE_SECTIONS, SectionNotGiven
from zonda.params.runtime import ImagesParams, RuntimeParams
from zonda.params.secrets import (
    ENV_REFERENCE,
    MASK,
    NOT_SECRET_VALUES,
    SECRET_ENV_PREFIX,
    SECRET_WORDS,
    env_reference,
    env_references,
    is_secret_key,
    mask_secrets,
    resolve_env_references,
    secret_env_name,
)
from zonda.params.statistics import StatisticsParams
from zonda.params.target import TargetSpec
from zonda.params.times import TimeWindow
from zonda.params.training import (
    CheckpointParams,
    EarlyStoppingParams,
    GradientClipParams,
    LossWeightParams,
    Precision,
    RolloutParams,
    TrainingParams,
)

__all__ = [
    "BaselineParams",
    "CheckpointParams",
    "CoarsenParams",
    "DataParams",
    "DistributedLaunchParams",
    "ENV_REFERENCE",
    "EarlyStoppingParams",
    "EvaluationParams",
    "FORMAT_SUFFIXES",
    "FileFormat",
    "FusedKernels",
    "GradientClipParams",
    "GraphParams",
    "HeldSuarezParams",
    "ImagesParams",
    "LossWeightParams",
    "MASK",
    "ModelParams",
    "NOT_SECRET_VALUES",
    "PARAMS_DIR",
    "Params",
    "ParamsError",
    "PhysicsBaselineParams",
    "Precision",
    "PromotionParams",
    "PvcMount",
    "RESERVED_BASELINE_NAMES",
    "RESOLVED_PARAMS_FILENAME",
    "RegistryParams",
    "ResourcesParams",
    "RolloutParams",
    "RuntimeParams",
    "SECRET_ENV_PREFIX",
    "SECRET_WORDS",
    "SECTIONS",
    "STAGE_RUNTIME_FIELDS",
    "STAGE_SECTIONS",
    "SecretEnv",
    "SectionNotGiven",
    "SourceKind",
    "SourceParams",
    "SplitParams",
    "StageResources",
    "StatisticsParams",
    "TargetSpec",
    "TimeWindow",
    "Toleration",
    "TrainingParams",
    "apply_overrides",
    "env_reference",
    "env_references",
    "is_secret_key",
    "load_params",
    "mask_secrets",
    "params_from_json",
    "resolve_env_references",
    "resolve_params_path",
    "secret_env_name",
    "validate_params",
    "write_resolved",
]
