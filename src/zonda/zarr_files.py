"""Zarr stores as plain xarray users open them: consolidated metadata, written once a store is complete.

Kept apart from :mod:`zonda.files` so that the CLI, which imports that, starts without importing zarr.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import zarr


def consolidate_zarr(path: str | os.PathLike[str]) -> Path:
    """Writes consolidated metadata into the complete zarr store at ``path`` so that plain
    ``xr.open_zarr(path)`` opens it without a warning; zarr's note that v3 consolidated metadata
    is an extension is silenced (xarray reads it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
        zarr.consolidate_metadata(str(path))
    return Path(path)


__all__ = ["consolidate_zarr"]
