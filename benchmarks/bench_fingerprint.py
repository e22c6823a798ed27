"""Source fingerprint cost: every object of the read arrays vs only the chunks of the selected steps.

A 60-day hourly zarr v3 store, one step per chunk (as ARCO-ERA5), five variables: 7200 variable chunks.
The ci preset's period (2000-01-01/2000-01-14, 6-hourly: 56 steps) selects 280 of them. "whole" is the
listing of every object of the read arrays (what the fingerprint took before), "selected" what it takes now.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np

from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset
from zonda.data.fingerprint import _read_names, source_fingerprint, zarr_fingerprint
from zonda.params import load_params

DAYS = 60
REPEATS = 3


def _store(url: str) -> None:
    hourly = synthetic_dataset(n_time=DAYS * 24, n_lat=8, n_lon=16)
    hourly = hourly.assign_coords(
        time=np.datetime64("2000-01-01T00", "ns") + np.arange(DAYS * 24) * np.timedelta64(1, "h")
    )
    hourly.chunk({"time": 1}).to_zarr(url, mode="w", zarr_format=3, consolidated=False)


def _best(fn) -> tuple[float, dict]:
    times, result = [], {}
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure() -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        memory = f"memory://bench-{uuid.uuid4().hex[:8]}/hourly.zarr"
        for where, url in (("local", str(Path(tmp) / "hourly.zarr")), ("memory", memory)):
            _store(url)
            params = load_params(
                REPO / "params" / "ci.yaml",
                ["data.source.kind=zarr", f"data.source.path={url}", "data.time_step=6h", f"runtime.output_root={tmp}"],
            )
            whole_s, whole = _best(lambda: zarr_fingerprint(url, {}, arrays=_read_names(params.data)))
            selected_s, selected = _best(lambda: source_fingerprint(params.data))
            results[where] = {
                "whole_objects": whole["objects"], "whole_s": round(whole_s, 3),
                "selected_objects": selected["objects"], "selected_chunks": selected["selected_chunks"],
                "selected_s": round(selected_s, 3),
            }
        fsspec.filesystem("memory").rm(memory.removeprefix("memory://").rsplit("/", 1)[0], recursive=True)
    return results


if __name__ == "__main__":
    print(measure())
