"""Spine benchmarks: snapshot MB/s, statistics throughput vs a plain read, statistics peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)


def _source(path: Path, n_time: int, n_lat: int = 121, n_lon: int = 240) -> int:
    """A 1.5 deg, 13-level ERA5-shaped zarr source; returns its uncompressed size in bytes."""
    rng = np.random.default_rng(0)
    times = pd.date_range("2000-01-01", periods=n_time, freq="6h")
    lat = np.linspace(-90, 90, n_lat)
    lon = np.arange(n_lon) * 360.0 / n_lon
    shape = (n_time, len(LEVELS), n_lat, n_lon)
    base = {"temperature": (250.0, 10.0, "K"), "geopotential": (5.0e4, 1.0e3, "m**2 s**-2"),
            "u_component_of_wind": (5.0, 10.0, "m s**-1"), "v_component_of_wind": (0.0, 10.0, "m s**-1")}
    data = {k: (("time", "level", "latitude", "longitude"), (m + s * rng.standard_normal(shape)).astype("f4"), {"units": u})
            for k, (m, s, u) in base.items()}
    z = 287.0 * 250.0 * np.log(1013.25 / np.asarray(LEVELS, dtype="f8"))[:, None, None]  # (level, 1, 1): isothermal column
    data["geopotential"] = (data["geopotential"][0], (data["geopotential"][1] - 5.0e4 + z).astype("f4"), {"units": "m**2 s**-2"})
    data["surface_pressure"] = (("time", "latitude", "longitude"),
                                (1e5 + 500 * rng.standard_normal((n_time, n_lat, n_lon))).astype("f4"), {"units": "Pa"})
    data["geopotential_at_surface"] = (("latitude", "longitude"), np.zeros((n_lat, n_lon), "f4"), {"units": "m**2 s**-2"})
    ds = xr.Dataset(data, coords={"time": times, "level": list(LEVELS), "latitude": lat, "longitude": lon})
    ds.chunk({"time": 4}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return sum(v.nbytes for v in ds.data_vars.values())


def _params(source: Path, out_root: Path, n_days: int, budget_mb: float):
    from zonda.params import load_params

    end = (pd.Timestamp("2000-01-01") + pd.Timedelta(days=n_days) - pd.Timedelta(hours=6)).isoformat()
    return load_params(REPO / "params" / "ci.yaml", [
        "data.source.kind=zarr", f"data.source.path={source}", f"runtime.output_root={out_root}",
        f"data.levels=[{','.join(map(str, LEVELS))}]", f"data.time=2000-01-01/{end}", "data.chunk_time=1",
        "data.splits.train=2000-01-01/2000-01-05", "data.splits.validation=2000-01-06/2000-01-06",
        f"data.splits.test=2000-01-07/{end}", "evaluation.lead_days=0.25",
        "evaluation.headline_lead_days=[0.25]", "evaluation.map_lead_days=[0.25]",
        "registry.promotion.metrics=[rmse.geopotential.500.0.25d]",
        f"statistics.period=2000-01-01/{end}", f"statistics.chunk_budget_mb={budget_mb}",
    ])


_RSS_CHILD = """
import json, sys, time
from zonda.params import load_params
from zonda.statistics import compute_statistics
from benchmarks.memory import current_rss_bytes, peak_rss_bytes
p = load_params(sys.argv[1])
base = current_rss_bytes() / 2**20
t = time.perf_counter(); compute_statistics(sys.argv[2], p, progress=False); dt = time.perf_counter() - t
peak = peak_rss_bytes() / 2**20
print(json.dumps({"seconds": dt, "baseline_rss_mb": base, "peak_rss_mb": peak}))
"""


def measure(n_days: int = 12, budget_mb: float = 64.0) -> dict:
    from zonda.params import write_resolved
    from zonda.snapshot import build_snapshot
    from zonda.statistics import compute_statistics

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_time = n_days * 4
        nbytes = _source(tmp / "src.zarr", n_time)
        params = _params(tmp / "src.zarr", tmp / "out", n_days, budget_mb)
        t0 = time.perf_counter()
        build_snapshot(params, tmp / "snap", progress=False)
        snap_s = time.perf_counter() - t0

        store = tmp / "snap" / "data.zarr"
        t0 = time.perf_counter()
        plain = xr.open_zarr(store, chunks=None, consolidated=False)
        for name in plain.data_vars:
            np.asarray(plain[name].values)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compute_statistics(tmp / "snap", params, progress=False)
        stats_s = time.perf_counter() - t0

        write_resolved(params, tmp / "p")
        child = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(tmp / "p" / "params.resolved.yaml"), str(tmp / "snap")],
                               capture_output=True, text=True, check=True, cwd=REPO)  # `-c` imports from cwd
        rss = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "snapshot_mb": nbytes / 2**20,
        "snapshot_mb_per_s": nbytes / 2**20 / snap_s,
        "plain_read_s": read_s,
        "statistics_s": stats_s,
        "statistics_throughput_vs_plain_read": read_s / stats_s,
        "statistics_chunk_budget_mb": budget_mb,
        "statistics_peak_rss_mb": rss["peak_rss_mb"],
        "statistics_rss_above_imports_mb": rss["peak_rss_mb"] - rss["baseline_rss_mb"],
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
