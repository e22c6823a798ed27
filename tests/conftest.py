"""Fixtures of the whole suite: a synthetic WB2-like source, the ci preset on it, a shared output root.

The Held-Suarez record of the ci preset is generated once per test session
(in ``shared_output_root``'s cache) and reused by every test that needs it.
Helpers that tests import live in ``tests.support``.
"""

from __future__ import annotations

import os
import sqlite3  # noqa: F401 - before any test loads ecCodes, whose eckit bundles an older SQLite (see zonda/__init__.py)
from pathlib import Path
from typing import Callable

import pytest
import xarray as xr

from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset, write_zarr
from zonda.params import load_params

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def make_source(tmp_path: Path) -> Callable[..., Path]:
    """Factory: writes a (possibly modified) synthetic dataset as a zarr source, returns its path."""
    counter = iter(range(1000))

    def make(ds: xr.Dataset | None = None, **kwargs) -> Path:
        ds = synthetic_dataset(**kwargs) if ds is None else ds
        return write_zarr(ds, tmp_path / f"source-{next(counter)}.zarr")

    return make


@pytest.fixture(scope="session")
def shared_output_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output root shared by the session, so the Held-Suarez cache is filled once."""
    return tmp_path_factory.mktemp("zonda-output-root")


@pytest.fixture
def synthetic_params(make_source: Callable[..., Path], tmp_path: Path):
    """ci-preset params reading a synthetic zarr source (no generator run)."""

    def build(*overrides: str, source: Path | None = None, **source_kwargs):
        path = source or make_source(**source_kwargs)
        base = [
            "data.source.kind=zarr",
            f"data.source.path={path}",
            f"runtime.output_root={tmp_path / 'out'}",
        ]
        return load_params(REPO / "params" / "ci.yaml", base + list(overrides))

    return build
