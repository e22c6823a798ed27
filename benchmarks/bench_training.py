"""Training throughput on the local preset, and whether it is input-bound.

    .venv/bin/python benchmarks/bench_training.py [--steps 40] [--rollout 1] [--repeats 2] [--snapshot D --statistics D --graph D]
        [--json out.json] [override ...]

:func:`measure` trains ``params/local.yaml`` (32 x 64 grid, 4 variables x 3
levels + surface pressure, r3 mesh, GNN 64 x 4, batch 4) for one epoch and
``--steps`` more with the real data loader, and again with
``training.fake_dataloading`` (the first batch served from memory), and reports

* ``samples_per_second``: training samples per second (median step, second epoch),
* ``step_seconds_real`` / ``step_seconds_fake`` and their ratio
  ``loader_overhead_ratio`` (goal <= 1.05: the run is not input-bound), and
  ``loader_overhead_ratio_cold`` for the first epoch, when every time chunk
  of the snapshot is decoded on first use,
* ``loader_samples_per_second_cold`` / ``_warm``: the data loader alone, and
  the ratios they imply (``loader_overhead_ratio[_cold]_estimate``), which
  other processes' load on a shared machine does not skew.

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
        if name == "geopotential":  # per level, an isothermal 250 K column: Phi = R T ln(1013.25 hPa / p)
            mean = 287.0 * 250.0 * np.log(1013.25 / np.asarray(d.levels, dtype="f8"))[:, None, None]  # (level, 1, 1)
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


def _loader_rates(params: Any, snapshot: Path, batches: int) -> tuple[float, float]:
    """Samples per second of the training loader alone: cold (fresh reader), then warm (after one epoch)."""
    from zonda.training.data import SnapshotDataModule

    dm = SnapshotDataModule(params, snapshot)

    def rate(iterator: Any) -> float:
        t0, n = time.perf_counter(), 0
        for _ in range(batches):
            n += next(iterator)["states"].shape[0]
        return n / (time.perf_counter() - t0)

    cold = rate(iter(dm.train_dataloader()))
    for _ in dm.train_dataloader():  # one epoch: every time chunk decoded once
        pass
    warm = rate(iter(dm.train_dataloader()))
    return cold, warm


def _medians(out: Path) -> dict[int, float]:
    """Median steady step time per epoch, from the run's history.json."""
    import statistics

    steps = json.loads((out / "history.json").read_text())["steps"]
    by_epoch: dict[int, list[float]] = {}
    for s in steps:
        if s["steady"]:
            by_epoch.setdefault(s["epoch"], []).append(s["seconds"])
    return {e: statistics.median(v) for e, v in by_epoch.items()}


def measure(
    steps: int = 40,
    rollout: int = 1,
    artifacts: dict[str, Path] | None = None,
    overrides: list[str] | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    """Trains the local preset with the real and the fake loader; returns the numbers.

    Each run is one full epoch (the reader's chunk cache is cold: every time
    chunk is decoded on first use) then ``steps`` steps of a second epoch
    (warm). The modes alternate ``repeats`` times and each keeps its fastest
    median step time, so load from other processes skews the ratio less.
    ``loader_overhead_ratio`` is the warm ratio, ``loader_overhead_ratio_cold``
    the first epoch's.
    """
    from zonda.params import load_params
    from zonda.training.data import SnapshotDataModule
    from zonda.training.train import train

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        base = load_params(REPO / "params" / "local.yaml", list(overrides or []))
        if artifacts is None:
            t0 = time.perf_counter()
            artifacts = _synthetic_artifacts(base, root)
            print(f"built synthetic local-preset artifacts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        t = base.training
        epoch = len(SnapshotDataModule(base, artifacts["snapshot"]).anchors("train", rollout)) // t.batch_size
        settings = [
            "training.max_epochs=2", f"training.max_steps={epoch + steps}", "training.limit_val_batches=0",
            "training.limit_train_batches=null", "training.checkpoint.top_k=0",
            f"training.rollout.start={rollout}", f"training.rollout.end={rollout}", *(overrides or []),
        ]
        results: dict[str, Any] = {"preset": "local", "rollout": rollout, "batch_size": t.batch_size,
                                   "steps_per_epoch": epoch, "warm_steps": steps, "settings": settings}
        best: dict[str, dict[int, float]] = {}
        for _ in range(repeats):
            for mode in ("real", "fake"):
                p = load_params(REPO / "params" / "local.yaml", settings + [f"training.fake_dataloading={mode == 'fake'}"])
                out = root / f"out-{mode}"
                train(p, artifacts["snapshot"], artifacts["statistics"], artifacts["graph"], out, progress=False, track=False)
                medians = _medians(out)
                best[mode] = {e: min(v, best.get(mode, {}).get(e, v)) for e, v in medians.items()}
        fake = min(best["fake"].values())
        results["step_seconds_real_cold"] = best["real"][0]
        results["step_seconds_real"] = best["real"][1]
        results["step_seconds_fake"] = fake
        results["samples_per_second"] = t.batch_size / best["real"][1]
        results["samples_per_second_fake"] = t.batch_size / fake
        results["loader_overhead_ratio"] = best["real"][1] / fake
        results["loader_overhead_ratio_cold"] = best["real"][0] / fake
        cold, warm = _loader_rates(base, artifacts["snapshot"], 20)
        results["loader_samples_per_second_cold"] = cold
        results["loader_samples_per_second_warm"] = warm
        # Structural estimate, immune to other processes' load: (step + loading) / step.
        results["loader_overhead_ratio_estimate"] = (fake + t.batch_size / warm) / fake
        results["loader_overhead_ratio_cold_estimate"] = (fake + t.batch_size / cold) / fake
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="steps timed in the second (warm) epoch")
    ap.add_argument("--rollout", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="alternating real/fake runs; the fastest of each counts")
    ap.add_argument("--snapshot")
    ap.add_argument("--statistics")
    ap.add_argument("--graph")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    artifacts = None
    if args.snapshot:
        artifacts = {"snapshot": Path(args.snapshot), "statistics": Path(args.statistics), "graph": Path(args.graph)}
    results = measure(args.steps, args.rollout, artifacts, args.overrides, args.repeats)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
