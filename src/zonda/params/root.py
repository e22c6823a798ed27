"""The whole contract (:class:`Params`, a section per stage) and which sections each pipeline stage reads."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from pydantic import Field, model_validator

from zonda.params.base import ParamsError, Strict
from zonda.params.data import DataParams
from zonda.params.evaluation import EvaluationParams
from zonda.params.graph import GraphParams
from zonda.params.model import ModelParams
from zonda.params.registry import RegistryParams
from zonda.params.runtime import RuntimeParams
from zonda.params.secrets import MASK, mask_secrets, secret_env_name
from zonda.params.statistics import StatisticsParams
from zonda.params.times import TimeWindow
from zonda.params.training import TrainingParams
from zonda.variables import TIME_STEP_HOURS


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


class Params(Strict):
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
        """Dotted paths of the values :meth:`public_dict` masks whole (the values of secret-looking keys)."""
        return [path for path, whole in self._masked_paths() if whole]

    def url_credential_paths(self) -> list[str]:
        """Dotted paths of the strings holding a URL password (``https://user:password@host``), masked in part."""
        return [path for path, whole in self._masked_paths() if not whole]

    def _masked_paths(self) -> list[tuple[str, bool]]:
        """(dotted path, masked whole) of every value :meth:`public_dict` changes."""
        found: list[tuple[str, bool]] = []

        def walk(a: Any, b: Any, path: str) -> None:
            if b == MASK and a != MASK:
                found.append((path, True))
            elif isinstance(a, dict):
                for k in a:
                    walk(a[k], b[k], f"{path}.{k}" if path else str(k))
            elif isinstance(a, list):
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f"{path}.{i}")
            elif isinstance(a, str) and a != b:
                found.append((path, False))

        walk(self.resolved_dict(), self.public_dict(), "")
        return found

    def with_secret_references(self) -> tuple["Params", dict[str, str]]:
        """These params with every literal secret (:meth:`secret_paths`) replaced by a ``${env:NAME}`` reference
        (``NAME`` from :func:`secret_env_name`), and the variables that carry them (name -> value).

        What a local run hands its tasks: the pipeline inputs hold references, the tasks' environment the values.
        A secret that is a mapping or a list travels as one reference per string inside it; other values as text.
        """
        data, env = self.resolved_dict(), {}

        def reference(value: Any, path: str) -> Any:
            if isinstance(value, dict):
                return {k: reference(v, f"{path}.{k}") for k, v in value.items()}
            if isinstance(value, list):
                return [reference(v, f"{path}.{i}") for i, v in enumerate(value)]
            if value is None or isinstance(value, bool):
                return value
            env[secret_env_name(path)] = str(value)
            return f"${{env:{secret_env_name(path)}}}"

        for path in self.secret_paths():
            *parents, last = path.split(".")
            node = data
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            key = int(last) if isinstance(node, list) else last
            node[key] = reference(node[key], path)
        return (Params.model_validate(data) if env else self), env

    def section_hash(self, *sections: str) -> str:
        """sha256 of the canonical JSON of some sections (what a stage's output depends on)."""
        full = self.resolved_dict()
        payload = {s: full[s] for s in sections} if sections else full
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
