"""``registry``: the registered model's name and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from zonda.params.base import Strict


class PromotionParams(Strict):
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


class RegistryParams(Strict):
    model_name: str = Field("zonda", pattern=r"^[A-Za-z0-9_.\-]+$")
    promotion: PromotionParams = Field(default_factory=PromotionParams)
