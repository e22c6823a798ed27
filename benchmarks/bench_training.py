"""Training throughput on the local preset, and whether it is input-bound.

    .venv/bin/python benchmarks/bench_training.py [--steps 12] [--rollout 1] [--snapshot D --statistics D --graph D]
        [--json out.json] [override ...]

:func:`measure` trains ``params/local.yaml`` (32 x 64 grid, 4 variables x 3
levels + surface pressure, r3 mesh, GNN 64 x 4, batch 4) for a few steps with
the real data loader and again with ``training.fake_dataloading`` (the first
batch served from memory), and reports

* ``samples_per_second``: training samples per second (median steady step),
* ``step_seconds_real`` / ``step_seconds_fake`` and their ratio
  ``loader_overhead_ratio`` (goal <= 1.05: the run is not input-bound),
* ``loader_samples_per_second``: the data loader alone.

Without ``--snapshot``, it builds a synthetic snapshot with the local preset's
shape (and its statistics and graph) in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _synthetic_artifacts(params: Any, root: Path) -> dict[str, Path]:
    """Snapshot, statistics and graph of a random source shaped like the preset."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from zonda.graph import build_graph, save_graph
    from zonda.params import load_params
    from zonda.snapshot import build_snapshot, open_snapshot
    from zonda.statistics import build_statistics
    from zonda.variables import variable

    d = params.data
    times = pd.date_range(d.time.start, d.time.end, freq="6h")
    n_lat, n_lon = 32, 64
    lat = np.linspace(-90 + 90 / n_lat, 90 - 90 / n_lat, n_lat)
    lon = np.arange(n_lon) * 360.0 / n_lon
    rng = np.random.default_rng(0)
    base = {"temperature": (250, 10), "geopotential": (5e4, 1e3), "u_component_of_wind": (5, 10),
            "v_component_of_wind": (0, 10), "surface_pressure": (1e5, 500)}
    data = {}
    for name in d.variables:
        mean, std = base[name]
        shape = (times.size, len(d.levels), n_lat, n_lon) if variable(name).has_levels else (times.size, n_lat, n_lon)
        dims = ("time", "level", "latitude", "longitude") if variable(name).has_levels else ("time", "latitude", "longitude")
        data[name] = (dims, (mean + std * rng.standard_normal(shape)).astype("f4"), {"units": variable(name).units})
    data["geopotential_at_surface"] = (("latitude", "longitude"), np.zeros((n_lat, n_lon), "f4"), {"units": "m**2 s**-2"})
    ds = xr.Dataset(data, coords={"time": times, "level": np.asarray(d.levels), "latitude": lat, "longitude": lon})
    source = root / "source.zarr"
    ds.to_zarr(source, mode="w", zarr_format=3, consolidated=False)
    p = load_params(REPO / "params" / "local.yaml", ["data.source.kind=zarr", f"data.source.path={source}",
                                                     f"runtime.output_root={root / 'runtime'}"])
    out = {"snapshot": root / "snapshot", "statistics": root / "statistics", "graph": root / "graph"}
    build_snapshot(p, out["snapshot"], progress=False)
    build_statistics(p, out["snapshot"], out["statistics"], progress=False)
    snap = open_snapshot(out["snapshot"])
    save_graph(build_graph(p.graph, snap["latitude"].values, snap["longitude"].values), out["graph"])
    return out


def _loader_rate(params: Any, snapshot: Path, batches: int) -> float:
    from zonda.training.data import SnapshotDataModule

    dm = SnapshotDataModule(params, snapshot)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["states"].shape[0]
    return n / (time.perf_counter() - t0)


def measure(
    steps: int = 12,
    rollout: int = 1,
    artifacts: dict[str, Path] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Trains ``steps`` steps of the local preset with the real and the fake loader; returns the numbers."""
    from zonda.params import load_params
    from zonda.training.train import train

    settings = [
        f"training.max_steps={steps}", "training.max_epochs=1", "training.limit_val_batches=0",
        "training.checkpoint.top_k=0", f"training.rollout.start={rollout}", f"training.rollout.end={rollout}",
        *(overrides or []),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        base = load_params(REPO / "params" / "local.yaml", settings)
        if artifacts is None:
            t0 = time.perf_counter()
            artifacts = _synthetic_artifacts(base, root)
            print(f"built synthetic local-preset artifacts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        params = base
        results: dict[str, Any] = {"preset": "local", "steps": steps, "rollout": rollout,
                                   "batch_size": params.training.batch_size, "overrides": settings}
        for mode in ("real", "fake"):
            p = load_params(REPO / "params" / "local.yaml", settings + [f"training.fake_dataloading={mode == 'fake'}"])
            manifest = train(p, artifacts["snapshot"], artifacts["statistics"], artifacts["graph"], root / f"out-{mode}",
                             progress=False, track=False)
            tp = manifest["throughput"]
            results[f"step_seconds_{mode}"] = tp["median_step_seconds"]
            results[f"samples_per_second_{mode}"] = tp["samples_per_second"]
        results["samples_per_second"] = results["samples_per_second_real"]
        results["loader_overhead_ratio"] = results["step_seconds_real"] / results["step_seconds_fake"]
        results["loader_samples_per_second"] = _loader_rate(params, artifacts["snapshot"], 20)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rollout", type=int, default=1)
    ap.add_argument("--snapshot")
    ap.add_argument("--statistics")
    ap.add_argument("--graph")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    artifacts = None
    if args.snapshot:
        artifacts = {"snapshot": Path(args.snapshot), "statistics": Path(args.statistics), "graph": Path(args.graph)}
    results = measure(args.steps, args.rollout, artifacts, args.overrides)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
