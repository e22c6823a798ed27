"""Windows of valid times (data.time, data.splits, statistics.period), written the GraphCast way."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import model_validator

from zonda.params.base import Strict
from zonda.variables import TIME_STEP_HOURS


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


class TimeWindow(Strict):
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
