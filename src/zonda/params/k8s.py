"""``runtime.resources`` and ``runtime.distributed``: the Kubernetes schema of each stage's task and of a training job."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from zonda.params.base import Strict


class Toleration(Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PvcMount(Strict):
    pvc_name: str
    mount_path: str


class SecretEnv(Strict):
    secret_name: str
    keys: dict[str, str] = Field(min_length=1, description="Secret key -> environment variable name (at least one).")


# What KFP's set_cpu_*/set_memory_* accept (Kubernetes quantities, the forms KFP validates).
_CPU = r"^([0-9]*\.)?[0-9]+m?$"
_MEMORY = r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$"


class StageResources(Strict):
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


class ResourcesParams(Strict):
    # Merged with Strict's config; populate_by_name: register_ is set by its name or by its alias `register`.
    model_config = ConfigDict(populate_by_name=True)

    snapshot: StageResources = Field(default_factory=StageResources)
    statistics: StageResources = Field(default_factory=StageResources)
    graph: StageResources = Field(default_factory=StageResources)
    train: StageResources = Field(default_factory=StageResources)
    evaluate: StageResources = Field(default_factory=StageResources)
    register_: StageResources = Field(default_factory=StageResources, alias="register")

    def for_stage(self, stage: str) -> StageResources:
        return self.register_ if stage == "register" else getattr(self, stage)


class DistributedLaunchParams(Strict):
    kind: Literal["trainjob", "pytorchjob"] = Field(
        "trainjob", description="Kubeflow Trainer v2 TrainJob, or the older training operator's PyTorchJob."
    )
    runtime_ref: str = Field("zonda-torch-distributed", description="TrainJob: name of the ClusterTrainingRuntime.")
    namespace: str = "kubeflow"
    timeout_minutes: int = Field(24 * 60, ge=1)
