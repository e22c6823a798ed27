"""Restart files of the Held-Suarez generator: a spun-up modal state in a plain ``.npz``.

Layout (loadable with ``np.load(path, allow_pickle=False)``; no pickled objects):

- ``vorticity``, ``divergence``, ``temperature_variation``: float32, shape
  (layers, 2T+1, T+2), dinosaur ``RealSphericalHarmonics`` modal coefficients,
  nondimensional (dinosaur default scale; temperature_variation in K relative
  to the 288 K reference temperature).
- ``log_surface_pressure``: float32, shape (1, 2T+1, T+2), modal log of the
  nondimensional surface pressure.
- ``metadata``: a 0-d unicode array holding a JSON object with at least
  ``format``, ``truncation``, ``layers``, ``dt_minutes``, ``spinup_days``,
  ``seed``, ``dinosaur_version`` and ``reference_temperature_K``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from zonda.data.hs_dycore import REFERENCE_TEMPERATURE_K, STATE_FIELDS
from zonda.files import atomic_path

RESTART_FORMAT = "zonda-heldsuarez-restart/1"
REQUIRED_METADATA = ("format", "truncation", "layers", "dt_minutes", "spinup_days", "seed", "dinosaur_version")


class RestartError(ValueError):
    """A restart file is unreadable or does not fit the requested model; the message names the file."""


def write_restart(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Writes ``arrays`` (the modal State fields) and ``metadata`` to ``path`` atomically.

    Args:
      path: destination ``.npz`` file; its directory is created if missing.
      arrays: float32 arrays named as in ``STATE_FIELDS``.
      metadata: JSON-serialisable dict; ``format`` is added.

    Returns:
      The destination path.
    """
    path = Path(path)
    missing = [name for name in STATE_FIELDS if name not in arrays]
    if missing:
        raise ValueError(f"restart {path}: state arrays {missing} are missing")
    payload = {name: np.asarray(arrays[name], np.float32) for name in STATE_FIELDS}
    payload["metadata"] = np.array(json.dumps({"format": RESTART_FORMAT, **metadata}, sort_keys=True))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **payload)
    return path


def read_restart(
    path: str | os.PathLike[str], truncation: int, layers: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Loads a restart written by :func:`write_restart` and checks it fits a T``truncation`` L``layers`` model.

    Returns:
      ``(arrays, metadata)``: the modal State fields (float32) and the metadata dict.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      RestartError: the file is not a zonda Held-Suarez restart, or its
        truncation, layers, reference temperature or array shapes differ from
        the requested ones.  The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Held-Suarez restart file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RestartError(f"restart {path}: not a readable .npz file without pickles ({exc})") from None
    metadata = _parse_metadata(path, contents)
    if (metadata["truncation"], metadata["layers"]) != (truncation, layers):
        raise RestartError(
            f"restart {path} holds a T{metadata['truncation']} L{metadata['layers']} state, but "
            f"heldsuarez.truncation={truncation} and heldsuarez.layers={layers} were requested; "
            f"point heldsuarez.restart at a matching file or write one with "
            f"`zonda data heldsuarez --spinup-days 300 --write-restart PATH`"
        )
    if not np.isclose(metadata.get("reference_temperature_K", REFERENCE_TEMPERATURE_K), REFERENCE_TEMPERATURE_K):
        raise RestartError(
            f"restart {path}: reference_temperature_K={metadata['reference_temperature_K']} "
            f"differs from the model's {REFERENCE_TEMPERATURE_K} K"
        )
    arrays = _state_arrays(path, contents, truncation, layers)
    return arrays, metadata


def _parse_metadata(path: Path, contents: dict[str, np.ndarray]) -> dict[str, Any]:
    if "metadata" not in contents:
        raise RestartError(f"restart {path}: no 'metadata' entry; not a zonda Held-Suarez restart")
    try:
        metadata = json.loads(str(contents["metadata"]))
    except json.JSONDecodeError as exc:
        raise RestartError(f"restart {path}: 'metadata' is not JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != RESTART_FORMAT:
        raise RestartError(f"restart {path}: metadata format is not {RESTART_FORMAT!r}")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise RestartError(f"restart {path}: metadata lacks {missing}")
    return metadata


def _state_arrays(
    path: Path, contents: dict[str, np.ndarray], truncation: int, layers: int
) -> dict[str, np.ndarray]:
    # dinosaur's T grids keep T+1 longitudinal and T+2 total wavenumbers: m in [0, 1, -1, ..., T, -T].
    modal = (2 * truncation + 1, truncation + 2)
    expected = {name: (layers, *modal) for name in STATE_FIELDS}
    expected["log_surface_pressure"] = (1, *modal)
    arrays = {}
    for name, shape in expected.items():
        if name not in contents:
            raise RestartError(f"restart {path}: array {name!r} is missing")
        array = contents[name]
        if array.shape != shape:
            raise RestartError(f"restart {path}: array {name!r} has shape {array.shape}, expected {shape}")
        if not np.all(np.isfinite(array)):
            raise RestartError(f"restart {path}: array {name!r} contains NaN or inf")
        arrays[name] = array.astype(np.float32)
    return arrays
