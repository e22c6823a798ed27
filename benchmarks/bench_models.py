"""Benchmark of the zonda model family against anemoi-models (forward + backward, CPU).

Goals (issue 3): zonda's forward+backward time at most 0.5x anemoi-models'
at equal width, depth and graph, and at least 60% of the GEMM roofline.

What is measured, per processor and width:

* wall time of one training step's forward + backward (loss = mean square of
  the output), median over ``repeats`` after ``warmup`` runs, batch 1;
* zonda and the peer each run in their own fresh worker process, both alive
  at once, and the driver alternates their steps (zonda, anemoi; anemoi,
  zonda; ...), so a change in this shared machine's load hits both alike.
  The time ratio is the ratio of the medians; the range of the per-round
  ratios (``pairs``) shows how far it can be trusted;
* peak resident memory of each worker process (peaks do not mix);
* matmul FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode``
  from the shapes of every matmul one forward + backward step runs
  (``2*m*n*k`` each, in-place ``addmm_`` and oneDNN linears included), and
  the fp32 GEMM rate of this machine measured in the same process between
  repeats (a large ``torch.mm``); roofline fraction = FLOPs / (time * GEMM
  rate);
* the same for the peer, anemoi-models 0.13.0 (``AnemoiModelEncProcDec`` with
  GNN or GraphTransformer encoder/processor/decoder, built from the same
  graph) in ``.venv-bench`` when that venv exists and imports, with
  ratios zonda / anemoi. Both get the same process settings (threads,
  allocator); gradient checkpointing is off in both unless asked for.

Model shapes follow the peer's measurement setup: 16 layers, 20 variables,
2 input steps, a refinement-5 icosahedral multi-mesh and the 5.625 degree grid
(32 x 64). The zonda GNN uses 2 hidden layers per MLP, like anemoi's MLPs;
both use the same activation (SiLU unless ``--activation``) and 16 heads.

zonda runs with its default ``model.fused_kernels: auto``: at this size the
graph transformer's edge attention runs ``torch.compile``-fused
(``--fused-kernels off`` for the eager maths). The warm-up step absorbs the
compile (a few seconds; Inductor caches it on disk), and the FLOP count runs
the same maths eagerly (Dynamo steps aside under ``FlopCounterMode``).

Process settings, identical for both models:

* threads: 1 by default (``--threads``). The machine has 2 cores shared with
  other jobs; with 2 OpenMP threads every parallel op waits at a barrier for
  whichever thread the scheduler parked, and the same step varied 3x between
  runs (a tiny test model ran 10x slower). Single-threaded runs are
  repeatable, and the GEMM rate for the roofline is measured under the same
  setting. ``--threads 0`` keeps torch's default.
* CPU allocator: glibc returns every freed block above 32 MB to the kernel
  and page-faults it back in on the next allocation, which costs more than
  the arithmetic on an edge-sized tensor. Each worker raises glibc's mmap and
  trim thresholds (``--no-tune-malloc`` to compare).

Run: ``python benchmarks/bench_models.py`` (see ``--help``); ``measure()`` is
the entry point for ``make bench``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script (also the worker processes): the repository root onto the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memory import current_rss_gb, peak_rss_gb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-bench" / "bin" / "python"
GRID_LAT = np.arange(-87.1875, 87.1875 + 1e-9, 5.625)
GRID_LON = np.arange(0.0, 360.0, 5.625)

# anemoi-models 0.13.0 measured on this machine earlier (16 layers, 20 variables,
# 2 input steps, batch 1, r5 mesh + 5.625 deg grid): seconds, GB.
REFERENCE_LAYERS, REFERENCE_REFINEMENT = 16, 5
PEER_REFERENCE = {
    ("graph_transformer", 128): (12.4, 3.0),
    ("graph_transformer", 256): (25.1, 5.0),
    ("gnn", 128): (16.8, 4.2),
    ("gnn", 256): (45.4, 7.9),
}


@dataclass
class Case:
    """One benchmark configuration (shared by the zonda and the peer worker)."""

    processor: str
    width: int
    layers: int = 16
    variables: int = 20
    input_steps: int = 2
    batch: int = 1
    heads: int = 16
    repeats: int = 5  # the protocol: median of 5 after a warm-up
    warmup: int = 1
    checkpointing: bool = False
    tune_malloc: bool = True
    threads: int = 0
    activation: str = "silu"
    fused_kernels: str = "auto"  # zonda only: ModelParams.fused_kernels
    graph_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------- process setup


def tune_malloc() -> bool:
    """Keep freed memory in the heap (glibc): no page faults on every large allocation."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    big = ctypes.c_int(1 << 30)
    return bool(libc.mallopt(m_mmap_threshold, big)) and bool(libc.mallopt(m_trim_threshold, big))


def gemm_rate(n: int = 2048, reps: int = 3) -> float:
    """fp32 GEMM rate (FLOP/s) of a square ``n x n`` matmul, best of ``reps``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def matmul_flops(fn) -> int:
    """FLOPs of the matmuls ``fn()`` runs, forward and backward (``2*m*n*k`` each).

    ``FlopCounterMode`` knows ``mm``/``addmm``/``bmm``/attention; the in-place
    ``addmm_`` is added here (its registry entry is keyed by the overload
    packet, so ``aten.addmm_`` and not ``aten.addmm_.default``), and zonda
    registers the formula of its oneDNN linear in ``zonda.models.dense``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_inplace_flop(self_shape, a_shape, b_shape, *args, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_inplace_flop}) as counter:
        fn()
    return int(counter.get_total_flops())


# ----------------------------------------------------------------- the graph


def bench_graph(refinement: int, out_file: Path) -> dict[str, Any]:
    """Builds the benchmark graph (zonda.graph, else a toy graph of the same size) and saves it as .npz."""
    graph, source = _zonda_graph(refinement)
    arrays = {}
    for node in ("grid", "mesh"):
        arrays[f"{node}.x"] = graph[node].x.numpy()
        arrays[f"{node}.latlon"] = graph[node].latlon.numpy()
    for src, _, dst in graph.edge_types:
        arrays[f"{src}.{dst}.edge_index"] = graph[src, "to", dst].edge_index.numpy()
        arrays[f"{src}.{dst}.edge_attr"] = graph[src, "to", dst].edge_attr.numpy()
    np.savez(out_file, **arrays)
    sizes = {f"{s}->{d}": int(graph[s, "to", d].edge_index.shape[1]) for s, _, d in graph.edge_types}
    return {"source": source, "grid_nodes": int(graph["grid"].x.shape[0]), "mesh_nodes": int(graph["mesh"].x.shape[0]), "edges": sizes}


def _zonda_graph(refinement: int):
    import warnings

    try:
        from zonda.graph import build_graph
        from zonda.params import GraphParams

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = GraphParams(refinement=refinement, encoder_radius_factor=1.0, on_uncovered="warn")
            return build_graph(params, GRID_LAT, GRID_LON), f"zonda.graph.build_graph(refinement={refinement})"
    except Exception as exc:  # the graph package may be missing or broken: same-size stand-in
        from zonda.models.toy_graph import toy_graph

        mesh = 10 * 4**refinement + 2
        return toy_graph(GRID_LAT, GRID_LON, mesh, encoder_k=4, decoder_k=3, mesh_k=6), (
            f"toy_graph({mesh} mesh nodes; zonda.graph unavailable: {type(exc).__name__}: {exc})"
        )


def load_graph_npz(path: str):
    import torch
    from torch_geometric.data import HeteroData

    z = np.load(path)
    g = HeteroData()
    for node in ("grid", "mesh"):
        g[node].x = torch.from_numpy(z[f"{node}.x"])
        g[node].latlon = torch.from_numpy(z[f"{node}.latlon"])
    for src, dst in (("grid", "mesh"), ("mesh", "mesh"), ("mesh", "grid")):
        g[src, "to", dst].edge_index = torch.from_numpy(z[f"{src}.{dst}.edge_index"])
        g[src, "to", dst].edge_attr = torch.from_numpy(z[f"{src}.{dst}.edge_attr"])
    return g


# ------------------------------------------------------------------ workers


def build_zonda(case: Case):
    """zonda network on the benchmark graph: ``(module, forward)``, ``forward()`` -> output tensor."""
    import torch

    from zonda.models import build_network
    from zonda.params import ModelParams

    graph = load_graph_npz(case.graph_file)
    params = ModelParams(
        processor=case.processor, hidden_dim=case.width, processor_layers=case.layers, num_heads=case.heads,
        mlp_hidden_layers=2 if case.processor == "gnn" else 1, activation=case.activation,
        input_steps=case.input_steps, gradient_checkpointing=case.checkpointing, fused_kernels=case.fused_kernels,
    )
    torch.manual_seed(0)
    net = build_network(params, graph, case.input_steps * case.variables, case.variables)
    x = torch.randn(case.batch, graph["grid"].x.shape[0], case.input_steps * case.variables)
    return net, lambda: net(x)


def build_anemoi(case: Case):
    """anemoi-models AnemoiModelEncProcDec on the same graph (in .venv-bench): ``(module, forward)``."""
    import logging

    import torch

    logging.disable(logging.WARNING)  # "triton not available, falling back to pyg" per block
    graph = load_graph_npz(case.graph_file)
    torch.manual_seed(0)
    model = _anemoi_model(case, graph)
    for module in model.modules():  # anemoi checkpoints processor and mappers by default
        if hasattr(module, "gradient_checkpointing"):
            module.gradient_checkpointing = case.checkpointing
    n_grid = graph["grid"].x.shape[0]
    x = {"data": torch.randn(case.batch, case.input_steps, 1, n_grid, case.variables)}
    return model, lambda: model(x)["data"]


def _anemoi_model(case: Case, graph, attention_backend: str = "pyg"):
    """AnemoiModelEncProcDec (GNN or GraphTransformer everywhere), hydra-style config as anemoi-training builds it.

    ``attention_backend``: anemoi's graph-attention kernel, ``pyg`` (the CPU's) or ``triton`` (its GPU default).
    """
    import torch
    from omegaconf import OmegaConf
    from torch_geometric.data import HeteroData

    from anemoi.models.data_indices.collection import IndexCollection
    from anemoi.models.models.encoder_processor_decoder import AnemoiModelEncProcDec

    g = HeteroData()  # anemoi naming: data/hidden nodes with x = (lat, lon) radians, named edge attributes
    for ours, theirs in (("grid", "data"), ("mesh", "hidden")):
        g[theirs].x = torch.deg2rad(graph[ours].latlon)
    for (src, dst), (a, b) in {("grid", "mesh"): ("data", "hidden"), ("mesh", "mesh"): ("hidden", "hidden"),
                               ("mesh", "grid"): ("hidden", "data")}.items():
        edges = graph[src, "to", dst]
        g[a, "to", b].edge_index = edges.edge_index
        g[a, "to", b].edge_length = edges.edge_attr[:, :1]
        g[a, "to", b].edge_dirs = edges.edge_attr[:, 1:]
    activation = {"silu": "torch.nn.SiLU", "gelu": "torch.nn.GELU", "relu": "torch.nn.ReLU"}[case.activation]
    kernels = {"LayerNorm": {"_target_": "torch.nn.LayerNorm"}, "Linear": {"_target_": "torch.nn.Linear"},
               "Activation": {"_target_": activation}}
    common = {"trainable_size": 8, "sub_graph_edge_attributes": ["edge_length", "edge_dirs"], "cpu_offload": False,
              "layer_kernels": kernels}
    if case.processor == "graph_transformer":
        gt = {"num_chunks": 1, "mlp_hidden_ratio": 4, "num_heads": case.heads, "qk_norm": False,
              "graph_attention_backend": attention_backend}
        proc = {"_target_": "anemoi.models.layers.processor.GraphTransformerProcessor", "edge_pre_mlp": False, **common, **gt}
        enc = {"_target_": "anemoi.models.layers.mapper.GraphTransformerForwardMapper", "shard_strategy": "edges", **common, **gt}
        dec = {"_target_": "anemoi.models.layers.mapper.GraphTransformerBackwardMapper", "shard_strategy": "edges",
               "initialise_data_extractor_zero": False, **common, **gt}
    else:
        gnn = {"num_chunks": 1, "mlp_extra_layers": 0}
        proc = {"_target_": "anemoi.models.layers.processor.GNNProcessor", **common, **gnn}
        enc = {"_target_": "anemoi.models.layers.mapper.GNNForwardMapper", **common, **gnn}
        dec = {"_target_": "anemoi.models.layers.mapper.GNNBackwardMapper", **common, **gnn}
    proc["num_layers"] = case.layers
    config = OmegaConf.create({
        "training": {"multistep_input": case.input_steps, "multistep_output": 1},
        "model": {
            "num_channels": case.width,
            "model": {"_target_": "anemoi.models.models.AnemoiModelEncProcDec", "hidden_nodes_name": "hidden",
                      "latent_skip": True},
            "trainable_parameters": {"data": 8, "hidden": 8},
            "processor": proc, "encoder": enc, "decoder": dec, "layer_kernels": kernels,
            "residual": {"_target_": "anemoi.models.layers.residual.SkipConnection"}, "bounding": [],
        },
    })
    names = {f"v{i}": i for i in range(case.variables)}
    indices = {"data": IndexCollection(OmegaConf.create({"forcing": [], "diagnostic": []}), names)}
    return AnemoiModelEncProcDec(model_config=config, data_indices=indices, statistics={"data": {}}, graph_data=g)


REPLY = "BENCH-REPLY "  # prefix of a worker's protocol lines on stdout (anything else there is ignored)


def worker_main(kind: str, spec: str) -> None:
    """Worker process: builds one model, then times one step per ``step`` line read from stdin.

    Protocol, one JSON line prefixed by :data:`REPLY` per request: after the
    build, the FLOP count and the warm-up the worker replies ``ready`` with a
    GEMM rate; ``step`` runs one forward + backward and replies its wall time
    and the GEMM rate measured right after it; ``finish`` replies the
    process's totals (FLOPs, parameters, peak RSS) and exits.
    """
    case = Case(**json.loads(spec))
    if case.tune_malloc:
        tune_malloc()
    import torch

    if case.threads:
        torch.set_num_threads(case.threads)
    module, forward = build_zonda(case) if kind == "zonda" else build_anemoi(case)

    def step() -> None:
        module.zero_grad(set_to_none=True)
        forward().float().square().mean().backward()

    model_rss = current_rss_gb()
    flops = matmul_flops(step)
    for _ in range(case.warmup):
        step()
    _reply({"ready": True, "gemm_flops_per_s": gemm_rate()})
    for line in sys.stdin:
        request = line.strip()
        if request == "step":
            t0 = time.perf_counter()
            step()
            elapsed = time.perf_counter() - t0
            _reply({"time_s": elapsed, "gemm_flops_per_s": gemm_rate()})
        elif request == "finish":
            _reply({
                "flops": flops, "parameters": sum(p.numel() for p in module.parameters()), "peak_rss_gb": peak_rss_gb(),
                "model_rss_gb": model_rss, "threads": torch.get_num_threads(), "torch": torch.__version__,
            })
            return
        else:
            raise ValueError(f"unknown benchmark request {request!r}")


def _reply(message: dict[str, Any]) -> None:
    print(REPLY + json.dumps(message), flush=True)


# ------------------------------------------------------------------- driver


def peer_available() -> tuple[bool, str]:
    """Whether .venv-bench exists and imports anemoi-models; the reason if not."""
    if not PEER_PYTHON.exists():
        return False, f"{PEER_PYTHON} does not exist"
    probe = subprocess.run(
        [str(PEER_PYTHON), "-c", "import anemoi.models, torch; print(anemoi.models.__version__, torch.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    if probe.returncode:
        return False, f"anemoi-models does not import in .venv-bench: {probe.stderr.strip().splitlines()[-1:]}"
    return True, probe.stdout.strip()


class WorkerError(RuntimeError):
    """A benchmark worker died (or timed out) before it replied."""


class _Worker:
    """Driver side of one worker process (see :func:`worker_main`); blocks until the worker is ready."""

    def __init__(self, python: str, kind: str, case: Case, timeout: float) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        if kind == "anemoi":
            env["PYTHONPATH"] = ""  # the peer must not see zonda's sources
        self.kind, self.timeout = kind, timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(asdict(case))]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      text=True, env=env, cwd=str(REPO))
        self.ready = self._read()

    def request(self, what: str) -> dict[str, Any]:
        try:
            self._proc.stdin.write(what + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone; _read says why
        return self._read()

    def _read(self) -> dict[str, Any]:
        deadline = threading.Timer(self.timeout, self._proc.kill)
        deadline.start()
        try:
            for line in self._proc.stdout:
                if line.startswith(REPLY):
                    return json.loads(line[len(REPLY):])
        finally:
            deadline.cancel()
        code = self._proc.wait()
        self._stderr.seek(0)
        tail = self._stderr.read().strip().splitlines()[-5:]
        raise WorkerError(f"{self.kind} worker failed (exit {code}): " + " | ".join(tail))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._stderr.close()


def run_interleaved(workers: dict[str, _Worker], repeats: int) -> dict[str, dict[str, Any]]:
    """Times ``repeats`` steps of every worker, alternating the workers step by step.

    Only one worker computes at a time, and the order flips every round
    (A B, B A, A B, ...), so a change in the machine's load hits both models
    alike. Per worker: the step times, their median, the median GEMM rate
    measured around its steps, and its totals; a worker that fails gets
    ``{"error": ...}`` and the others go on.
    """
    live = list(workers)
    samples = {n: {"times_s": [], "rates": [workers[n].ready["gemm_flops_per_s"]]} for n in live}
    results: dict[str, dict[str, Any]] = {}
    for i in range(repeats):
        for name in live[:: 1 if i % 2 == 0 else -1]:
            try:
                reply = workers[name].request("step")
            except WorkerError as exc:
                results[name] = {"error": str(exc)}
                live.remove(name)
                continue
            samples[name]["times_s"].append(reply["time_s"])
            samples[name]["rates"].append(reply["gemm_flops_per_s"])
    for name in live:
        try:
            totals = workers[name].request("finish")
        except WorkerError as exc:
            results[name] = {"error": str(exc)}
            continue
        times, rate = samples[name]["times_s"], statistics.median(samples[name]["rates"])
        time_s = statistics.median(times)
        results[name] = {"times_s": times, "time_s": time_s, "gemm_flops_per_s": rate, **totals,
                         "roofline": totals["flops"] / (time_s * rate)}
    return results


def measure_case(case: Case, peer: bool, timeout: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Results of zonda and (with ``peer``) anemoi-models for one case, their steps interleaved."""
    pythons = {"zonda": sys.executable, **({"anemoi": str(PEER_PYTHON)} if peer else {})}
    workers: dict[str, _Worker] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for kind, python in pythons.items():
            try:
                workers[kind] = _Worker(python, kind, case, timeout)
            except WorkerError as exc:
                results[kind] = {"error": str(exc)}
        results.update(run_interleaved(workers, case.repeats))
    finally:
        for worker in workers.values():
            worker.close()
    return results["zonda"], results.get("anemoi")


def measure(
    processors: tuple[str, ...] = ("gnn", "graph_transformer"),
    widths: tuple[int, ...] = (128,),
    layers: int = 16,
    refinement: int = 5,
    repeats: int = 5,
    warmup: int = 1,
    peer: bool = True,
    checkpointing: bool = False,
    tune: bool = True,
    threads: int = 1,
    activation: str = "silu",
    fused_kernels: str = "auto",
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Runs every (processor, width) for zonda (and the peer) in fresh subprocesses.

    Returns ``{"graph": {...}, "peer": "...", "results": [{processor, width,
    zonda: {...}, anemoi: {...} | None, ratio_time, ratio_memory, ...}]}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        graph_file = Path(tmp) / "graph.npz"
        graph_info = bench_graph(refinement, graph_file)
        peer_ok, peer_note = peer_available() if peer else (False, "disabled (--no-peer)")
        rows = []
        for processor in processors:
            for width in widths:
                case = Case(processor, width, layers=layers, repeats=repeats, warmup=warmup,
                            checkpointing=checkpointing, tune_malloc=tune, threads=threads, activation=activation,
                            fused_kernels=fused_kernels, graph_file=str(graph_file))
                row: dict[str, Any] = {"processor": processor, "width": width, "layers": layers}
                comparable = processor in ("gnn", "graph_transformer")  # the peer is built for these two
                row["zonda"], row["anemoi"] = measure_case(case, peer_ok and comparable, timeout)
                same_setup = layers == REFERENCE_LAYERS and refinement == REFERENCE_REFINEMENT
                row["anemoi_reference"] = PEER_REFERENCE.get((processor, width)) if same_setup else None
                _ratios(row)
                rows.append(row)
    return {"graph": graph_info, "peer": peer_note if peer_ok else f"skipped: {peer_note}", "results": rows}


def _ratios(row: dict[str, Any]) -> None:
    z, a = row["zonda"], row["anemoi"]
    if "error" in z or not a or "error" in a:
        return
    row["ratio_time"] = z["time_s"] / a["time_s"]
    pairs = [tz / ta for tz, ta in zip(z["times_s"], a["times_s"])]  # the two steps of one round ran back to back
    row["ratio_time_pairs"] = [min(pairs), max(pairs)]
    # the machine is shared: also compare times in units of each process's own GEMM time
    row["ratio_time_load_normalised"] = (z["time_s"] * z["gemm_flops_per_s"]) / (a["time_s"] * a["gemm_flops_per_s"])
    row["ratio_peak_rss"] = z["peak_rss_gb"] / a["peak_rss_gb"]


def report(result: dict[str, Any]) -> str:
    g = result["graph"]
    lines = [
        f"graph: {g['source']}: {g['grid_nodes']} grid, {g['mesh_nodes']} mesh nodes, edges {g['edges']}",
        f"peer: {result['peer']}",
        f"{'processor':<18}{'width':>6}  {'zonda s':>8} {'GB':>5} {'GFLOP':>7} {'GEMM GF/s':>9} {'roofline':>8}"
        f"  {'anemoi s':>8} {'GB':>5} {'roofline':>8}  {'time ratio':>10} {'(pairs)':>11} {'(load-norm)':>11}"
        f" {'mem ratio':>9}",
    ]
    for row in result["results"]:
        z, a = row["zonda"], row["anemoi"]
        if "error" in z:
            lines.append(f"{row['processor']:<18}{row['width']:>6}  zonda error: {z['error']}")
            continue
        text = (f"{row['processor']:<18}{row['width']:>6}  {z['time_s']:>8.2f} {z['peak_rss_gb']:>5.2f} "
                f"{z['flops'] / 1e9:>7.1f} {z['gemm_flops_per_s'] / 1e9:>9.1f} {z['roofline']:>8.1%}")
        if a and "error" not in a:
            text += (f"  {a['time_s']:>8.2f} {a['peak_rss_gb']:>5.2f} {a['roofline']:>8.1%}"
                     f"  {row['ratio_time']:>10.2f} {'{:.2f}-{:.2f}'.format(*row['ratio_time_pairs']):>11}"
                     f" {row['ratio_time_load_normalised']:>11.2f} {row['ratio_peak_rss']:>9.2f}")
        elif a:
            text += f"  anemoi error: {a['error']}"
        ref = row.get("anemoi_reference")
        if ref:
            text += f"   [anemoi earlier: {ref[0]:.1f} s, {ref[1]:.1f} GB; ratio {z['time_s'] / ref[0]:.2f}]"
        lines.append(text)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processors", default="gnn,graph_transformer", help="comma list of gnn, graph_transformer, transformer")
    parser.add_argument("--widths", default="128", help="comma list of hidden widths")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--refinement", type=int, default=5, help="icosahedral refinement of the mesh")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="do not run anemoi-models")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both models")
    parser.add_argument("--no-tune-malloc", action="store_true", help="leave glibc's allocator thresholds alone")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--activation", default="silu", choices=["silu", "gelu", "relu"], help="in both models")
    parser.add_argument("--fused-kernels", default="auto", choices=["auto", "on", "off"], help="zonda's model.fused_kernels")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", choices=["zonda", "anemoi"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.spec)
        return
    result = measure(
        processors=tuple(args.processors.split(",")), widths=tuple(int(w) for w in args.widths.split(",")),
        layers=args.layers, refinement=args.refinement, repeats=args.repeats, warmup=args.warmup,
        peer=not args.no_peer, checkpointing=args.checkpointing, tune=not args.no_tune_malloc,
        threads=args.threads, activation=args.activation, fused_kernels=args.fused_kernels,
    )
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
