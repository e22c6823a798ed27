"""``training``: optimisation, the loss and its weights, the rollout curriculum, the Lightning trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from zonda.params.base import Strict
from zonda.params.target import TargetSpec
from zonda.variables import VARIABLES


class RolloutParams(Strict):
    start: int = Field(1, ge=1)
    end: int = Field(1, ge=1)
    increase_every_epochs: int = Field(1, ge=1, description="Add one rollout step every this many epochs.")
    hold_epochs: int = Field(
        0, ge=0, description="Epochs before the curriculum clock starts: the rollout stays at `start` for hold_epochs + "
        "increase_every_epochs epochs, then grows (GraphCast: one-step training, then rollout fine-tuning).",
    )

    schedule: list[int] | None = Field(
        None, min_length=1,
        description="Rollout steps per epoch from epoch 0, the last entry holding for every later epoch; replaces "
        "start/end/increase_every_epochs/hold_epochs. E.g. twelve 1s, 2, 2, 3, 3, 8: GraphCast's curriculum, then a "
        "long-rollout phase that keeps the model's climate over weeks (README, Skill).",
    )

    @model_validator(mode="after")
    def _monotone(self) -> "RolloutParams":
        if self.end < self.start:
            raise ValueError(f"end {self.end} < start {self.start}")
        if self.schedule is not None:
            bad = [steps for steps in self.schedule if steps < 1]
            if bad:
                raise ValueError(f"schedule entries are rollout steps (>= 1), got {bad}")
            growth = ("start", "end", "increase_every_epochs", "hold_epochs")
            given = [name for name in growth if getattr(self, name) != type(self).model_fields[name].default]
            if given:
                raise ValueError(f"give either schedule or {', '.join(given)}, not both")
        return self

    @property
    def longest(self) -> int:
        """The most rollout steps any epoch trains with."""
        return max(self.schedule) if self.schedule is not None else self.end


class GradientClipParams(Strict):
    value: float | None = Field(32.0, gt=0)
    algorithm: Literal["norm", "value"] = "norm"


class EarlyStoppingParams(Strict):
    enabled: bool = False
    monitor: str = "val/loss"
    patience: int = Field(3, ge=1)
    mode: Literal["min", "max"] = "min"


class CheckpointParams(Strict):
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


class LossWeightParams(Strict):
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


class TrainingParams(Strict):
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
    system_metrics_interval_s: float | None = Field(
        10.0, gt=0,
        description="Seconds between MLflow system-metrics samples (system/*: CPU, memory, disk, network, GPU) "
        "logged to the training run; null: none.",
    )
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
