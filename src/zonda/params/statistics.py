"""``statistics``: the normalisation statistics stage."""

from __future__ import annotations

from pydantic import Field

from zonda.params.base import Strict
from zonda.params.times import TimeWindow


class StatisticsParams(Strict):
    period: TimeWindow | None = Field(None, description="Window the statistics cover; default: the train split.")
    area_weighted: bool = Field(True, description="Weight by WB2 cell area (sin of latitude cell bounds).")
    chunk_budget_mb: float = Field(256.0, gt=0, description="Upper bound on the data held in memory at once.")
    dask_address: str | None = Field(
        None, description="Address of a Dask scheduler (tcp://host:8786) to spread chunks over; None runs in-process."
    )
