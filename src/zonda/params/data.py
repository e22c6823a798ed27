"""``data``: where the snapshot comes from (source, Held-Suarez generator), what it holds, and the splits."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from zonda.params.base import Strict
from zonda.params.times import TimeWindow
from zonda.variables import TIME_STEP_HOURS, VARIABLES


SourceKind = Literal["heldsuarez", "zarr", "netcdf", "grib", "dvc"]
FileFormat = Literal["zarr", "netcdf", "grib"]

# File suffixes a dvc source's format is inferred from when data.source.format is not set.
FORMAT_SUFFIXES: dict[str, FileFormat] = {
    ".zarr": "zarr", ".nc": "netcdf", ".nc4": "netcdf", ".netcdf": "netcdf",
    ".grib": "grib", ".grib2": "grib", ".grb": "grib", ".grb2": "grib",
}


class SourceParams(Strict):
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


class HeldSuarezParams(Strict):
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


class CoarsenParams(Strict):
    factor: int = Field(1, ge=1, description="Block-mean coarsening factor in latitude and longitude.")


class SplitParams(Strict):
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


class DataParams(Strict):
    source: SourceParams = Field(default_factory=SourceParams)
    heldsuarez: HeldSuarezParams = Field(default_factory=HeldSuarezParams)
    variables: list[str] = Field(
        default_factory=lambda: [
            "temperature", "geopotential", "u_component_of_wind", "v_component_of_wind", "surface_pressure",
        ]
    )
    levels: list[int] = Field(default_factory=lambda: [250, 500, 850], description="Pressure levels in hPa.")
    time: TimeWindow = Field(description="Window of valid times taken into the snapshot.")
    time_step: str = Field(
        f"{TIME_STEP_HOURS}h",
        description="Step of the snapshot's time axis: the source's steps on this grid from data.time.start are "
        "taken (an hourly source is thinned to it), the others skipped. The models' step, so only "
        f"{TIME_STEP_HOURS}h is accepted; written like '6h' or '360min'.",
    )
    coarsen: CoarsenParams = Field(default_factory=CoarsenParams)
    static: list[str] = Field(default_factory=lambda: ["geopotential_at_surface"])
    forcings: list[str] = Field(
        default_factory=lambda: [
            "toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos", "day_progress_sin", "day_progress_cos",
        ]
    )
    chunk_time: int = Field(8, ge=1, description="Time steps per zarr chunk in the snapshot.")
    splits: SplitParams

    @field_validator("time_step")
    @classmethod
    def _model_time_step(cls, text: str) -> str:
        hours = parse_hours(text)
        if hours != TIME_STEP_HOURS:
            raise ValueError(
                f"{text!r} is {hours:g} h; the models step {TIME_STEP_HOURS} h (zonda.variables.TIME_STEP_HOURS), "
                f"so the snapshot's step must be {TIME_STEP_HOURS}h (a finer source is thinned to it)"
            )
        return f"{TIME_STEP_HOURS}h"

    @property
    def time_step_hours(self) -> int:
        return int(parse_hours(self.time_step))

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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|hours?|min|minutes?|d|days?)\s*$", re.IGNORECASE)
_HOURS_PER_UNIT = {"h": 1.0, "m": 1.0 / 60.0, "d": 24.0}


def parse_hours(text: str) -> float:
    """``"6h"``, ``"360min"``, ``"1d"`` -> hours; ValueError naming the text otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration; write it like '6h', '360min' or '1d'")
    return float(match.group(1)) * _HOURS_PER_UNIT[match.group(2)[0].lower()]


def _check_names(names: list[str], kinds: tuple[str, ...]) -> list[str]:
    for name in names:
        if name not in VARIABLES:
            raise ValueError(f"unknown variable {name!r}; known: {', '.join(sorted(VARIABLES))}")
        if VARIABLES[name].kind not in kinds:
            raise ValueError(f"variable {name!r} is {VARIABLES[name].kind}, expected one of {kinds}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicated names in {names}")
    return names
