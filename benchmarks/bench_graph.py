"""Graph-build benchmark: zonda vs ECMWF anemoi-graphs on the same grid and refinement.

Goals (issue 3):

* r6 mesh + 1.5 deg grid (121 x 240): zonda's build at most 1/3 of anemoi-graphs' time;
* r6 mesh + 0.25 deg grid (721 x 1440, 1,038,240 points): under 60 s and 4 GB peak RSS.

Every measurement runs in its own subprocess: zonda with this interpreter, the
peer with ``.venv-bench/bin/python`` (anemoi-graphs 0.9.0, anemoi-models 0.13.0,
torch 2.13.0, trimesh, netCDF4) when that venv exists. Each worker builds once to
warm up (the first build in a process pays one-off costs), then times
``repeats`` builds; zonda and peer workers alternate for ``rounds`` rounds and
the median (and min) over all timed builds is reported, with CPU time beside wall time. The 0.25 deg build runs in
a fresh process, once, so its peak RSS (VmHWM) is its own.

Peer configuration (anemoi's usual encoder-processor-decoder graph): TriNodes(r)
hidden nodes, LatLonNodes data nodes, CutOffEdges(cutoff_factor=0.6) encoder,
MultiScaleEdges(x_hops=1) processor, KNNEdges(3) decoder, each edge set with
EdgeLength and EdgeDirection attributes. zonda is timed with the same work
(factor 0.6, decoder knn k=3) and with its GraphCast default decoder
(containing triangle). With r6 and a 1.5 deg grid, factor 0.6 leaves ~20% of the
mesh nodes without encoder input in both libraries (zonda warns; on_uncovered='warn').

Only ratios from one run are meaningful: the machine is shared and absolute
times move with its load.

Usage::

    python benchmarks/bench_graph.py [--repeats 5] [--no-peer] [--no-large] [--json out.json]

``measure()`` returns the same numbers as a dict (for ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (also the worker processes): the repository root onto the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memory import peak_rss_gb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
GRIDS = {"1.5deg": (121, 240), "0.25deg": (721, 1440)}
WORKER_TIMEOUT_S = 900


def _grid(n_lat: int, n_lon: int):
    import numpy as np

    return np.linspace(-90.0, 90.0, n_lat), np.arange(n_lon) * (360.0 / n_lon)


def _time_builds(build, repeats: int, warmup: bool) -> dict[str, Any]:
    import statistics

    first = None
    if warmup:
        t = time.perf_counter()
        build()
        first = time.perf_counter() - t
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = build()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "cpu_median_s": statistics.median(cpu), "first_build_s": first, "result": out}


def _worker_zonda(n_lat: int, n_lon: int, refinement: int, decoder: str, repeats: int, warmup: bool) -> dict:
    t0 = time.perf_counter()
    import warnings

    from zonda.graph import build_graph
    from zonda.params import GraphParams

    import_s = time.perf_counter() - t0
    lat, lon = _grid(n_lat, n_lon)
    params = GraphParams(refinement=refinement, encoder_radius_factor=0.6, decoder=decoder, decoder_k=3,
                         on_uncovered="warn")
    warnings.simplefilter("ignore")
    out = _time_builds(lambda: build_graph(params, lat, lon), repeats, warmup)
    g = out.pop("result")
    return {**out, "import_s": import_s, "peak_rss_gb": peak_rss_gb(),
            "edges": {"->".join((k[0], k[2])): int(g[k].edge_index.shape[1]) for k in g.edge_types},
            "encoder_mesh_coverage": g.graph_meta["encoder"]["mesh_coverage"]}


def _worker_anemoi(n_lat: int, n_lon: int, refinement: int, repeats: int, warmup: bool) -> dict:
    t0 = time.perf_counter()
    import logging
    import warnings

    import numpy as np
    from anemoi.graphs.edges import CutOffEdges, KNNEdges, MultiScaleEdges
    from anemoi.graphs.nodes import LatLonNodes, TriNodes
    from torch_geometric.data import HeteroData

    import_s = time.perf_counter() - t0
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    lat, lon = _grid(n_lat, n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    attrs = {
        "edge_length": {"_target_": "anemoi.graphs.edges.attributes.EdgeLength", "norm": "unit-max"},
        "edge_dirs": {"_target_": "anemoi.graphs.edges.attributes.EdgeDirection", "norm": "unit-std"},
    }

    def build():
        g = HeteroData()
        g = LatLonNodes(la.ravel(), lo.ravel(), name="data").update_graph(g, {})
        g = TriNodes(resolution=refinement, name="hidden").update_graph(g, {})
        g = CutOffEdges("data", "hidden", cutoff_factor=0.6).update_graph(g, attrs)
        g = MultiScaleEdges("hidden", "hidden", x_hops=1).update_graph(g, attrs)
        g = KNNEdges("hidden", "data", num_nearest_neighbours=3).update_graph(g, attrs)
        return g

    out = _time_builds(build, repeats, warmup)
    g = out.pop("result")
    return {**out, "import_s": import_s, "peak_rss_gb": peak_rss_gb(),
            "edges": {"->".join((k[0], k[2])): int(g[k].edge_index.shape[1]) for k in g.edge_types}}


def _run_worker(python: Path | str, args: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", *args], capture_output=True,
                          text=True, env=env, timeout=WORKER_TIMEOUT_S, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pool(workers: list[dict]) -> dict[str, Any]:
    """Merges the timings of several worker runs of one configuration (median over all timed builds)."""
    import statistics

    out = dict(workers[0])
    out["times_s"] = [t for w in workers for t in w["times_s"]]
    out["median_s"] = statistics.median(out["times_s"])
    out["min_s"] = min(out["times_s"])
    out["cpu_median_s"] = statistics.median([w["cpu_median_s"] for w in workers])
    out["first_build_s"] = statistics.median([w["first_build_s"] for w in workers])
    out["peak_rss_gb"] = max(w["peak_rss_gb"] for w in workers)
    out["workers"] = len(workers)
    return out


def measure(repeats: int = 5, refinement: int = 6, peer: bool = True, large: bool = True,
            refinements_1p5: tuple[int, ...] = (5, 6), rounds: int = 2) -> dict[str, Any]:
    """Runs the benchmark; returns {'grid_1.5deg': {...}, 'grid_0.25deg': {...}, 'goals': {...}, ...}.

    Args:
        repeats: timed builds per worker process (after one warm-up build).
        rounds: worker processes per configuration, run interleaved zonda / anemoi; the
            reported median is over all ``rounds * repeats`` timed builds.
        refinement: mesh refinement of the 0.25 deg build (the issue's goal: 6).
        peer: also time anemoi-graphs when ``.venv-bench`` exists.
        large: also time the 0.25 deg build (fresh process, one build, its own peak RSS).
        refinements_1p5: refinements compared on the 1.5 deg grid.
    """
    have_peer = peer and PEER_PYTHON.exists()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": list(os.getloadavg())},
        "peer": "anemoi-graphs 0.9.0 (.venv-bench)" if have_peer else None,
        "grid_1.5deg": {},
    }
    n_lat, n_lon = GRIDS["1.5deg"]
    for r in refinements_1p5:
        common = [str(n_lat), str(n_lon), str(r), str(repeats), "1"]
        runs: dict[str, list[dict]] = {"zonda_knn3": [], "zonda_triangle": [], "anemoi": []}
        for _ in range(rounds):  # interleaved, so a burst of load on the shared machine hits both sides
            runs["zonda_knn3"].append(_run_worker(sys.executable, ["zonda", *common, "knn"]))
            runs["zonda_triangle"].append(_run_worker(sys.executable, ["zonda", *common, "containing_triangle"]))
            if have_peer:
                runs["anemoi"].append(_run_worker(PEER_PYTHON, ["anemoi", *common]))
        row = {name: _pool(ws) for name, ws in runs.items() if ws}
        if have_peer:
            for name in ("knn3", "triangle"):
                row[f"ratio_{name}"] = row[f"zonda_{name}"]["median_s"] / row["anemoi"]["median_s"]
                row[f"cpu_ratio_{name}"] = row[f"zonda_{name}"]["cpu_median_s"] / row["anemoi"]["cpu_median_s"]
        result["grid_1.5deg"][f"r{r}"] = row
    if large:
        n_lat, n_lon = GRIDS["0.25deg"]
        t = time.perf_counter()
        z = _run_worker(sys.executable, ["zonda", str(n_lat), str(n_lon), str(refinement), "1", "0",
                                         "containing_triangle"])
        z["process_wall_s"] = time.perf_counter() - t
        result["grid_0.25deg"] = {f"r{refinement}": {"zonda_triangle": z}}
    goals: dict[str, Any] = {}
    r6 = result["grid_1.5deg"].get("r6", {})
    if "ratio_knn3" in r6:
        goals["r6_1.5deg_ratio_le_one_third"] = max(r6["ratio_knn3"], r6["ratio_triangle"]) <= 1 / 3
    if large:
        z = result["grid_0.25deg"][f"r{refinement}"]["zonda_triangle"]
        goals["r6_0.25deg_under_60s"] = z["median_s"] < 60.0
        goals["r6_0.25deg_under_4GB"] = z["peak_rss_gb"] < 4.0
    result["goals"] = goals
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def report(res: dict[str, Any]) -> str:
    lines = [f"graph build benchmark (cpus={res['machine']['cpus']}, load {res['machine']['loadavg_start'][0]:.1f}"
             f" -> {res['machine']['loadavg_end'][0]:.1f}); peer: {res['peer'] or 'not installed'}"]
    for r, row in res["grid_1.5deg"].items():
        lines.append(f"1.5 deg (121x240), {r}:")
        for name, w in row.items():
            if isinstance(w, dict):
                first = f", first build {w['first_build_s']:.3f}s" if w.get("first_build_s") is not None else ""
                lines.append(f"  {name:15s} median {w['median_s']:.3f}s  min {w['min_s']:.3f}s  cpu {w['cpu_median_s']:.3f}s{first}  "
                             f"peak RSS {w['peak_rss_gb']:.2f} GB  edges {w['edges']}")
        if "ratio_knn3" in row:
            lines.append(f"  ratio zonda/anemoi (median wall): knn3 {row['ratio_knn3']:.3f}, containing-triangle "
                         f"{row['ratio_triangle']:.3f} (goal <= 0.333); CPU time: knn3 {row['cpu_ratio_knn3']:.3f}, "
                         f"containing-triangle {row['cpu_ratio_triangle']:.3f}")
    for r, row in res.get("grid_0.25deg", {}).items():
        w = row["zonda_triangle"]
        lines.append(f"0.25 deg (721x1440), {r}, fresh process: build {w['median_s']:.2f}s (goal < 60 s), "
                     f"import {w['import_s']:.2f}s, peak RSS {w['peak_rss_gb']:.2f} GB (goal < 4 GB), edges {w['edges']}")
    lines.append(f"goals: {res['goals']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        kind, n_lat, n_lon, r, repeats, warmup, *rest = argv[1:]
        if int(repeats) < 1:
            raise SystemExit("repeats must be >= 1")
        if kind == "zonda":
            out = _worker_zonda(int(n_lat), int(n_lon), int(r), rest[0], int(repeats), warmup == "1")
        else:
            out = _worker_anemoi(int(n_lat), int(n_lon), int(r), int(repeats), warmup == "1")
        print(json.dumps(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved worker processes per configuration")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-large", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    res = measure(repeats=args.repeats, peer=not args.no_peer, large=not args.no_large, rounds=args.rounds)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
