"""Shared builders for the training tests (this module holds no tests).

Every training test uses the ``debug`` preset on a tiny synthetic source
(8 x 16 grid, 2 levels, 8 days): stages 1-3 are built once per test session
(cached here, in a temporary directory) and training runs vary only the
``training`` section.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset, write_zarr
from zonda.params import load_params
from zonda.snapshot import build_snapshot
from zonda.stages import graph_stage
from zonda.statistics import build_statistics
from zonda.training.checkpoints import load_training_checkpoint
from zonda.training.train import train

N_LAT, N_LON, LEVELS, N_TIME = 8, 16, (500, 850), 32  # 8 days, 6-hourly

_ROOT = Path(tempfile.mkdtemp(prefix="zonda-training-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@contextlib.contextmanager
def one_thread():
    """Tiny models run far faster on one intra-op thread (no thread start-up per op, no contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_coded_dataset():
    """The synthetic source, with temperature encoding its time index: T = 200 + 0.5 * t + 0.01 * level index
    at grid point 0 (plus 0.001 per grid index elsewhere, so that no field is constant: validation refuses those)."""
    ds = synthetic_dataset(n_time=N_TIME, levels=LEVELS, n_lat=N_LAT, n_lon=N_LON, seed=3)
    t = np.arange(N_TIME, dtype=np.float32)[:, None, None, None]
    lev = np.arange(len(LEVELS), dtype=np.float32)[None, :, None, None]
    grid = 0.001 * np.arange(N_LAT * N_LON, dtype=np.float32).reshape(1, 1, N_LAT, N_LON)  # 0 at grid point 0
    ds["temperature"].values[:] = 200.0 + 0.5 * t + 0.01 * lev + grid
    return ds


@functools.lru_cache(maxsize=None)
def source() -> Path:
    return write_zarr(time_coded_dataset(), _ROOT / "source.zarr")


def base_overrides() -> list[str]:
    return [
        "data.source.kind=zarr",
        f"data.source.path={source()}",
        f"runtime.output_root={_ROOT / 'runtime'}",
    ]


def params(*overrides: str):
    """The debug preset on the synthetic source, with ``overrides``."""
    return load_params(REPO / "params" / "debug.yaml", base_overrides() + list(overrides))


@functools.lru_cache(maxsize=None)
def artifacts() -> dict[str, Path]:
    """Snapshot, statistics and graph directories of the debug preset (built once), each with the manifest
    its stage writes (the train stage keys its reuse on their IDs)."""
    p = params()
    out = {"snapshot": _ROOT / "snapshot", "statistics": _ROOT / "statistics", "graph": _ROOT / "graph"}
    build_snapshot(p, out["snapshot"], progress=False)
    build_statistics(p, out["snapshot"], out["statistics"], progress=False)
    graph_stage(p, out["snapshot"], out["graph"], track=False)
    return out


def new_dir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_ROOT))
    return path


def run_training(out: Path, *overrides: str, track: bool = False, callbacks=(), mlflow_run_id=None) -> dict:
    a = artifacts()
    return train(
        params(*overrides), a["snapshot"], a["statistics"], a["graph"], out,
        progress=False, track=track, callbacks=callbacks, mlflow_run_id=mlflow_run_id,
    )


def history(out: Path) -> dict:
    return json.loads((Path(out) / "history.json").read_text())


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "weights.safetensors"))


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_training_checkpoint(path)["state_dict"]


#: Training settings that make a few real steps over two epochs (curriculum 1 -> 2).
MULTI_STEP = (
    "training.max_steps=-1",
    "training.max_epochs=2",
    "training.limit_train_batches=null",
    "training.limit_val_batches=null",
    "training.rollout.start=1",
    "training.rollout.end=2",
    "training.rollout.increase_every_epochs=1",
)


@functools.lru_cache(maxsize=None)
def tracked_run() -> tuple[Path, dict]:
    """One tracked (MLflow) run of the debug preset as-is, shared by the end-to-end tests."""
    out = new_dir("tracked")
    manifest = run_training(out, track=True)
    return out, manifest
