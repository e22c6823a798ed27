"""``evaluation``: forecast length, init times, headline scores and the baselines scored beside the model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from zonda.params.base import Strict
from zonda.variables import TIME_STEP_HOURS


#: Names the evaluation uses for its own forecasts; a baseline cannot take them.
RESERVED_BASELINE_NAMES = ("model", "persistence", "climatology", "truth")


class PhysicsBaselineParams(Strict):
    """The Held-Suarez dynamical core at a coarser resolution, run from the truth's own states."""

    truncation: int = Field(10, ge=2, le=42, description="Triangular spectral truncation T of the coarse model.")
    layers: int = Field(6, ge=2, le=64, description="Equidistant sigma layers; must divide the truth's.")
    dt_minutes: float = Field(60.0, gt=0, le=120, description="Model time step; must divide 6 hours.")


class BaselineParams(Strict):
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


class EvaluationParams(Strict):
    lead_days: float = Field(10.0, gt=0, description="Forecast length; 40 steps of 6 h for 10 days.")
    init_every_hours: int = Field(12, ge=TIME_STEP_HOURS)
    max_inits: int | None = Field(None, ge=1, description="Cap on initial conditions (None: all that fit).")
    batch_size: int = Field(8, ge=1)
    precision: Literal["auto", "32-true", "bf16-mixed"] = Field(
        "auto",
        description="Forecast precision. auto: the model's training precision where the device has bf16 kernels, "
        "else 32-true (zonda.models.precision; the registered model resolves it the same way).",
    )
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
