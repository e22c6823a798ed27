"""Builders for the registry and forecast tests (this module holds no tests).

Stage outputs of the ``debug`` preset on a tiny synthetic source (8 x 16 grid,
2 levels, 8 days) are built once per test session: snapshot, statistics and
graph by the real stage functions; a *trained model* as the training stage
writes it (``weights.safetensors`` + ``model.json`` from
:func:`zonda.models.saved.model_card`) from an untrained Forecaster with
seeded weights (training itself is not what these tests are about); and
evaluation outputs with chosen headline scores.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset, write_zarr
from zonda.channels import ChannelLayout
from zonda.evaluation.metrics import latitude_weights
from zonda.evaluation.per_init import KEY_DIM, SCORE, write_per_init
from zonda.files import write_json_atomic
from zonda.graph import load_graph
from zonda.models import Forecaster
from zonda.models.saved import MODEL_CARD, WEIGHTS_FILE, load_forecaster, model_card, save_weights, weights_content_id
from zonda.params import load_params
from zonda.provenance import write_manifest
from zonda.snapshot import DATA_DIRNAME, build_snapshot, open_snapshot
from zonda.snapshot_reader import SnapshotReader
from zonda.stages import graph_stage
from zonda.statistics import build_statistics, load_statistics
from zonda.tracking import local_store

N_LAT, N_LON, LEVELS, N_TIME = 8, 16, (500, 850), 32
METRIC = "rmse.geopotential.500.1d"  # the debug preset's promotion metric
#: Forecast comparisons: exact on CPU; the slack covers a CUDA (TF32) forecast against the CPU reference,
#: and is orders of magnitude below what a wrong static field or forcing changes (hundreds of units).
CLOSE = {"rtol": 1e-5, "atol": 1e-3}

ROOT = Path(tempfile.mkdtemp(prefix="zonda-registry-tests-"))
atexit.register(shutil.rmtree, ROOT, True)


@functools.lru_cache(maxsize=None)
def _template_db() -> Path:
    """An empty, fully migrated MLflow sqlite store (creating one runs every migration: seconds)."""
    from mlflow import MlflowClient

    path = ROOT / "template-mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


def tracking_db(path: Path) -> str:
    """A fresh MLflow sqlite store at ``path`` (a copy of the template); returns its URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template_db(), path)
    return f"sqlite:///{path}"


def new_store(directory: Path) -> Path:
    """A fresh local MLflow store for ``runtime.output_root=directory``: ``mlflow.db`` + ``mlartifacts/``.

    (zonda.tracking gives an experiment an artifact root inside the output
    root only for this local default; any other sqlite URI would put model
    artifacts in ./mlruns of the working directory.)
    """
    tracking_db(directory / "mlflow.db")
    return directory


def source_dataset() -> xr.Dataset:
    """The synthetic source with a non-trivial orography, so the static field matters."""
    ds = synthetic_dataset(n_time=N_TIME, levels=LEVELS, n_lat=N_LAT, n_lon=N_LON, seed=11)
    rng = np.random.default_rng(5)
    ds["geopotential_at_surface"].values[:] = rng.uniform(0.0, 2.0e4, (N_LAT, N_LON)).astype("f4")
    return ds


@functools.lru_cache(maxsize=None)
def source() -> Path:
    return write_zarr(source_dataset(), ROOT / "source.zarr")


def params(*overrides: str, store: Path | None = None):
    """The debug preset on the synthetic source; MLflow goes to the local store in ``store`` (see :func:`new_store`)."""
    base = ["data.source.kind=zarr", f"data.source.path={source()}", f"runtime.output_root={store or ROOT / 'runtime'}"]
    return load_params(REPO / "params" / "debug.yaml", base + list(overrides))


@functools.lru_cache(maxsize=None)
def stage_dirs() -> dict[str, Path]:
    """Snapshot, statistics and graph directories (built once per session), each with the manifest its stage
    writes (the train stage keys its reuse on their IDs)."""
    p = params()
    out = {"snapshot": ROOT / "snapshot", "statistics": ROOT / "statistics", "graph": ROOT / "graph"}
    build_snapshot(p, out["snapshot"], progress=False)
    build_statistics(p, out["snapshot"], out["statistics"], progress=False)
    graph_stage(p, out["snapshot"], out["graph"], track=False)
    return out


def model_dir(seed: int = 0) -> Path:
    """A training output directory holding a Forecaster with weights drawn from ``seed`` (built once per seed)."""
    return _model_dir(int(seed))


@functools.lru_cache(maxsize=None)
def _model_dir(seed: int) -> Path:
    from zonda.training.train import read_lineage

    p, dirs = params(), stage_dirs()
    layout = ChannelLayout.of(p.data.variables, p.data.levels)
    torch.manual_seed(seed)
    forecaster = Forecaster.build(
        p, load_graph(dirs["graph"]), layout, p.data.forcings, p.data.static, load_statistics(dirs["statistics"])
    )
    lineage = read_lineage(dirs["snapshot"], dirs["statistics"], dirs["graph"])
    lineage.pop("_graph_manifest", None)
    out = ROOT / f"model-{seed}"
    out.mkdir()
    sha = save_weights(forecaster.state_dict(), out / WEIGHTS_FILE)
    snapshot = open_snapshot(dirs["snapshot"])
    card = model_card(
        model_params=p.model.model_dump(mode="json"), layout=layout, forcing_names=list(p.data.forcings),
        static_names=list(p.data.static), in_channels=int(forecaster.network.in_channels),
        out_channels=len(layout), latitudes=snapshot["latitude"].values, longitudes=snapshot["longitude"].values,
        lineage=lineage, weights_sha256=sha, model_id=weights_content_id(forecaster.state_dict()), training={"global_step": 0},
    )
    write_json_atomic(out / MODEL_CARD, card)
    return out


def init_times() -> np.ndarray:
    """The init times the fixture evaluations score: 12 six-hourly times, each with a 1-day forecast in the data."""
    return open_snapshot(stage_dirs()["snapshot"])["time"].values[16:28]


def per_init(values: dict[str, np.ndarray | float], times: np.ndarray | None = None, snapshot_id: str | None = None):
    """A ``(key, time)`` per-init scores DataArray (constant where a value is a float)."""
    times = init_times() if times is None else np.asarray(times)
    rows = np.stack([np.broadcast_to(np.asarray(v, dtype=np.float64), times.shape) for v in values.values()])
    return xr.DataArray(rows, dims=[KEY_DIM, "time"], coords={KEY_DIM: list(values), "time": times}, name=SCORE,
                        attrs={"snapshot_id": str(snapshot_id)})


def evaluation_dir(
    scores: dict[str, float], name: str | None = None, lineage_of: Path | None = None, per_init_scores=None
) -> Path:
    """An evaluation output with the model's headline ``scores`` and the lineage of ``lineage_of`` (a model dir).

    ``per_init.nc`` holds ``per_init_scores`` (a DataArray from :func:`per_init`), by default each
    rmse/acc score constant over :func:`init_times`.
    """
    card = json.loads(((lineage_of or model_dir()) / "model.json").read_text())
    out = Path(tempfile.mkdtemp(prefix=f"{name or 'evaluation'}-", dir=ROOT))
    headline = {"model": dict(scores), "persistence": {k: v * 2 for k, v in scores.items()}}
    (out / "headline.json").write_text(json.dumps(headline))
    if per_init_scores is None:
        per_init_scores = per_init({k: v for k, v in scores.items() if k.partition(".")[0] in ("rmse", "acc")})
    write_per_init(per_init_scores, out / "per_init.nc", snapshot_id=card["snapshot_id"])
    write_manifest(out, {"kind": "zonda.evaluation",
                         "model_lineage": {k: card[k] for k in ("snapshot_id", "statistics_hash", "graph_hash")}})
    return out


def legacy_score_tags(scores: dict[str, float]) -> dict[str, str]:
    """Version tags ``score.<key>`` as zonda stored headline scores before they became logged-model metrics
    (versions registered then still carry them): a version's stored claim, which the gate must ignore."""
    return {f"score.{key}": repr(float(value)) for key, value in scores.items()}


def initial_state(last_index: int = 12, steps: int = 2) -> xr.Dataset:
    """The snapshot's prognostic variables at ``steps`` times ending at time index ``last_index``."""
    p = params()
    ds = open_snapshot(stage_dirs()["snapshot"])
    return ds[list(p.data.variables)].isel(time=slice(last_index - steps + 1, last_index + 1)).load()


@functools.lru_cache(maxsize=None)
def reference_rollout(last_index: int, steps: int) -> np.ndarray:
    """``(steps, G, C)``: the seed-0 Forecaster's own rollout from the snapshot, read the way evaluation reads it."""
    p, dirs = params(), stage_dirs()
    forecaster = load_forecaster(model_dir(), dirs["graph"], dirs["statistics"])
    layout = ChannelLayout.of(p.data.variables, p.data.levels)
    reader = SnapshotReader(
        dirs["snapshot"] / DATA_DIRNAME, layout, list(p.data.forcings), list(p.data.static),
        list(p.data.levels), (N_LAT, N_LON),
    )
    t_in = forecaster.input_steps
    states = torch.from_numpy(reader.states(last_index - t_in + 1, last_index + 1))[None]
    forcings = torch.from_numpy(reader.forcings(last_index - t_in + 1, last_index + 1 + steps))[None]
    with torch.inference_mode():
        out = forecaster.rollout(states, forcings, torch.from_numpy(reader.static()), steps)
    return out[0].numpy()


@functools.lru_cache(maxsize=None)
def true_rmse(seed: int) -> np.ndarray:
    """``(12,)`` per-init RMSE of Z500 at 1 day of the seed's model on :func:`init_times`, computed here:
    the Forecaster's own rollout from the snapshot (as evaluation reads it) and an area-weighted RMSE by hand."""
    p, dirs = params(), stage_dirs()
    forecaster = load_forecaster(model_dir(seed), dirs["graph"], dirs["statistics"])
    layout = ChannelLayout.of(p.data.variables, p.data.levels)
    reader = SnapshotReader(dirs["snapshot"] / DATA_DIRNAME, layout, list(p.data.forcings), list(p.data.static),
                            list(p.data.levels), (N_LAT, N_LON))
    snapshot = open_snapshot(dirs["snapshot"])
    times = snapshot["time"].values
    z500 = snapshot["geopotential"].sel(level=500).values  # (time, lat, lon)
    w = latitude_weights(snapshot["latitude"].values).values
    w = w / w.sum()  # (lat,)
    c = layout.index("geopotential", 500)
    out = []
    for init in init_times():
        i = int(np.flatnonzero(times == init)[0])
        t_in = forecaster.input_steps
        with torch.inference_mode():
            f = forecaster.rollout(torch.from_numpy(reader.states(i - t_in + 1, i + 1))[None],
                                   torch.from_numpy(reader.forcings(i - t_in + 1, i + 1 + 4))[None],
                                   torch.from_numpy(reader.static()), 4)[0, 3, :, c].numpy()  # (G,) at 1 day
        err = f.reshape(N_LAT, N_LON).astype(np.float64) - z500[i + 4]
        out.append(np.sqrt(np.sum(w * np.mean(err**2, axis=1))))
    return np.array(out)


def register(p, scores: dict[str, float], seed: int = 0, per_init_scores=None) -> dict:
    """Registers the seed's model with an evaluation holding ``scores`` (MLflow store of ``p``)."""
    from zonda.registry.register import register_model

    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, and zonda.tracking lets that variable
    # override runtime.mlflow_tracking_uri: drop what an earlier test's store left there.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    dirs = stage_dirs()
    return register_model(
        p, model_dir(seed), dirs["statistics"], dirs["graph"],
        evaluation_dir(scores, lineage_of=model_dir(seed), per_init_scores=per_init_scores),
        snapshot_dir=dirs["snapshot"],
    )


@functools.lru_cache(maxsize=None)
def registered() -> tuple:
    """(params, register_model result): the seed-0 model registered once per session in its own sqlite store.

    Being the first version of its model, it is the champion. Tests that use it
    point mlflow at its store first (:func:`use_store`).
    """
    p = params(store=new_store(ROOT / "registry"))
    return p, register(p, {METRIC: 100.0, "acc.geopotential.500.1d": 0.9})


@contextlib.contextmanager
def preserved_tracking_uri():
    """Restores mlflow's process-wide tracking URI (which register_model and configure() set) on exit."""
    import mlflow

    before, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def store_uri(p) -> str:
    """The tracking URI of ``p``: runtime.mlflow_tracking_uri, else the local store in runtime.output_root."""
    return p.runtime.mlflow_tracking_uri or local_store(p)[0]


def use_store(p) -> str:
    """Points mlflow (tracking and registry) at ``p``'s store, whatever MLFLOW_TRACKING_URI says."""
    import mlflow

    uri = store_uri(p)
    mlflow.set_tracking_uri(uri)
    return uri
